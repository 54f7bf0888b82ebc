"""binding:profile ATT_* keys -> VF config: every key, every rule, accepted and refused (no os-vif, no daemon)."""

from __future__ import annotations

import pytest

from vfd.integrations.neutron_profile import (
    BOOL_KEYS, PROFILE_KEYS, AttProfile, ProfileError, parse_profile, vf_config,
)
from vfd.model.vfconfig import VFConfig

PF = "0000:07:00.0"
PORT = "11111111-1111-4111-8111-111111111111"
TARGET = "22222222-2222-4222-8222-222222222222"
MAC = "fa:16:3e:00:00:01"


def build(profile=None, **kw):
    args = dict(name=f"vm1/{PORT}", pciid=PF, vfid=1, mac=MAC, network_vlan=None, port_id=PORT)
    args.update(kw)
    cfg = vf_config(profile, **args)
    VFConfig.model_validate(cfg)   # whatever we build, vfd's own model accepts
    return cfg


def refused(profile, rule, key=None, **kw) -> ProfileError:
    with pytest.raises(ProfileError) as info:
        build(profile, **kw)
    err = info.value
    assert err.rule == rule, str(err)
    if key is not None:
        assert err.key == key
        assert str(err).startswith(f"binding:profile {key}=")
    assert f"(rule {rule})" in str(err)
    return err


# ---- defaults -------------------------------------------------------------------------------------
def test_no_att_keys_gives_a_port_vlan_with_the_port_mac():
    for profile in (None, {}, "", {"pci_slot": "0000:07:10.2", "physical_network": "sriov1", "trusted": "true"}):
        assert build(profile, network_vlan=100) == {
            "name": f"vm1/{PORT}", "pciid": PF, "vfid": 1, "vlans": [100], "strip_stag": True, "macs": [MAC]}


def test_no_vlan_at_all_is_refused():
    err = refused({}, "vlan_required", "ATT_VF_VLAN_FILTER")
    assert "at least one VLAN" in str(err)


def test_network_vlan_out_of_range_is_refused():
    err = refused({}, "vf_config", "network vlan", network_vlan=4096)
    assert "field 'vlans[0]'" in str(err) and "4095" in str(err)


def test_profile_as_json_text_and_refused_shapes():
    assert build('{"ATT_VF_VLAN_FILTER": [7]}')["vlans"] == [7]
    refused("{not json", "profile_type", "binding:profile")
    refused([1, 2], "profile_type", "binding:profile")


def test_no_port_mac_leaves_macs_out():
    assert "macs" not in build({"ATT_VF_VLAN_FILTER": [5]}, mac=None)


def test_parse_profile_reports_given_keys():
    att = parse_profile({"ATT_VF_VLAN_FILTER": [1], "RATE_LIMIT": 0.5, "pci_slot": "x"})
    assert isinstance(att, AttProfile) and att.has_att_keys
    assert att.given == {"ATT_VF_VLAN_FILTER", "RATE_LIMIT"}
    assert not parse_profile({"pci_slot": "x"}).has_att_keys
    assert len(PROFILE_KEYS) == 12


def test_unknown_att_key_is_refused_other_keys_ignored():
    err = refused({"ATT_VF_VLAN_FILTR": [10]}, "unknown_key", "ATT_VF_VLAN_FILTR")
    assert "ATT_VF_VLAN_FILTER" in str(err)
    assert build({"capabilities": ["switchdev"], "ATT_VF_VLAN_FILTER": [10]})["vlans"] == [10]


# ---- ATT_VF_VLAN_FILTER ----------------------------------------------------------------------------
def test_vlan_filter_replaces_the_network_vlan():
    cfg = build({"ATT_VF_VLAN_FILTER": [10]}, network_vlan=100)
    assert cfg["vlans"] == [10] and cfg["strip_stag"] is True and "insert_stag" not in cfg


@pytest.mark.parametrize("vlans", [[1], [4095], list(range(1, 65))])
def test_vlan_filter_accepts(vlans):
    assert build({"ATT_VF_VLAN_FILTER": vlans})["vlans"] == vlans


@pytest.mark.parametrize("value,rule", [
    (10, "vlan_list"), ("10", "vlan_list"),
    # the ids are the VF config model's to judge (one place for the rule): rule vf_config, the key named
    ([], "vf_config"), (["10"], "vf_config"), ([True], "vf_config"), ([1.5], "vf_config"), ([0], "vf_config"),
    ([4096], "vf_config"), ([-1], "vf_config"), ([10, 20, 10], "vf_config"), (list(range(1, 66)), "vf_config"),
])
def test_vlan_filter_refuses(value, rule):
    refused({"ATT_VF_VLAN_FILTER": value}, rule, "ATT_VF_VLAN_FILTER")


# ---- ATT_VF_VLAN_STRIP / ATT_VF_INSERT_STAG -------------------------------------------------------------
def test_strip_and_insert_with_one_vlan():
    assert build({"ATT_VF_VLAN_FILTER": [10], "ATT_VF_VLAN_STRIP": False})["strip_stag"] is False
    cfg = build({"ATT_VF_VLAN_FILTER": [10], "ATT_VF_VLAN_STRIP": True, "ATT_VF_INSERT_STAG": True})
    assert cfg["strip_stag"] is True and cfg["insert_stag"] is True
    cfg = build({"ATT_VF_INSERT_STAG": False}, network_vlan=30)
    assert cfg["strip_stag"] is True and cfg["insert_stag"] is False


def test_several_vlans_default_strip_and_insert_false():
    cfg = build({"ATT_VF_VLAN_FILTER": [10, 20]})
    assert cfg["strip_stag"] is False and cfg["insert_stag"] is False
    cfg = build({"ATT_VF_VLAN_FILTER": [10, 20], "ATT_VF_VLAN_STRIP": False, "ATT_VF_INSERT_STAG": False})
    assert cfg["strip_stag"] is False and cfg["insert_stag"] is False


def test_strip_or_insert_true_with_several_vlans_is_refused():
    err = refused({"ATT_VF_VLAN_FILTER": [10, 20], "ATT_VF_VLAN_STRIP": True}, "strip_one_vlan", "ATT_VF_VLAN_STRIP")
    assert "exactly one VLAN" in str(err) and "10, 20" in str(err)
    err = refused({"ATT_VF_VLAN_FILTER": [10, 20], "ATT_VF_INSERT_STAG": True}, "vf_config", "ATT_VF_INSERT_STAG")
    assert "exactly one VLAN" in str(err) and "insert_stag_one_vlan" in str(err)


# ---- boolean keys -------------------------------------------------------------------------------------
@pytest.mark.parametrize("key", sorted(BOOL_KEYS))
@pytest.mark.parametrize("value", [True, False])
def test_boolean_keys_map_to_their_field(key, value):
    assert build({"ATT_VF_VLAN_FILTER": [10], key: value})[BOOL_KEYS[key]] is value


@pytest.mark.parametrize("key", sorted(BOOL_KEYS))
@pytest.mark.parametrize("value", ["true", 1, 0, None, "yes"])
def test_boolean_keys_refuse_non_booleans(key, value):
    err = refused({"ATT_VF_VLAN_FILTER": [10], key: value}, "boolean", key)
    assert "true or false" in str(err)


def test_omitted_gates_keep_vfd_defaults():
    cfg = build({"ATT_VF_VLAN_FILTER": [10]})
    for fld in ("allow_bcast", "allow_mcast", "allow_un_ucast", "mac_anti_spoof", "vlan_anti_spoof"):
        assert fld not in cfg


# ---- ATT_VF_MAC_FILTER --------------------------------------------------------------------------------
def test_mac_filter_follows_the_port_mac_normalised():
    cfg = build({"ATT_VF_VLAN_FILTER": [10], "ATT_VF_MAC_FILTER": ["FA-16-3E-00-00-02", "fa:16:3e:00:00:03"]})
    assert cfg["macs"] == [MAC, "fa:16:3e:00:00:02", "fa:16:3e:00:00:03"]


def test_mac_filter_may_repeat_the_port_mac():
    cfg = build({"ATT_VF_VLAN_FILTER": [10], "ATT_VF_MAC_FILTER": [MAC.upper(), "fa:16:3e:00:00:02"]})
    assert cfg["macs"] == [MAC, "fa:16:3e:00:00:02"]


def test_mac_filter_without_port_mac():
    assert build({"ATT_VF_VLAN_FILTER": [10], "ATT_VF_MAC_FILTER": ["02:00:00:00:00:09"]}, mac=None)["macs"] == [
        "02:00:00:00:00:09"]


@pytest.mark.parametrize("value,rule", [
    ("fa:16:3e:00:00:02", "mac_list"), ({"mac": 1}, "mac_list"),
    (["fa:16:3e:00:00"], "mac_format"), (["fa:16:3e:00:00:0g"], "mac_format"), (["fa16.3e00.0002"], "mac_format"),
    (["fa:16-3e:00:00:02"], "mac_format"), (["01:00:5e:00:00:01"], "mac_format"), (["00:00:00:00:00:00"], "mac_format"),
    ([5], "mac_format"), (["fa:16:3e:00:00:02", "FA-16-3E-00-00-02"], "vf_config"),
    ([f"02:00:00:00:00:{i:02x}" for i in range(64)], "vf_config"),           # 65 with the port MAC
])
def test_mac_filter_refuses(value, rule):
    refused({"ATT_VF_VLAN_FILTER": [10], "ATT_VF_MAC_FILTER": value}, rule, "ATT_VF_MAC_FILTER")


def test_bad_port_mac_is_refused():
    refused({"ATT_VF_VLAN_FILTER": [10]}, "mac_format", "port mac_address", mac="01:02:03:04:05:06")


# ---- ATT_VF_LINK_STATUS -----------------------------------------------------------------------------
@pytest.mark.parametrize("value,want", [("auto", "auto"), ("on", "on"), ("off", "off"), ("ON", "on"), ("Off", "off")])
def test_link_status_accepts(value, want):
    assert build({"ATT_VF_VLAN_FILTER": [10], "ATT_VF_LINK_STATUS": value})["link_status"] == want


@pytest.mark.parametrize("value", ["up", "", " off ", True, 1, None, ["on"]])
def test_link_status_refuses(value):
    """The VF config model judges the value (one place for the rule); the refusal names the key."""
    err = refused({"ATT_VF_VLAN_FILTER": [10], "ATT_VF_LINK_STATUS": value}, "vf_config", "ATT_VF_LINK_STATUS")
    assert err.value == value
    assert "field 'link_status'" in str(err) and "must be 'on', 'off' or 'auto'" in str(err)


# ---- RATE_LIMIT -----------------------------------------------------------------------------------
@pytest.mark.parametrize("value", [0, 0.0, 0.25, 1, 1.0])
def test_rate_limit_accepts_a_fraction(value):
    assert build({"ATT_VF_VLAN_FILTER": [10], "RATE_LIMIT": value})["rate"] == float(value)


@pytest.mark.parametrize("value,rule", [
    (1.5, "less than or equal to 1"), (100, "less than or equal to 1"), (-0.1, "greater than or equal to 0"),
    ("0.5", "a valid number"), (True, "a valid number"), (None, "a valid number"),
    (float("nan"), "a finite number"), (float("inf"), "a finite number"),
])
def test_rate_limit_refuses(value, rule):
    """The VF config model judges the value (one place for the rule); the refusal names the key."""
    err = refused({"ATT_VF_VLAN_FILTER": [10], "RATE_LIMIT": value}, "vf_config", "RATE_LIMIT")
    assert err.value is value
    assert "field 'rate'" in str(err) and f"must be {rule}" in str(err)


# ---- ATT_VF_MIRRORS -------------------------------------------------------------------------------
def mirrors(*entries):
    return {"ATT_VF_VLAN_FILTER": [10, 11, 12], "ATT_VF_MIRRORS": list(entries)}


PLUGGED = {TARGET: (PF, 3)}


@pytest.mark.parametrize("entries", [
    [{"mirror": {"Vlan": [10, 11, 12], "Target": [TARGET]}}],
    [{"mirror": {"Vlan": ["10-12"], "Target": [TARGET]}}],
    [{"mirror": {"Vlan": ["1-4095"], "Target": [TARGET.upper()]}}],
    [{"mirror": {"Target": [TARGET]}}],
    [{"mirror": {"Vlan": [10], "Target": [TARGET]}}, {"mirror": {"Vlan": ["11-12"], "Target": [TARGET]}}],
    [{"mirror": {"Vlan": [10, "11-12"], "Target": [TARGET, TARGET]}}],
])
def test_mirrors_translate_target_port_to_vf(entries):
    assert build(mirrors(*entries), plugged=PLUGGED)["mirror"] == {"target": 3, "direction": "all"}


def test_empty_mirror_list_means_no_mirror():
    assert "mirror" not in build(mirrors(), plugged=PLUGGED)


@pytest.mark.parametrize("value,rule", [
    ({"mirror": {}}, "mirror_shape"),
    ([{"Vlan": [10], "Target": [TARGET]}], "mirror_shape"),
    ([{"mirror": {"Vlan": [10]}}], "mirror_shape"),
    ([{"mirror": {"Vlan": [10], "Target": [TARGET], "Direction": "in"}}], "mirror_shape"),
    ([{"mirror": {"Vlan": [10], "Target": [TARGET]}, "extra": 1}], "mirror_shape"),
    (["mirror"], "mirror_shape"),
    ([{"mirror": {"Vlan": 10, "Target": [TARGET]}}], "mirror_vlan"),
    ([{"mirror": {"Vlan": [0], "Target": [TARGET]}}], "mirror_vlan"),
    ([{"mirror": {"Vlan": [4096], "Target": [TARGET]}}], "mirror_vlan"),
    ([{"mirror": {"Vlan": ["12-10"], "Target": [TARGET]}}], "mirror_vlan"),
    ([{"mirror": {"Vlan": ["10-"], "Target": [TARGET]}}], "mirror_vlan"),
    ([{"mirror": {"Vlan": ["a-b"], "Target": [TARGET]}}], "mirror_vlan"),
    ([{"mirror": {"Vlan": [True], "Target": [TARGET]}}], "mirror_vlan"),
    ([{"mirror": {"Vlan": [10], "Target": []}}], "mirror_target_format"),
    ([{"mirror": {"Vlan": [10], "Target": TARGET}}], "mirror_target_format"),
    ([{"mirror": {"Vlan": [10], "Target": ["not-a-uuid"]}}], "mirror_target_format"),
    ([{"mirror": {"Vlan": [10], "Target": [7]}}], "mirror_target_format"),
])
def test_mirror_schema_refuses(value, rule):
    refused({"ATT_VF_VLAN_FILTER": [10], "ATT_VF_MIRRORS": value}, rule, "ATT_VF_MIRRORS", plugged=PLUGGED)


def test_mirror_to_two_targets_is_refused():
    other = "33333333-3333-4333-8333-333333333333"
    err = refused(mirrors({"mirror": {"Target": [TARGET, other]}}), "mirror_single_target", "ATT_VF_MIRRORS",
                  plugged={**PLUGGED, other: (PF, 4)})
    assert "exactly one target" in str(err)


def test_mirror_of_some_vlans_only_is_refused():
    err = refused(mirrors({"mirror": {"Vlan": [10, 11], "Target": [TARGET]}}), "mirror_vlans", "ATT_VF_MIRRORS",
                  plugged=PLUGGED)
    assert "missing 12" in str(err)


def test_mirror_to_unknown_port_is_refused():
    err = refused(mirrors({"mirror": {"Target": [TARGET]}}), "mirror_target_known", "ATT_VF_MIRRORS", plugged={})
    assert TARGET in str(err) and "not plugged on this host" in str(err)


def test_mirror_to_another_pf_is_refused():
    err = refused(mirrors({"mirror": {"Target": [TARGET]}}), "mirror_target_same_pf", "ATT_VF_MIRRORS",
                  plugged={TARGET: ("0000:81:00.0", 0)})
    assert "0000:81:00.0" in str(err)


def test_mirror_to_itself_is_refused():
    refused(mirrors({"mirror": {"Target": [PORT]}}), "mirror_target_self", "ATT_VF_MIRRORS",
            plugged={PORT: (PF, 1)})
    refused(mirrors({"mirror": {"Target": [TARGET]}}), "mirror_target_self", "ATT_VF_MIRRORS",
            plugged={TARGET: (PF, 1)})


# ---- everything together -------------------------------------------------------------------------
def test_full_profile():
    profile = {
        "ATT_VF_VLAN_FILTER": [100], "ATT_VF_VLAN_STRIP": True, "ATT_VF_INSERT_STAG": True,
        "ATT_VF_MAC_FILTER": ["fa:16:3e:00:00:02"], "ATT_VF_MAC_ANTI_SPOOF_CHECK": True,
        "ATT_VF_VLAN_ANTI_SPOOF_CHECK": True, "ATT_VF_BROADCAST_ALLOW": False,
        "ATT_VF_UNKNOWN_MULTICAST_ALLOW": False, "ATT_VF_UNKNOWN_UNICAST_ALLOW": True,
        "ATT_VF_LINK_STATUS": "off", "RATE_LIMIT": 0.5,
        "ATT_VF_MIRRORS": [{"mirror": {"Vlan": ["1-4095"], "Target": [TARGET]}}],
    }
    assert build(profile, network_vlan=7, plugged=PLUGGED) == {
        "name": f"vm1/{PORT}", "pciid": PF, "vfid": 1, "vlans": [100], "strip_stag": True, "insert_stag": True,
        "macs": [MAC, "fa:16:3e:00:00:02"], "mac_anti_spoof": True, "vlan_anti_spoof": True, "allow_bcast": False,
        "allow_mcast": False, "allow_un_ucast": True, "link_status": "off", "rate": 0.5,
        "mirror": {"target": 3, "direction": "all"},
    }


def test_error_carries_key_value_and_rule():
    """The model's refusal names the binding:profile key the user wrote, its value, the field and the rule."""
    with pytest.raises(ProfileError) as info:
        build({"ATT_VF_VLAN_FILTER": [10, 5000]})
    err = info.value
    assert (err.key, err.value, err.rule) == ("ATT_VF_VLAN_FILTER", [10, 5000], "vf_config")
    assert str(err) == ("binding:profile ATT_VF_VLAN_FILTER=[10, 5000]: field 'vlans[1]': value 5000: "
                        "must be less than or equal to 4095 (rule vf_config)")
    assert isinstance(err, ValueError)
