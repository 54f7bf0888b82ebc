import pytest

from tests.vfdlab import VfdProcess


@pytest.fixture
def vfd(tmp_path):
    """A running daemon with one ixgbe sim PF (8 VFs) and one mlx5 sim PF (4 VFs)."""
    from tests.vfdlab import sim_pf
    d = VfdProcess(tmp_path, [sim_pf("0000:07:00.0", 8, "ixgbe"), sim_pf("0000:81:00.0", 4, "mlx5")])
    d.start()
    yield d
    d.stop()


@pytest.fixture
def make_vfd(tmp_path):
    """Factory for daemons with custom PFs / main-config keys; all stopped at teardown."""
    made = []

    def make(pfs=None, start=True, sub="d", **extra):
        d = VfdProcess(tmp_path / sub, pfs, **extra)
        made.append(d)
        return d.start() if start else d
    yield make
    for d in made:
        d.stop()
