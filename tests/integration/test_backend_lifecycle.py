"""One VF's life (add, update, refused update, delete, restart, drift) against every backend: the sim,
the kernel backend over the netlink fake and the DPDK backend over the stateful recording stand-in.

Each backend is driven as the manager drives it (apply with the previous program, the previous program
re-applied in full after a refusal, clear with the previous program, a full re-apply after a restart or on
drift), and what each test checks is the NIC's state as the stand-in holds it, never what the backend says
about itself. Drift is judged with the one drift check (vfd.program.compare over read_vf): a backend that
cannot read a field back must say "unverifiable", never "ok".
"""

from __future__ import annotations

import errno
import json

import pytest

from tests.dpdk.fakes import fake_port
from tests.dpdk.fakes import main_config as dpdk_main_config
from tests.kernel.test_kernel_unit import PCI, Rig
from tests.vfdlab import keep_programs
from vfd.backends.dpdk.backend import DpdkBackend
from vfd.backends.dpdk.eal import PREFIX_ENV
from vfd.backends.sim import SimBackend, state_file_name
from vfd.errors import BackendError
from vfd.model.mainconfig import MainConfig
from vfd.model.vfconfig import VFConfig
from vfd.program import build_program, compare

VF = 1
ADD = {"vlans": [100], "strip_stag": True, "macs": ["02:00:00:00:00:11"], "mac_anti_spoof": True, "rate": 0.1}
UPDATE = {"vlans": [200], "strip_stag": True, "macs": ["02:00:00:00:00:22"], "mac_anti_spoof": True, "rate": 0.2}
REFUSED = {"vlans": [300], "strip_stag": True, "macs": ["02:00:00:00:00:33"], "mac_anti_spoof": True, "rate": 0.3}
SEEN = ("mac", "vlans", "strip", "insert", "max_rate", "mac_anti_spoof")   # what every stand-in holds


class SimHarness:
    name = "sim"

    def __init__(self, tmp_path, monkeypatch):
        self.main = MainConfig.model_validate({"backend": "sim", "sim_state_dir": str(tmp_path / "sim"),
                                               "config_dir": str(tmp_path / "config"),
                                               "pciids": [{"id": PCI, "vfs_count": 4}]})
        self.path = tmp_path / "sim" / state_file_name(PCI)
        self.start()

    def start(self):
        self.backend = SimBackend(self.main)
        self.info = self.backend.open_pf(self.main.pciids[0])

    def restart(self):
        self.backend.close()
        self.start()

    def regs(self) -> dict:
        return json.loads(self.path.read_text())["vfs"][str(VF)]

    def nic(self) -> dict:
        return {k: self.regs()[k] for k in SEEN}

    def refuse_rates(self, on: bool):
        self.path.with_suffix(".faults.json").write_text(json.dumps({"fail": ["max_rate"] if on else []}))

    def drift(self):
        state = json.loads(self.path.read_text())
        state["vfs"][str(VF)]["vlans"] = []
        self.path.write_text(json.dumps(state))

    def close(self):
        self.backend.close()


class KernelHarness:
    name = "kernel"

    def __init__(self, tmp_path, monkeypatch):
        self.rig = Rig(tmp_path)
        self.backend = self.rig.backend
        self.info = self.rig.open()

    def restart(self):
        self.backend.close()
        self.backend = self.rig.backend = self.rig.make_backend()
        self.info = self.rig.open()

    def nic(self) -> dict:
        k = self.rig.nic.vfs[VF]
        return {"mac": k["mac"], "vlans": [k["vlan"]] if k["vlan"] else [], "strip": bool(k["vlan"]),
                "insert": k["vlan"], "max_rate": k["max_tx_rate"], "mac_anti_spoof": k["spoofchk"]}

    def refuse_rates(self, on: bool):
        if on:
            self.rig.nic.fail["rate"] = errno.EOPNOTSUPP
        else:
            self.rig.nic.fail.pop("rate", None)

    def drift(self):
        self.rig.nic.vfs[VF]["vlan"] = 0                    # `ip link set PF vf 1 vlan 0` by hand
        self.backend.pfs[PCI].snap = None                   # the event the kernel sends says the PF changed

    def close(self):
        self.backend.close()


class DpdkHarness:
    name = "dpdk"

    def __init__(self, tmp_path, monkeypatch):
        monkeypatch.setenv(PREFIX_ENV, "vfdtest-fake")
        self.f = fake_port("net_ixgbe")
        self.start()

    def start(self):
        self.backend = DpdkBackend(dpdk_main_config(), ffi=self.f)
        keep_programs(self.backend)
        self.info = self.backend.open_pf(self.backend.main.pciids[0])

    def restart(self):
        self.backend.close()
        self.start()

    def nic(self) -> dict:
        st = self.f.vf(0, VF)
        return {"mac": st["mac"], "vlans": sorted(st["vlans"]), "strip": st["strip"], "insert": st["insert"],
                "max_rate": st["max_rate"], "mac_anti_spoof": st["mac_anti_spoof"]}

    def refuse_rates(self, on: bool):
        if on:
            self.f.fail["rte_pmd_ixgbe_set_vf_rate_limit"] = -errno.EINVAL
        else:
            self.f.fail.clear()

    def drift(self):
        self.f.vf(0, VF)["vlans"] = set()                  # the NIC lost the VF's filter (a reset)

    def close(self):
        self.backend.close()


@pytest.fixture(params=[SimHarness, KernelHarness, DpdkHarness], ids=lambda c: c.name)
def nic(request, tmp_path, monkeypatch):
    h = request.param(tmp_path, monkeypatch)
    yield h
    h.close()


def program(h, cfg: dict):
    data = {"pciid": PCI, "vfid": VF, **cfg}
    return build_program(VFConfig.model_validate(data), h.info.profile, h.name, h.info.link_speed)


def wanted(p) -> dict:
    state = p.to_state()
    return {k: state[k] for k in SEEN}


def apply(h, p, previous):
    h.backend.apply_vf(PCI, VF, p, previous)
    h.backend.flush()


def test_add_programs_the_vf(nic):
    p = program(nic, ADD)
    apply(nic, p, None)
    assert nic.nic() == wanted(p)


def test_update_ends_as_the_new_program(nic):
    p1, p2 = program(nic, ADD), program(nic, UPDATE)
    apply(nic, p1, None)
    apply(nic, p2, p1)
    assert nic.nic() == wanted(p2)


def test_refused_update_is_named_and_the_previous_program_is_back(nic):
    """The NIC refuses the rate: the error names it; the manager's rollback (the previous program in full)
    leaves the VF exactly as before."""
    p1, p3 = program(nic, ADD), program(nic, REFUSED)
    apply(nic, p1, None)
    nic.refuse_rates(True)
    with pytest.raises(BackendError, match="rate"):
        apply(nic, p3, p1)
    nic.refuse_rates(False)
    apply(nic, p1, None)
    assert nic.nic() == wanted(p1)


def test_delete_leaves_no_policy(nic):
    p = program(nic, UPDATE)
    apply(nic, p, None)
    nic.backend.clear_vf(PCI, VF, p)
    nic.backend.flush()
    after = nic.nic()
    assert (after["vlans"], after["strip"], after["insert"], after["max_rate"]) == ([], False, 0, 0)
    assert after["mac"] != p.mac


def test_restart_reapplies_to_the_same_state(nic):
    p = program(nic, UPDATE)
    apply(nic, p, None)
    nic.restart()
    apply(nic, p, None)                       # the manager's restore: every live VF in full
    assert nic.nic() == wanted(p)


def test_drift_is_never_called_in_sync_and_a_reapply_repairs_it(nic):
    """The VF's VLAN is lost behind vfd's back."""
    p = program(nic, ADD)
    apply(nic, p, None)
    nic.drift()
    checks = {c.field: c.state for c in compare(p, nic.backend.read_vf(PCI, VF),
                                                 nic.backend.unverifiable_fields(PCI))}
    assert checks["vlans"] in ("differs", "unverifiable")
    apply(nic, p, None)                       # the manager's repair
    assert nic.nic() == wanted(p)
