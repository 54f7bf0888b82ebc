"""Config -> NIC program translation and the per-driver capability checks."""

import pytest

from vfd.capabilities import PROFILES, Feature
from vfd.errors import AdmissionError, CapabilityError
from vfd.program import APPLY_ORDER, APPLY_STEPS, VFProgram, build_program
from tests.unit.helpers import cfg


def prog(driver="ixgbe", speed=10000, **kw):
    return build_program(cfg(**kw), PROFILES[driver], "sim", speed)


def test_single_vlan_strip_means_insert_that_vlan():
    p = prog(vlans=[200], strip_stag=True)
    assert (p.strip, p.insert, p.vlans) == (True, 200, (200,))


def test_insert_stag_false_splits_strip_and_insert():
    p = prog(vlans=[200], strip_stag=True, insert_stag=False)
    assert (p.strip, p.insert) == (True, 0)


def test_several_vlans_strip_without_insert():
    p = prog(vlans=[1, 2, 3], strip_stag=True)
    assert (p.strip, p.insert) == (True, 0)


def test_macs_default_first_allowlist_rest():
    p = prog(macs=["02:00:00:00:00:01", "02:00:00:00:00:02"])
    assert p.mac == "02:00:00:00:00:01" and p.macs == ("02:00:00:00:00:02",)
    assert prog().mac is None


def test_rates_in_mbps():
    p = prog(driver="mlx5", speed=25000, rate=0.4, min_rate=0.1)
    assert (p.max_rate, p.min_rate) == (10000, 2500)
    assert prog(speed=10000, rate=0.00001).max_rate == 1     # never rounds a limit down to "unlimited"


def test_rate_needs_known_speed():
    with pytest.raises(AdmissionError) as ei:
        prog(speed=0, rate=0.5)
    assert ei.value.rule == "rate_needs_speed"


def test_ixgbe_mac_anti_spoof_default_on_and_required_by_vlan_anti_spoof():
    assert prog().mac_anti_spoof is True
    with pytest.raises(AdmissionError) as ei:
        prog(mac_anti_spoof=False)
    assert "82599" in str(ei.value)
    p = prog(mac_anti_spoof=False, vlan_anti_spoof=False)
    assert (p.mac_anti_spoof, p.vlan_anti_spoof) == (False, False)


def test_mlx5_has_no_broadcast_gate():
    assert prog(driver="mlx5").bcast is True                  # default: what the NIC does anyway
    with pytest.raises(CapabilityError) as ei:
        prog(driver="mlx5", allow_bcast=False)
    assert ei.value.feature == Feature.BCAST_GATE.value and ei.value.driver == "mlx5"


def test_mlx5_mcast_and_uucast_are_one_control():
    assert prog(driver="mlx5", allow_un_ucast=True).mcast is True       # follows the explicit one
    assert prog(driver="mlx5", allow_mcast=False).uucast is False
    with pytest.raises(CapabilityError):
        prog(driver="mlx5", allow_mcast=False, allow_un_ucast=True)


def test_qinq_only_where_supported_and_only_as_port_vlan():
    p = prog(driver="mlx5", vlans=[300], strip_stag=True, vlan_proto="802.1AD")
    assert p.vlan_proto == "802.1ad" and p.insert == 300
    with pytest.raises(CapabilityError):
        prog(driver="ixgbe", vlans=[300], strip_stag=True, vlan_proto="802.1ad")
    with pytest.raises(AdmissionError):
        prog(driver="mlx5", vlans=[300], vlan_proto="802.1ad")


@pytest.mark.parametrize("driver,kw,feature", [
    ("ixgbe", {"min_rate": 0.1}, Feature.MIN_RATE),
    ("ixgbe", {"link_status": "off"}, Feature.LINK_STATE),
    ("bnxt", {"allow_untagged": True}, Feature.UNTAGGED_GATE),
    ("mlx5", {"vlans": [5], "strip_stag": True, "insert_stag": False}, Feature.STRIP_INSERT_SPLIT),
    ("ixgbe", {"strip_ctag": True}, Feature.CTAG_STRIP),
])
def test_missing_features_refused(driver, kw, feature):
    with pytest.raises(CapabilityError) as ei:
        prog(driver=driver, **kw)
    assert ei.value.feature == feature.value and driver in str(ei.value)


def test_changed_fields():
    a = prog(vlans=[1])
    b = prog(vlans=[1, 2])
    assert b.changed_fields(a) == ["vlans"]
    assert a.changed_fields(a) == []


def test_port_vlan_priority_from_the_single_traffic_class():
    p = prog(driver="mlx5", vlans=[300], strip_stag=True, queues=[{"priority": 5, "share": "10%"}])
    assert p.pcp == 5 and p.to_state()["pcp"] == 5
    assert prog(vlans=[1, 2], queues=[{"priority": 5, "share": "10%"}]).pcp == 0    # guest tags: its own PCP
    assert prog(vlans=[3], strip_stag=True, queues=[{"priority": 1, "share": "5%"},
                                                     {"priority": 2, "share": "5%"}]).pcp == 0
    narrowed = PROFILES["ixgbe"].narrowed(PROFILES["ixgbe"].features - {Feature.VLAN_PCP})
    with pytest.raises(CapabilityError):
        build_program(cfg(vlans=[3], strip_stag=True, queues=[{"priority": 4, "share": "5%"}]), narrowed, "sim", 1)


def test_ctag_strip_is_programmed_where_supported():
    assert prog(driver="mlx5", vlans=[5], strip_stag=True, strip_ctag=True).strip_ctag is True
    assert prog(driver="mlx5", vlans=[5], strip_stag=True).to_state()["strip_ctag"] is False


def test_the_apply_order_names_every_program_field_once_in_the_originals_order():
    """One apply order for every backend: each VFProgram field in exactly one step; mirror first (its rule
    matches the MAC), VLANs before MACs, the allow-list before the default MAC, link last."""
    from dataclasses import fields
    assert sorted(APPLY_ORDER) == sorted(f.name for f in fields(VFProgram))
    assert len(set(APPLY_ORDER)) == len(APPLY_ORDER)
    steps = [name for name, _ in APPLY_STEPS]
    assert steps == ["mirror", "vlans", "macs", "rates", "anti_spoof", "strip_insert", "gates", "link"]
    assert APPLY_ORDER.index("macs") < APPLY_ORDER.index("mac") and APPLY_ORDER[-1] == "link"


def test_changed_fields_is_the_diff_in_apply_order():
    p1 = build_program(cfg(vlans=[10], rate=0.1), PROFILES["ixgbe"], "sim", 10000)
    p2 = build_program(cfg(vlans=[20], rate=0.2, allow_bcast=False), PROFILES["ixgbe"], "sim", 10000)
    assert p2.changed_fields(p1) == ["vlans", "max_rate", "bcast"]
    assert p2.changed_fields(p2) == []
    assert p2.changed_fields(None) == list(APPLY_ORDER)


def test_same_value_agrees_with_the_json_comparison_it_shortcuts():
    """compare() decides equality without encoding the common cases; the meaning stays canonical()'s
    (True is not 1, a list is a tuple, 1.0 is not 1, a mirror's key order does not count)."""
    import itertools

    from vfd.program import canonical, same_value
    values = [True, False, 1, 0, 2, "a", "1", None, [1, 2], (1, 2), [2, 1], [1, True], [True, 1], 1.0, [1.0], [],
              (), [[1]], [["a"]], {"target": 1, "direction": "in"}, {"direction": "in", "target": 1},
              {"target": True, "direction": "in"}]
    for a, b in itertools.product(values, values):
        assert same_value(a, b) == (canonical(a) == canonical(b)), (a, b)


def test_compare_for_mismatches_only_is_the_full_check_less_its_ok_fields():
    from vfd.program import compare
    p = build_program(cfg(vlans=[10], macs=["02:00:00:00:00:01"]), PROFILES["ixgbe"], "sim", 10000)
    actual = dict(p.to_state(), vlans=[11], strip=not p.strip)
    del actual["mirror"]
    full = compare(p, actual, frozenset({"uucast"}))
    assert {c.field: c.state for c in full if c.state != "ok"} == {"vlans": "differs", "strip": "differs",
                                                                   "mirror": "differs", "uucast": "unverifiable"}
    assert compare(p, actual, frozenset({"uucast"}), mismatches_only=True) == [c for c in full if c.state != "ok"]
    assert p.compared == tuple(p.to_state().items()) and p.compared is p.compared    # built once
