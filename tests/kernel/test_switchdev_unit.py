"""The kernel backend in switchdev mode (switchdev.py and its hooks in backend.py), every socket faked.

rtnetlink is the byte-level fake of test_kernel_unit (its driver refuses IFLA_VF_RATE, as drivers
do in switchdev mode); devlink, tc and dcbnl are the layout-checking fakes of fake_switchdev.
"""

from __future__ import annotations

import errno

import pytest

from tests.kernel.fake_switchdev import FakeDcb, FakeDevlink, FakeTc
from tests.kernel.test_kernel_unit import IFNAME, PCI, Rig
from vfd.backends.kernel.switchdev import Switchdev
from vfd.capabilities import Feature
from vfd.errors import BackendError, ConfigError
from vfd.model.mainconfig import PFConfig, parse_main_config

MB = 125_000          # bytes per second in 1 Mb/s


class SwRig(Rig):
    def __init__(self, tmp_path, maxattr=176, dcb_ops=True, **pf):
        self.devlink = FakeDevlink(bus="pci", dev=PCI, pf=IFNAME, vfs=4, maxattr=maxattr)
        self.tc = FakeTc(ifindexes=(10, 11, 12, 13))
        self.dcb = FakeDcb(ifname=IFNAME, has_ops=dcb_ops)
        super().__init__(tmp_path, driver="mlx5_core")
        self.nic.fail["rate"] = errno.EOPNOTSUPP       # "Not supported in switchdev mode. Please use devlink API."
        self.pf = PFConfig(id=PCI, vfs_count=4, eswitch_mode="switchdev", **pf)

    def make_backend(self):
        b = super().make_backend()
        b.switchdev = Switchdev(devlink=_Dl(self.devlink), tc=_Tc(self.tc), dcb=_Dcb(self.dcb))
        return b


def _wrap(cls_path):
    mod, name = cls_path.rsplit(".", 1)
    real = getattr(__import__(mod, fromlist=[name]), name)

    def make(fake):
        return real(sock=fake)
    return make


_Dl = _wrap("vfd.backends.kernel.devlink.Devlink")
_Tc = _wrap("vfd.backends.kernel.tcmirror.TcMirror")
_Dcb = _wrap("vfd.backends.kernel.dcb.Dcb")

GROUPS = {"tclasses": [{"pri": 0, "min_bw": 40}, {"pri": 1, "min_bw": 20, "max_bw": 50}],
          "bw_grps": {"bwg0": [0], "bwg1": [1]}}


@pytest.fixture
def sw(tmp_path):
    r = SwRig(tmp_path, **GROUPS)
    yield r
    r.backend.close()


def test_start_up_sets_switchdev_finds_representors_makes_group_nodes_and_widens_the_profile(sw):
    info = sw.open()
    assert sw.devlink.mode == "switchdev"
    assert sorted(sw.backend.switchdev.pfs[PCI].reps) == [0, 1, 2, 3]
    # bwg0: 40% of 10 Gb/s guaranteed, no cap; bwg1: 20% guaranteed, capped at 50%
    assert sw.devlink.nodes == {"vfd_bwg0": {"tx_share": 4000 * MB, "tx_max": 0},
                                "vfd_bwg1": {"tx_share": 2000 * MB, "tx_max": 5000 * MB}}
    assert info.profile.has(Feature.MIRROR) and info.profile.has(Feature.QOS)


def test_rates_go_to_the_devlink_leaf_with_the_group_of_the_vfs_tc_never_to_ip_link(sw):
    info = sw.open()
    # one traffic class, priority 3: PCP 3 -> TC 1 (4 TCs: PCP pairs) -> bwg1
    prog = sw.program(info, vfid=1, rate=0.05, min_rate=0.01, queues=[{"priority": 3, "share": "10%"}])
    sw.backend.apply_vf(PCI, 1, prog, None)
    assert sw.devlink.leaves[129] == {"tx_share": 100 * MB, "tx_max": 500 * MB, "parent": "vfd_bwg1"}
    assert all("IFLA_VF_RATE" not in m for m in sw.nic.messages)
    state = sw.backend.read_vf(PCI, 1)
    assert (state["max_rate"], state["min_rate"]) == (500, 100)


def test_mirror_out_is_a_filter_on_the_representors_ingress_and_clear_removes_everything(sw):
    info = sw.open()
    prog = sw.program(info, vfid=1, rate=0.05, mirror={"target": 2, "direction": "out"})
    sw.backend.apply_vf(PCI, 1, prog, None)
    assert list(sw.tc.filters) == [(11, "ingress", 4048)]
    assert sw.tc.filters[(11, "ingress", 4048)]["actions"] == [("mirred", 2, 3, 12)]
    assert sw.backend.read_vf(PCI, 1)["mirror"] == {"target": 2, "direction": "out"}
    sw.backend.clear_vf(PCI, 1, prog)
    assert sw.tc.filters == {}
    assert sw.devlink.leaves[129] == {"tx_share": 0, "tx_max": 0, "parent": None}


def test_drift_in_leaf_rate_or_mirror_is_reported_and_repaired(sw):
    info = sw.open()
    prog = sw.program(info, vfid=1, rate=0.05, mirror={"target": 2, "direction": "all"})
    sw.backend.apply_vf(PCI, 1, prog, None)
    sw.devlink.leaves[129]["tx_max"] = 7 * MB                 # by hand: devlink port function rate set
    del sw.tc.filters[(11, "egress", 4048)]                   # by hand: tc filter del dev REP egress
    events = sw.backend.check_pf(PCI)
    assert [e.kind for e in events] == ["drift"]
    assert "max_rate 7 (want 500)" in events[0].detail
    assert "mirror {'target': 2, 'direction': 'out'}" in events[0].detail
    sw.backend.apply_vf(PCI, 1, prog, prog)
    assert sw.devlink.leaves[129]["tx_max"] == 500 * MB
    assert sorted(k[1] for k in sw.tc.filters) == ["egress", "ingress"]


def test_enable_qos_on_a_kernel_without_devlink_tc_bw_is_refused_naming_kernel_and_feature(sw):
    sw.open()
    with pytest.raises(BackendError) as ei:
        sw.backend.apply_qos(PCI, [{"pri": 0, "min_bw": 50, "max_bw": 100, "lsp": False}], {1: {0: 100}})
    msg = str(ei.value)
    assert "tc-bw, Linux 6.17" in msg and "this kernel is" in msg
    assert sw.dcb.requests == []                               # nothing was changed


def test_enable_qos_with_tc_bw_programs_dcb_and_leaf_shares(tmp_path):
    r = SwRig(tmp_path, maxattr=182, **GROUPS)
    info = r.open()
    prog = r.program(info, vfid=1)
    r.backend.apply_vf(PCI, 1, prog, None)
    r.backend.apply_qos(PCI, [{"pri": 0, "min_bw": 40, "max_bw": 100, "lsp": False},
                              {"pri": 1, "min_bw": 60, "max_bw": 100, "lsp": True}], {1: {0: 70, 1: 30}})
    # TC 1 strict; TCs 2 and 3 unconfigured (min_bw 1): 40/1/1 scaled to 100
    assert tuple(r.dcb.ets[3:11]) == (96, 0, 2, 2, 0, 0, 0, 0)
    assert r.devlink.leaves[129]["tc_bw"] == {0: 70, 1: 30, 2: 0, 3: 0, 4: 0, 5: 0, 6: 0, 7: 0}
    r.backend.close()


def test_enable_qos_on_a_driver_without_dcb_is_refused_naming_the_driver(tmp_path):
    r = SwRig(tmp_path, maxattr=182, dcb_ops=False)
    r.open()
    with pytest.raises(BackendError) as ei:
        r.backend.apply_qos(PCI, [{"pri": 0, "min_bw": 50, "max_bw": 100, "lsp": False}], {})
    assert "driver mlx5_core has no DCB (dcbnl) ops" in str(ei.value)
    r.backend.close()


def test_a_pf_whose_driver_has_no_devlink_eswitch_is_refused(tmp_path):
    r = SwRig(tmp_path)
    r.devlink.pf = "other0"
    with pytest.raises(BackendError) as ei:
        r.open()
    assert "no devlink port has netdev" in str(ei.value) and "mlx5_core" in str(ei.value)
    r.backend.close()


def test_eswitch_mode_is_a_kernel_backend_key():
    with pytest.raises(ConfigError) as ei:
        parse_main_config('{"pciids": [{"id": "0000:01:00.0", "eswitch_mode": "switchdev"}]}', "vfd.cfg")
    assert "eswitch_mode 'switchdev' only applies to the kernel backend" in str(ei.value)
    with pytest.raises(ConfigError):
        parse_main_config('{"backend": "kernel", "pciids": [{"id": "x", "eswitch_mode": "offload"}]}', "vfd.cfg")


def test_a_group_guarantee_is_capped_at_its_cap_and_the_link():
    from vfd.backends.kernel.switchdev import group_rates
    pf = PFConfig(id="x", eswitch_mode="switchdev", tclasses=[{"pri": 1, "min_bw": 50, "max_bw": 30},
                                                               {"pri": 3, "min_bw": 70}],
                  bw_grps={"bwg1": [1], "bwg3": [1, 3]})
    r = group_rates(pf, 10000)
    assert (r["vfd_bwg1"].tx_share, r["vfd_bwg1"].tx_max) == (3000, 3000)      # 50% guaranteed, capped at 30%
    assert (r["vfd_bwg3"].tx_share, r["vfd_bwg3"].tx_max) == (10000, 0)        # 120% -> the link


def test_a_leaf_keeps_its_parent_unsent_and_moves_to_another_through_noparent(sw):
    """The kernel answers EBUSY to a parent for a rate object that has one, even the same."""
    info = sw.open()
    prog = sw.program(info, vfid=1, rate=0.05, queues=[{"priority": 3, "share": "10%"}])   # TC 1: bwg1
    sw.backend.apply_vf(PCI, 1, prog, None)
    sw.devlink.leaves[129]["tx_max"] = 9 * MB                        # drift in the rate only
    sw.backend.apply_vf(PCI, 1, prog, prog)
    assert sw.devlink.leaves[129] == {"tx_share": 0, "tx_max": 500 * MB, "parent": "vfd_bwg1"}
    moved = sw.program(info, vfid=1, rate=0.05, queues=[{"priority": 1, "share": "10%"}])  # TC 0: bwg0
    sw.backend.apply_vf(PCI, 1, moved, prog)
    assert sw.devlink.leaves[129]["parent"] == "vfd_bwg0"
