"""The os-vif plugin with the real os-vif library and a real vfd daemon on sim PFs.

Every check is made on what the daemon really did: the sim NIC's state file
(`<sim_state_dir>/<pf>.json`, key vfs -> "<vfid>"), the live directory and the drop directory.
"""

from __future__ import annotations

import json
import subprocess
import threading
import uuid

import pytest

from tests.openstack.conftest import PF, PF2, vf_pci

os_vif = pytest.importorskip("os_vif")
from os_vif import exception as osv_exc  # noqa: E402
from oslo_config import cfg  # noqa: E402

from vfd.integrations.osvif import VfdPlugin, VIFPortProfileVfd, slots_from_data  # noqa: E402

PORT_MAC = "fa:16:3e:00:00:01"


def plug_refused(osvif, vif, instance) -> str:
    with pytest.raises(osv_exc.PlugException) as info:
        osvif.plug(vif, instance)
    return str(info.value)


# ---- loading ---------------------------------------------------------------------------------------
def test_initialize_loads_the_vfd_plugin_and_its_options(os_vif_lib):
    from os_vif import _EXT_MANAGER
    assert "vfd" in _EXT_MANAGER.names()
    assert isinstance(_EXT_MANAGER["vfd"].obj, VfdPlugin)
    info = os_vif_lib.host_info()
    plugin = info.get_plugin("vfd")
    vif_info = plugin.get_vif("VIFHostDevice")
    assert [p.profile_object_name for p in vif_info.supported_port_profiles] == ["VIFPortProfileVfd"]
    assert cfg.CONF.os_vif_vfd.vfd_config == "/etc/vfd/vfd.cfg"      # the option's default
    assert cfg.CONF.os_vif_vfd.request_timeout == 30.0


def test_port_profile_object_round_trips():
    pp = VIFPortProfileVfd(binding_profile={"ATT_VF_VLAN_FILTER": [10, 20], "RATE_LIMIT": 0.5})
    prim = pp.obj_to_primitive()
    back = VIFPortProfileVfd.obj_from_primitive(prim)
    assert back.binding_profile == {"ATT_VF_VLAN_FILTER": [10, 20], "RATE_LIMIT": 0.5}
    assert VIFPortProfileVfd(binding_profile='{"ATT_VF_LINK_STATUS": "on"}').binding_profile == {
        "ATT_VF_LINK_STATUS": "on"}
    with pytest.raises(ValueError):
        VIFPortProfileVfd(binding_profile=[1, 2])


def test_show_pci_data_gives_the_original_vf_addresses(vfd_host):
    reply = json.loads(vfd_host.proc.iplex("--json", "show", "pci").stdout)
    slots = slots_from_data(reply["data"])
    assert len(slots) == 12
    assert {(s.pf_id, s.vfid): s.pci for s in slots}[(PF, 1)] == "0000:07:10.2"
    for s in slots:
        assert s.pci == vf_pci(s.vfid, s.pf_id) and s.port_id is None


# ---- plug -----------------------------------------------------------------------------------------
def test_plug_without_att_keys_makes_a_port_vlan(osvif, vfd_host, make_vif, instance):
    vif = make_vif(vf_pci(1), profile=None, vlan=100)
    osvif.plug(vif, instance)
    vf = vfd_host.vf_state(1)
    assert vf["vlans"] == [100] and vf["strip"] is True and vf["insert"] == 100
    assert vf["mac"] == PORT_MAC and vf["macs"] == []
    live = vfd_host.live()
    assert list(live) == [vif.id]
    assert live[vif.id]["name"] == f"web-vm/{vif.id}"
    assert (live[vif.id]["pciid"], live[vif.id]["vfid"]) == (PF, 1)
    assert list(vfd_host.config_dir.iterdir()) == []          # the drop file was consumed


def test_plug_with_profile_configures_the_vf(osvif, vfd_host, make_vif, instance):
    profile = {"ATT_VF_VLAN_FILTER": [10, 20], "ATT_VF_MAC_FILTER": ["FA-16-3E-00-00-02"],
               "ATT_VF_BROADCAST_ALLOW": False, "ATT_VF_UNKNOWN_UNICAST_ALLOW": True, "RATE_LIMIT": 0.1,
               "pci_slot": vf_pci(3), "physical_network": "sriov1"}
    vif = make_vif(vf_pci(3), profile=profile)
    osvif.plug(vif, instance)
    vf = vfd_host.vf_state(3)
    assert vf["vlans"] == [10, 20] and vf["strip"] is False and vf["insert"] == 0
    assert vf["mac"] == PORT_MAC and vf["macs"] == ["fa:16:3e:00:00:02"]
    assert vf["bcast"] is False and vf["uucast"] is True
    assert vf["max_rate"] == 1000                               # 0.1 of the sim PF's 10 Gb/s


def test_plug_on_a_pf_with_its_own_vf_layout(osvif, vfd_host, make_vif, instance):
    vif = make_vif(vf_pci(2, PF2).upper(), profile={"ATT_VF_VLAN_FILTER": [33]})
    osvif.plug(vif, instance)
    assert vfd_host.vf_state(2, PF2)["vlans"] == [33]
    assert vfd_host.live()[vif.id]["pciid"] == PF2


def test_second_plug_is_an_update(osvif, vfd_host, make_vif, instance):
    vif = make_vif(vf_pci(1), profile={"ATT_VF_VLAN_FILTER": [10]})
    osvif.plug(vif, instance)
    assert vfd_host.vf_state(1)["vlans"] == [10]
    vif.port_profile = VIFPortProfileVfd(binding_profile={"ATT_VF_VLAN_FILTER": [10, 11, 12],
                                                          "ATT_VF_UNKNOWN_MULTICAST_ALLOW": False})
    renamed = os_vif.objects.instance_info.InstanceInfo(uuid=instance.uuid, name="renamed-vm", project_id="p1")
    osvif.plug(vif, renamed)                                    # same port: update, with the live name
    vf = vfd_host.vf_state(1)
    assert vf["vlans"] == [10, 11, 12] and vf["strip"] is False and vf["mcast"] is False
    assert vf["mac"] == PORT_MAC
    assert vfd_host.live()[vif.id]["name"] == f"web-vm/{vif.id}"
    assert f"vf updated: {vif.id}" in vfd_host.log()
    osvif.plug(vif, renamed)                                    # idempotent
    assert vfd_host.vf_state(1) == vf


def test_update_may_move_the_port_to_another_vf(osvif, vfd_host, make_vif, instance):
    port = str(uuid.uuid4())
    osvif.plug(make_vif(vf_pci(1), port_id=port, profile={}), instance)
    osvif.plug(make_vif(vf_pci(4), port_id=port, profile={}), instance)
    assert vfd_host.vf_state(4)["vlans"] == [100] and vfd_host.vf_state(1)["vlans"] == []
    assert vfd_host.live()[port]["vfid"] == 4


# ---- unplug ---------------------------------------------------------------------------------------
def test_unplug_tears_the_vf_down(osvif, vfd_host, make_vif, instance):
    vif = make_vif(vf_pci(1), profile={"ATT_VF_VLAN_FILTER": [10]})
    osvif.plug(vif, instance)
    osvif.unplug(vif, instance)
    vf = vfd_host.vf_state(1)
    assert vf["vlans"] == [] and vf["macs"] == [] and vf["strip"] is False
    assert vf["mac"] != PORT_MAC                                # a fresh random MAC, as the original did
    assert vfd_host.live() == {}
    osvif.unplug(vif, instance)                                 # again: already gone, quietly
    osvif.plug(vif, instance)                                   # and the port can be plugged again
    assert vfd_host.vf_state(1)["vlans"] == [10]


def test_unplug_of_an_unknown_port_succeeds_and_changes_nothing(osvif, vfd_host, make_vif, instance):
    osvif.plug(make_vif(vf_pci(2), profile={}), instance)
    before = vfd_host.snapshot()
    osvif.unplug(make_vif(vf_pci(2), profile={}), instance)     # another port id, same VF
    osvif.unplug(make_vif(vf_pci(5)), instance)
    assert vfd_host.snapshot() == before


# ---- refusals change nothing ---------------------------------------------------------------------------
def test_bad_profile_is_refused_by_the_translation_and_changes_nothing(osvif, vfd_host, make_vif, instance):
    before = vfd_host.snapshot()
    vif = make_vif(vf_pci(1), profile={"ATT_VF_VLAN_FILTER": [10, 20], "ATT_VF_VLAN_STRIP": True})
    msg = plug_refused(osvif, vif, instance)
    assert "binding:profile ATT_VF_VLAN_STRIP=true: strip needs exactly one VLAN" in msg
    assert "(rule strip_one_vlan)" in msg and vif.id in msg
    assert vfd_host.snapshot() == before


def test_bad_profile_is_refused_by_vfd_and_changes_nothing(osvif, vfd_host, make_vif, instance):
    sim_before = vfd_host.sim_file().read_text()
    vif = make_vif(vf_pci(1), profile={"ATT_VF_VLAN_FILTER": [10], "ATT_VF_LINK_STATUS": "on"})
    msg = plug_refused(osvif, vif, instance)
    # vfd's own refusal (ixgbe has no forced link state), word for word inside the os-vif exception
    assert "forced VF link state is not supported by driver ixgbe on the sim backend" in msg
    assert "(field 'link_status', value 'on', rule driver_capability)" in msg
    assert "vfd refused add of port" in msg
    assert vfd_host.sim_file().read_text() == sim_before
    assert vfd_host.live() == {}
    # vfd kept the refused file as <port>.json.error for the operator, as the original did
    assert [p.name for p in vfd_host.config_dir.iterdir()] == [f"{vif.id}.json.error"]


def test_bad_update_is_refused_and_the_live_config_stays(osvif, vfd_host, make_vif, instance):
    vif = make_vif(vf_pci(1), profile={"ATT_VF_VLAN_FILTER": [10]})
    osvif.plug(vif, instance)
    before = vfd_host.snapshot()
    for bad, words in (
        ({"ATT_VF_VLAN_FILTER": [10], "ATT_VF_MAC_ANTI_SPOOF_CHECK": False},
         "vlan_anti_spoof true needs mac_anti_spoof true on driver ixgbe"),
        ({"ATT_VF_VLAN_FILTER": [0]}, "ATT_VF_VLAN_FILTER=[0]: field 'vlans[0]': value 0: must be greater than or equal to 1 "
                                       "(rule vf_config)"),
    ):
        vif.port_profile = VIFPortProfileVfd(binding_profile=bad)
        msg = plug_refused(osvif, vif, instance)
        assert words in msg
        assert vfd_host.snapshot() == before


def test_vf_of_another_port_is_refused(osvif, vfd_host, make_vif, instance):
    first = make_vif(vf_pci(1), profile={})
    osvif.plug(first, instance)
    before = vfd_host.snapshot()
    msg = plug_refused(osvif, make_vif(vf_pci(1), mac="fa:16:3e:00:00:09", profile={}), instance)
    assert f"VF 0000:07:10.2 (PF {PF} VF 1) is already used by port {first.id}" in msg
    assert vfd_host.snapshot() == before


def test_same_mac_on_two_vfs_is_refused_by_vfd(osvif, vfd_host, make_vif, instance):
    osvif.plug(make_vif(vf_pci(1), profile={}), instance)
    before = vfd_host.snapshot()
    msg = plug_refused(osvif, make_vif(vf_pci(2), profile={}), instance)   # same default MAC
    assert f"MAC {PORT_MAC} is already used by VF 1" in msg and "rule mac_unique" in msg
    after = vfd_host.snapshot()
    assert after["sim"] == before["sim"] and after["live"] == before["live"]


def test_pci_address_not_managed_by_vfd_is_refused(osvif, vfd_host, make_vif, instance):
    msg = plug_refused(osvif, make_vif("0000:09:10.0", profile={}), instance)
    assert "VF PCI address 0000:09:10.0 is not a VF of a PF vfd manages" in msg
    assert f"PFs: {PF}, {PF2}" in msg


def test_no_vlan_is_refused(osvif, vfd_host, make_vif, instance):
    before = vfd_host.snapshot()
    msg = plug_refused(osvif, make_vif(vf_pci(1), profile={"ATT_VF_LINK_STATUS": "auto"}, vlan=None), instance)
    assert "vfd needs at least one VLAN per VF" in msg and "rule vlan_required" in msg
    assert vfd_host.snapshot() == before


def test_network_mtu_above_the_pf_mtu_is_refused(osvif, vfd_host, make_vif, instance):
    msg = plug_refused(osvif, make_vif(vf_pci(1), profile={}, mtu=9500), instance)
    assert f"the network MTU 9500 exceeds the MTU 9420 of PF {PF}" in msg
    osvif.plug(make_vif(vf_pci(1), profile={}, mtu=9000), instance)


def test_other_vif_types_are_refused(osvif, vfd_host, instance):
    from os_vif import objects
    vif = objects.vif.VIFBridge(id=str(uuid.uuid4()), address=PORT_MAC, plugin="vfd", vif_name="tap0",
                                bridge_name="br0")
    msg = plug_refused(osvif, vif, instance)
    assert "vfd plugs VIFHostDevice VIFs" in msg


def test_daemon_not_running_is_a_clear_error(os_vif_lib, tmp_path, make_vif, instance):
    conf = tmp_path / "vfd.cfg"
    conf.write_text(json.dumps({"fifo": str(tmp_path / "request"), "config_dir": str(tmp_path / "config"),
                                "pciids": [PF]}))
    cfg.CONF.set_override("vfd_config", str(conf), group="os_vif_vfd")
    try:
        vif = make_vif(vf_pci(1), profile={})
        assert "does not exist (is vfd running?)" in plug_refused(os_vif_lib, vif, instance)
        with pytest.raises(osv_exc.UnplugException, match="is vfd running"):
            os_vif_lib.unplug(vif, instance)
        cfg.CONF.set_override("vfd_config", str(tmp_path / "missing.cfg"), group="os_vif_vfd")
        assert "cannot read config" in plug_refused(os_vif_lib, vif, instance)
    finally:
        cfg.CONF.clear_override("vfd_config", group="os_vif_vfd")


# ---- mirrors: target ports become VF numbers --------------------------------------------------------
def test_mirror_target_port_is_translated_to_its_vf(osvif, vfd_host, make_vif, instance):
    target = make_vif(vf_pci(5), mac="fa:16:3e:00:00:05", profile={"ATT_VF_VLAN_FILTER": [10]})
    osvif.plug(target, instance)
    src = make_vif(vf_pci(2), profile={"ATT_VF_VLAN_FILTER": [10, 11],
                                       "ATT_VF_MIRRORS": [{"mirror": {"Vlan": ["10-11"], "Target": [target.id]}}]})
    osvif.plug(src, instance)
    assert vfd_host.vf_state(2)["mirror"] == {"target": 5, "direction": "all"}
    assert vfd_host.live()[src.id]["mirror"] == {"target": 5, "direction": "all"}


def test_mirror_to_an_unknown_port_is_refused(osvif, vfd_host, make_vif, instance):
    before = vfd_host.snapshot()
    ghost = str(uuid.uuid4())
    vif = make_vif(vf_pci(2), profile={"ATT_VF_VLAN_FILTER": [10], "ATT_VF_MIRRORS": [{"mirror": {"Target": [ghost]}}]})
    msg = plug_refused(osvif, vif, instance)
    assert f"target port {ghost} is not plugged on this host" in msg and "rule mirror_target_known" in msg
    assert vfd_host.snapshot() == before


def test_mirror_to_another_pf_is_refused(osvif, vfd_host, make_vif, instance):
    other = make_vif(vf_pci(0, PF2), mac="fa:16:3e:00:00:07", profile={"ATT_VF_VLAN_FILTER": [10]})
    osvif.plug(other, instance)
    vif = make_vif(vf_pci(2), profile={"ATT_VF_VLAN_FILTER": [10], "ATT_VF_MIRRORS": [{"mirror": {"Target": [other.id]}}]})
    assert "rule mirror_target_same_pf" in plug_refused(osvif, vif, instance)


# ---- the protocol, in process ---------------------------------------------------------------------------
def test_no_process_is_spawned(osvif, vfd_host, make_vif, instance, monkeypatch):
    def no_spawn(*a, **k):
        raise AssertionError("the plugin spawned a process")
    monkeypatch.setattr(subprocess.Popen, "__init__", no_spawn)
    import os
    monkeypatch.setattr(os, "fork", no_spawn)
    monkeypatch.setattr(os, "posix_spawn", no_spawn)
    vif = make_vif(vf_pci(1), profile={})
    osvif.plug(vif, instance)
    osvif.plug(vif, instance)
    osvif.unplug(vif, instance)
    monkeypatch.undo()
    assert vfd_host.live() == {}


def test_concurrent_plugs_from_one_process(osvif, vfd_host, make_vif, instance):
    vifs = [make_vif(vf_pci(i), mac=f"fa:16:3e:00:01:{i:02x}", profile={"ATT_VF_VLAN_FILTER": [10 + i]})
            for i in range(8)]
    errors = []

    def plug(v):
        try:
            osvif.plug(v, instance)
        except Exception as exc:   # noqa: BLE001 - collected and reported below
            errors.append(exc)
    threads = [threading.Thread(target=plug, args=(v,)) for v in vifs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    for i in range(8):
        assert vfd_host.vf_state(i)["vlans"] == [10 + i]
    assert len(vfd_host.live()) == 8


EVENTLET_SCRIPT = r"""
import eventlet
eventlet.monkey_patch()
import json, select, sys, uuid
assert not hasattr(select, "poll")           # what nova-compute's monkey patching does
import os_vif
from os_vif import objects
from oslo_config import cfg
os_vif.initialize()
from vfd.integrations.osvif import VIFPortProfileVfd
cfg.CONF.set_override("vfd_config", sys.argv[1], group="os_vif_vfd")
inst = objects.instance_info.InstanceInfo(uuid=str(uuid.uuid4()), name="green-vm")
vifs = [objects.vif.VIFHostDevice(
            id=str(uuid.uuid4()), address="fa:16:3e:00:02:%02x" % i, plugin="vfd", dev_type="ethernet",
            dev_address=addr, network=objects.network.Network(id=str(uuid.uuid4()), vlan=200 + i),
            port_profile=VIFPortProfileVfd(binding_profile={}))
        for i, addr in enumerate(sys.argv[2:])]
pool = eventlet.GreenPool()
list(pool.imap(lambda v: os_vif.plug(v, inst), vifs))
os_vif.unplug(vifs[0], inst)
print(json.dumps([v.id for v in vifs]))
"""


def test_plug_in_an_eventlet_patched_process(vfd_host):
    pytest.importorskip("eventlet")
    import sys
    addrs = [vf_pci(i) for i in range(4)]
    out = subprocess.run([sys.executable, "-c", EVENTLET_SCRIPT, str(vfd_host.conf), *addrs],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    ports = json.loads(out.stdout.strip().splitlines()[-1])
    assert sorted(vfd_host.live()) == sorted(ports[1:])
    assert vfd_host.vf_state(0)["vlans"] == []
    for i in range(1, 4):
        assert vfd_host.vf_state(i)["vlans"] == [200 + i]
