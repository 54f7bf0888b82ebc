"""The sim NIC: state file, apply order, diff-only updates, delete, fault injection, PCI addresses."""

import json

import pytest

from vfd.backends.sim import SimBackend
from vfd.capabilities import PROFILES
from vfd.errors import BackendError
from vfd.model.mainconfig import parse_main_config
from vfd.program import build_program
from tests.unit.helpers import cfg


@pytest.fixture
def sim(tmp_path):
    main = parse_main_config(json.dumps({"sim_state_dir": str(tmp_path), "pciids": [
        {"id": "0000:07:00.0", "vfs_count": 4, "sim": {"driver": "ixgbe"}, "enable_loopback": True}]}), "m")
    b = SimBackend(main)
    info = b.open_pf(main.pciids[0])
    assert (info.driver, info.vfs_count, info.link_speed) == ("ixgbe", 4, 10000)
    return b, tmp_path / "0000:07:00.0.json"


def program(**kw):
    return build_program(cfg(**kw), PROFILES["ixgbe"], "sim", 10000)


def test_power_on_state_file(sim):
    b, path = sim
    state = json.loads(path.read_text())
    assert state["vfs_count"] == 4 and state["loopback"] is True and set(state["vfs"]) == {"0", "1", "2", "3"}
    assert all(v["vlans"] == [] for v in state["vfs"].values())


def test_apply_follows_the_original_order(sim):
    b, path = sim
    b.apply_vf("0000:07:00.0", 1, program(macs=["02:00:00:00:00:01", "02:00:00:00:00:02"], rate=0.5), None)
    ops = [op for vf, op, _ in b.pfs["0000:07:00.0"].ops]
    # reference 5.2: VLANs, then MACs (allow-list before the default), rates, anti-spoof, gates
    assert ops == ["vlans", "macs", "mac", "max_rate", "vlan_anti_spoof", "mac_anti_spoof", "mcast"]
    b.flush()
    vf = json.loads(path.read_text())["vfs"]["1"]
    assert vf["mac"] == "02:00:00:00:00:01" and vf["macs"] == ["02:00:00:00:00:02"] and vf["max_rate"] == 5000


def test_update_touches_only_differences(sim):
    b, _ = sim
    p1 = program(vlans=[1])
    b.apply_vf("0000:07:00.0", 1, p1, None)
    b.pfs["0000:07:00.0"].ops.clear()
    b.apply_vf("0000:07:00.0", 1, program(vlans=[1, 2]), p1)
    assert [op for _, op, _ in b.pfs["0000:07:00.0"].ops] == ["vlans"]


def test_clear_gives_random_mac_and_no_filters(sim):
    b, _ = sim
    p = program(macs=["02:00:00:00:00:01"], vlans=[5])
    b.apply_vf("0000:07:00.0", 2, p, None)
    b.clear_vf("0000:07:00.0", 2, p)
    vf = b.read_vf("0000:07:00.0", 2)
    assert vf["vlans"] == [] and vf["macs"] == [] and vf["mac"] != "02:00:00:00:00:01"
    assert int(vf["mac"][:2], 16) & 0x03 == 0x02         # locally administered unicast
    mac = vf["mac"]
    b.clear_vf("0000:07:00.0", 2, None)                   # clearing a clear VF keeps its MAC
    assert b.read_vf("0000:07:00.0", 2)["mac"] == mac


def test_fault_injection(sim):
    b, path = sim
    path.with_suffix(".faults.json").write_text(json.dumps({"fail": ["max_rate"]}))
    with pytest.raises(BackendError, match="max_rate"):
        b.apply_vf("0000:07:00.0", 1, program(rate=0.5), None)


def test_vf_pci_address_like_the_82599(sim):
    b, _ = sim
    assert b.vf_pci_address("0000:07:00.0", 1) == "0000:07:10.2"
    assert b.vf_pci_address("0000:07:00.0", 0) == "0000:07:10.0"


def test_state_survives_reopen_when_vf_count_unchanged(sim, tmp_path):
    b, path = sim
    b.apply_vf("0000:07:00.0", 1, program(vlans=[9]), None)
    b.flush()
    b2 = SimBackend(b.main)
    b2.open_pf(b.main.pciids[0])
    assert b2.read_vf("0000:07:00.0", 1)["vlans"] == [9]


def _sim_main(tmp_path, pfs, **extra):
    return parse_main_config(json.dumps({"sim_state_dir": str(tmp_path), "pciids": pfs, **extra}), "m")


def test_pf_ids_that_differ_only_in_slash_and_underscore_get_their_own_state_files(tmp_path):
    """Issue 10.14: `pf/a` and `pf_a` were both written to pf_a.json."""
    from vfd.backends.sim import state_file_name
    main = _sim_main(tmp_path, [{"id": "pf/a", "vfs_count": 2}, {"id": "pf_a", "vfs_count": 3},
                                {"id": "pf%2Fa", "vfs_count": 4}])
    b = SimBackend(main)
    for pf in main.pciids:
        b.open_pf(pf)
    names = {pf.id: state_file_name(pf.id) for pf in main.pciids}
    assert len(set(names.values())) == 3
    assert names["pf_a"] == "pf_a.json" and state_file_name("0000:07:00.0") == "0000:07:00.0.json"
    for pf in main.pciids:
        assert json.loads((tmp_path / names[pf.id]).read_text())["vfs_count"] == pf.vfs_count
    assert state_file_name("..") != "...json" and "/" not in state_file_name("../x")


@pytest.mark.parametrize("flow,crc", [(True, False), (False, True)])
def test_flow_control_and_crc_strip_are_programmed(tmp_path, flow, crc):
    """Issue 10.4: enable_flowcontrol and hw_strip_crc were accepted and ignored by the sim."""
    main = _sim_main(tmp_path, [{"id": "p0", "vfs_count": 2, "hw_strip_crc": crc}], enable_flowcontrol=flow)
    SimBackend(main).open_pf(main.pciids[0])
    state = json.loads((tmp_path / "p0.json").read_text())
    assert (state["flow_control"], state["strip_crc"]) == (flow, crc)


def test_pf_settings_the_driver_lacks_are_refused_before_the_state_file_is_written(tmp_path):
    main = _sim_main(tmp_path, [{"id": "p0", "vfs_count": 2, "enable_loopback": True, "sim": {"driver": "mlx5"}}])
    with pytest.raises(BackendError, match="enable_loopback failed: driver mlx5 has no PF TX loopback control"):
        SimBackend(main).open_pf(main.pciids[0])
    assert list(tmp_path.iterdir()) == []


def test_the_sim_does_not_claim_mailbox_policing(tmp_path):
    """Issue 10.8: docs/sim.md said "mailbox policing: yes"; the sim has no mailbox."""
    from vfd.capabilities import Feature
    for driver in ("ixgbe", "i40e", "bnxt", "mlx5"):
        main = _sim_main(tmp_path / driver, [{"id": "p0", "vfs_count": 2, "sim": {"driver": driver}}])
        assert not SimBackend(main).open_pf(main.pciids[0]).profile.has(Feature.MAILBOX)
