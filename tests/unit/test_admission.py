"""Every admission rule, accepted and refused (rule names as in docs/admission.md)."""

import pytest

from vfd.errors import AdmissionError, CapabilityError
from vfd.policy.admission import admit, rule_names
from tests.unit.helpers import cfg, make_live, pf_state


def refused(rule, c, pf, replacing=None):
    with pytest.raises(AdmissionError) as ei:
        admit(c, pf, replacing)
    assert ei.value.rule == rule, str(ei.value)
    return ei.value


def test_rules_are_ordered_and_named():
    assert rule_names() == ["pf_managed", "vfid_range", "vf_free", "driver_capability", "guaranteed_rate_total",
                            "pf_vlan_limit", "mac_unique", "pf_mac_table", "qos_share_total", "qos_share_spread",
                            "mirror_target"]


def test_pf_managed():
    err = refused("pf_managed", cfg(pciid="0000:99:00.0"), None)
    assert "0000:99:00.0" in str(err) and err.field == "pciid"


@pytest.mark.parametrize("vfid,ok", [(0, True), (7, True), (8, False), (63, False)])
def test_vfid_range(vfid, ok):
    pf = pf_state(vfs=8)
    if ok:
        admit(cfg(vfid=vfid), pf)
    else:
        err = refused("vfid_range", cfg(vfid=vfid), pf)
        assert "0..7" in str(err)


def test_vf_free_and_update_excludes_self():
    pf = pf_state()
    live = make_live(pf, cfg(vfid=1, macs=["02:00:00:00:00:01"]))
    err = refused("vf_free", cfg(vfid=1), pf)
    assert "port1" in str(err)
    admit(cfg(vfid=1, macs=["02:00:00:00:00:01"], vlans=[20]), pf, replacing=live)  # update of itself


def test_guaranteed_rate_total():
    pf = pf_state(driver="mlx5")
    make_live(pf, cfg(vfid=0, rate=0.7, min_rate=0.6))
    admit(cfg(vfid=1, min_rate=0.4), pf)
    err = refused("guaranteed_rate_total", cfg(vfid=1, min_rate=0.41), pf)
    assert "1.010" in str(err)


def test_guaranteed_rate_update_replaces_own_share():
    pf = pf_state(driver="mlx5")
    live = make_live(pf, cfg(vfid=0, min_rate=0.6))
    make_live(pf, cfg(vfid=1, min_rate=0.4))
    admit(cfg(vfid=0, min_rate=0.6), pf, replacing=live)
    refused("guaranteed_rate_total", cfg(vfid=0, min_rate=0.61), pf, replacing=live)


def test_pf_vlan_limit_counts_distinct_ids():
    pf = pf_state(vfs=64)
    # 63 VFs sharing VLAN 10 plus 63 distinct VLANs: 64 distinct ids.
    for vf in range(63):
        make_live(pf, cfg(vfid=vf, vlans=[10, 100 + vf]))
    assert len(pf.vlan_refs) == 64
    admit(cfg(vfid=63, vlans=[10, 100]), pf)                   # no new id: fine
    err = refused("pf_vlan_limit", cfg(vfid=63, vlans=[10, 999]), pf)
    assert "65 distinct" in str(err)


def test_pf_vlan_limit_update_frees_own_ids():
    pf = pf_state(vfs=64)
    for vf in range(63):
        make_live(pf, cfg(vfid=vf, vlans=[100 + vf]))
    live = make_live(pf, cfg(vfid=63, vlans=[500]))
    assert len(pf.vlan_refs) == 64
    admit(cfg(vfid=63, vlans=[501]), pf, replacing=live)       # swaps its own id


def test_mac_unique_is_case_insensitive():
    pf = pf_state()
    make_live(pf, cfg(vfid=0, macs=["02:AA:00:00:00:01"]))
    err = refused("mac_unique", cfg(vfid=1, macs=["02:aa:00:00:00:01"]), pf)
    assert "VF 0" in str(err)
    admit(cfg(vfid=1, macs=["02:aa:00:00:00:02"]), pf)
    # another PF may use the same MAC
    admit(cfg(vfid=1, macs=["02:aa:00:00:00:01"], pciid="0000:08:00.0"), pf_state(pf_id="0000:08:00.0"))


def test_pf_mac_table():
    pf = pf_state(vfs=8)  # ixgbe: 128 entries
    for vf in range(2):
        make_live(pf, cfg(vfid=vf, macs=[f"02:00:00:00:{vf:02x}:{i:02x}" for i in range(64)]))
    assert pf.mac_total == 128
    err = refused("pf_mac_table", cfg(vfid=2, macs=["02:00:00:00:99:01"]), pf)
    assert "129 MACs" in str(err) and "ixgbe" in str(err)


def test_qos_share_total_and_oversubscription():
    pf = pf_state(qos=True, tclasses=[{"pri": 0}, {"pri": 1}])
    make_live(pf, cfg(vfid=0, queues=[{"priority": 0, "share": "60%"}, {"priority": 1, "share": "30%"}]))
    admit(cfg(vfid=1, queues=[{"priority": 0, "share": "40%"}, {"priority": 1, "share": "30%"}]), pf)
    err = refused("qos_share_total", cfg(vfid=1, queues=[{"priority": 0, "share": "41%"}, {"priority": 1, "share": 30}]), pf)
    assert "101%" in str(err)
    over = pf_state(qos=True, vf_oversubscription=True, tclasses=[{"pri": 0}])
    make_live(over, cfg(vfid=0, queues=[{"priority": 0, "share": "90%"}]))
    admit(cfg(vfid=1, queues=[{"priority": 0, "share": "20%"}]), over)


def test_qos_rules_off_without_qos():
    pf = pf_state(qos=False)
    make_live(pf, cfg(vfid=0, queues=[{"priority": 0, "share": "90%"}]))
    admit(cfg(vfid=1, queues=[{"priority": 0, "share": "90%"}]), pf)


def test_qos_share_spread():
    pf = pf_state(qos=True, vf_oversubscription=True, tclasses=[{"pri": 0}])
    make_live(pf, cfg(vfid=0, queues=[{"priority": 0, "share": "5%"}]))
    admit(cfg(vfid=1, queues=[{"priority": 0, "share": "50%"}]), pf)
    err = refused("qos_share_spread", cfg(vfid=1, queues=[{"priority": 0, "share": "51%"}]), pf)
    assert "5%..51%" in str(err)


def test_qos_default_share_counts():
    pf = pf_state(qos=True, vfs=40, tclasses=[{"pri": 0}])
    for vf in range(33):        # 33 x 3% = 99%
        make_live(pf, cfg(vfid=vf))
    refused("qos_share_total", cfg(vfid=33), pf)


@pytest.mark.parametrize("target,ok", [(2, True), (7, True), (8, False), (1, False)])
def test_mirror_target(target, ok):
    pf = pf_state(vfs=8)
    if target == 1:  # itself: refused by the VF config schema already
        with pytest.raises(Exception):
            cfg(vfid=1, mirror={"target": 1})
        return
    c = cfg(vfid=1, mirror={"target": target, "direction": "in"})
    if ok:
        assert admit(c, pf).mirror == (target, "in")
    else:
        refused("mirror_target", c, pf)


def test_mirror_off_needs_no_target_check():
    assert admit(cfg(vfid=1, mirror={"target": 99, "direction": "off"}), pf_state()).mirror is None


def test_capability_refusal_names_feature_and_driver():
    with pytest.raises(CapabilityError) as ei:
        admit(cfg(vfid=1, min_rate=0.1), pf_state(driver="ixgbe"))
    msg = str(ei.value)
    assert "guaranteed TX rate" in msg and "ixgbe" in msg and "min_rate" in msg


def test_refusal_leaves_indexes_unchanged():
    pf = pf_state()
    make_live(pf, cfg(vfid=0, macs=["02:00:00:00:00:01"], vlans=[5]))
    before = (dict(pf.mac_owner), dict(pf.vlan_refs), pf.mac_total, pf.min_rate_sum)
    refused("mac_unique", cfg(vfid=1, macs=["02:00:00:00:00:01"], vlans=[6]), pf)
    assert before == (dict(pf.mac_owner), dict(pf.vlan_refs), pf.mac_total, pf.min_rate_sum)


def test_mac_unique_also_against_guest_registered_macs():
    """A MAC a guest registered through the mailbox (dpdk backend) is not given to another VF's config."""
    pf = pf_state()
    guests = {"02:00:00:00:00:07": 3}
    with pytest.raises(AdmissionError) as ei:
        admit(cfg(vfid=1, macs=["02:00:00:00:00:07"]), pf, guest_macs=guests)
    assert ei.value.rule == "mac_unique" and "registered by the guest on VF 3" in str(ei.value)
    admit(cfg(vfid=3, macs=["02:00:00:00:00:07"]), pf, guest_macs=guests)   # the guest's own VF may
