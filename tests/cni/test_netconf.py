"""vfd-cni's inputs: the sriov-cni field mapping, and the errors a bad netconf or environment gets."""

import json

import pytest

from vfd.integrations.cni.errors import INCOMPATIBLE_VERSION, INVALID_ENV, INVALID_NETCONF, CniError
from vfd.integrations.cni.main import run
from vfd.integrations.cni.netconf import parse_netconf, port_id, read_env

BASE = {"cniVersion": "1.0.0", "name": "sriov-net", "type": "vfd-cni", "deviceID": "0000:01:10.0"}


def nc(**kw):
    return parse_netconf(json.dumps({**BASE, **kw}), environ={})


def test_sriov_cni_fields_become_vfd_fields():
    cfg = nc(vlan=100, vlanQoS=3, vlanProto="802.1ad", mac="02:AA:00:00:00:01", spoofchk="on", trust="off",
             link_state="disable", max_tx_rate=250, min_tx_rate=100).vf_config("n", "eth0", 2, 1000)
    assert cfg == {"name": "n", "pciid": "eth0", "vfid": 2, "vlans": [100], "strip_stag": True,
                   "queues": [{"priority": 3, "share": 100}], "vlan_proto": "802.1ad",
                   "mac": "02:aa:00:00:00:01", "mac_anti_spoof": True, "allow_un_ucast": False,
                   "link_status": "off", "rate": 0.25, "min_rate": 0.1}


def test_runtime_config_mac_wins_and_vfd_object_wins_over_sriov_fields():
    n = nc(mac="02:00:00:00:00:01", runtimeConfig={"mac": "02:00:00:00:00:02"}, vlan=100,
           vfd={"vlans": [10, 20], "strip_stag": False, "allow_mcast": False})
    cfg = n.vf_config("n", "eth0", 0, 1000)
    assert cfg["mac"] == "02:00:00:00:00:02"
    assert cfg["vlans"] == [10, 20] and cfg["strip_stag"] is False and cfg["allow_mcast"] is False


def test_rate_without_link_speed_is_refused_naming_the_field():
    with pytest.raises(CniError) as ei:
        nc(vlan=5, max_tx_rate=100).vf_config("n", "eth0", 0, 0)
    assert ei.value.code == INVALID_NETCONF and "max_tx_rate 100" in ei.value.msg


@pytest.mark.parametrize("field,value,words", [
    ("vlan", "100", "vlan '100': must be a whole number"),
    ("vlanQoS", 1.5, "vlanQoS 1.5: must be a whole number"),
    ("max_tx_rate", True, "max_tx_rate True: must be a whole number"),
    ("mtu", 9999999, "mtu 9999999: must be a whole number from 68 to 65535"),
    ("spoofchk", "yes", "spoofchk 'yes': must be one of on, off"),
    ("link_state", "up", "link_state 'up'"),
    ("mac", "02:00:00:00:00", "mac '02:00:00:00:00'"),
    ("deviceID", "01:10.0", "deviceID '01:10.0'"),
    ("ipam", {"type": "../x"}, "ipam must be an object"),
    ("vfd", {"vfid": 3}, "vfd.vfid: not allowed here"),
    ("vfd", [1], "vfd must be a JSON object"),
    ("cacheDir", "rel/dir", "cacheDir 'rel/dir'"),
])
def test_bad_netconf_fields_are_named(field, value, words):
    with pytest.raises(CniError) as ei:
        nc(**{field: value})
    assert ei.value.code == INVALID_NETCONF
    assert words in ei.value.msg


def test_vlan_qos_without_vlan_is_refused():
    with pytest.raises(CniError) as ei:
        nc(vlanQoS=3)
    assert ei.value.code == INVALID_NETCONF and "vlanQoS needs vlan" in ei.value.msg


def test_versions():
    with pytest.raises(CniError) as ei:
        parse_netconf(json.dumps({**BASE, "cniVersion": "2.0.0"}), environ={})
    assert ei.value.code == INCOMPATIBLE_VERSION
    assert parse_netconf(json.dumps({**BASE, "cniVersion": "0.4.0"}), environ={}).cni_version == "0.4.0"
    rc, out = run({"CNI_COMMAND": "VERSION"}, b'{"cniVersion": "0.4.0"}')
    assert rc == 0 and out["cniVersion"] == "0.4.0" and "1.0.0" in out["supportedVersions"]


def test_vfd_config_default_comes_from_the_environment():
    assert parse_netconf(json.dumps(BASE), environ={"VFD_CONF": "/x/vfd.cfg"}).vfd_config == "/x/vfd.cfg"
    assert parse_netconf(json.dumps({**BASE, "vfdConfig": "/y.cfg"}), environ={"VFD_CONF": "/x"}).vfd_config == "/y.cfg"
    assert parse_netconf(json.dumps(BASE), environ={}).vfd_config == "/etc/vfd/vfd.cfg"


def test_environment_errors_are_code_7_and_name_the_variable():
    with pytest.raises(CniError) as ei:
        read_env({"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c", "CNI_IFNAME": "net1", "CNI_PATH": "/x"})
    assert ei.value.code == INVALID_ENV and "CNI_NETNS" in ei.value.msg
    with pytest.raises(CniError) as ei:
        read_env({"CNI_COMMAND": "DEL", "CNI_CONTAINERID": "c", "CNI_IFNAME": "a-very-long-ifname0"})
    assert "CNI_IFNAME" in ei.value.msg
    rc, out = run({}, b"{}")
    assert rc == 1 and out["code"] == INVALID_ENV and out["msg"].startswith("CNI_COMMAND is not set")


def test_error_result_is_cni_json_on_stdout():
    rc, out = run({"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c", "CNI_NETNS": "/n", "CNI_IFNAME": "net1",
                   "CNI_PATH": "/x"}, b"not json")
    assert rc == 1 and out["code"] == INVALID_NETCONF and out["cniVersion"] == "1.0.0" and "JSON" in out["msg"]


def test_port_id_is_safe_bounded_and_unique():
    a = port_id("abc/../x y" * 20, "net1")
    assert all(c.isalnum() or c in "_.-" for c in a) and len(a.encode()) <= 200
    assert port_id("c1", "net1") != port_id("c1", "net2") != port_id("c_1", "net1")
    assert port_id("c/1", "net1") != port_id("c_1", "net1")


# ---- the VF config's rules are the model's (the daemon's), named by the netconf key -------------------------
def model_refusal(cfg: dict) -> dict:
    """What the daemon's reply data says when its VF config model refuses `cfg` (rule vf_config)."""
    from vfd.daemon.reply import refusal_data
    from vfd.errors import ConfigError
    from vfd.model.vfconfig import parse_vf_config
    with pytest.raises(ConfigError) as ei:
        parse_vf_config(json.dumps(cfg), "p.json")
    return refusal_data(ei.value)


@pytest.mark.parametrize("netconf,key,words", [
    ({"vlan": 5000}, "vlan", "vlan 5000: vfd's VF config vlans[0] 5000 must be less than or equal to 4095"),
    ({"vlan": -3}, "vlan", "vlan -3: vfd's VF config vlans[0] -3 must be greater than or equal to 1"),
    ({"vlan": 10, "vlanQoS": 8}, "vlanQoS", "vlanQoS 8: vfd's VF config queues[0].priority 8 must be less than or "
                                            "equal to 7"),
    ({"vlan": 10, "max_tx_rate": 5000}, "max_tx_rate", "max_tx_rate 5000: vfd's VF config rate 5.0 must be less "
                                                       "than or equal to 1"),
    ({"vlan": 10, "min_tx_rate": -1}, "min_tx_rate", "min_tx_rate -1: vfd's VF config min_rate -0.001 must be "
                                                     "greater than or equal to 0"),
])
def test_a_range_the_model_refuses_is_an_invalid_netconf_naming_the_key(netconf, key, words):
    """The netconf no longer checks the VF config's ranges itself: the model decides (in the daemon: the
    plugin runs without pydantic), and its refusal is code 4 naming the key, the value and the rule."""
    n = nc(**netconf)
    err = n.refusal(model_refusal(n.vf_config("n", "0000:07:00.0", 1, 1000)))
    assert err is not None and err.code == INVALID_NETCONF
    assert err.msg == words + " (rule vf_config)"


def test_vlan_4095_is_the_models_to_accept():
    """sriov-cni stopped at 4094; vfd's one rule (the VF config model) allows 4095, so the netconf does too."""
    assert nc(vlan=4095).vf_config("n", "0000:07:00.0", 1, 1000)["vlans"] == [4095]


def test_other_refusals_pass_on_as_vfds():
    n = nc(vlan=10, vfd={"vlans": [5000]})
    data = model_refusal(n.vf_config("n", "0000:07:00.0", 1, 1000))
    assert data["field"] == "vlans[0]" and n.refusal(data) is None          # the value came from `vfd`
    assert nc(vlan=10).refusal({"rule": "driver_capability", "field": "rate", "value": 0.5}) is None
    assert nc(vlan=10).refusal(None) is None

