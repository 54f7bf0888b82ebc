"""vfd-cni run as a runtime runs it, against a real daemon (sim PF), real network namespaces, a veth
standing in for the VF netdev (a fake sysfs tree maps its PCI address), and Debian's host-local IPAM.

Every test runs twice: `frontend`, the deployed path (the static front end .venv/bin/vfd-cni handing
the command to the daemon's CNI socket, where it executes), and `inproc`, the same commands in a
plugin process of its own (vfd-cni-inproc). tests/cni/test_cni_socket.py tests the socket itself.

The igb guest tests (tests/cni/test_cni_igb.py) repeat the flow on real VFs with real frames.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import threading

import pytest

from tests.cni.cnilab import (CNI_DIR, INPROC, PLUGIN, fake_vf_sysfs, link_json, netns_add, netns_del,
                              run_plugin, validate_result)
from tests.vfdlab import VfdProcess, sim_pf

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces, moving netdevs)"),
    pytest.mark.skipif(not os.path.exists(f"{CNI_DIR}/host-local"),
                       reason="Debian's containernetworking-plugins is not installed (make system-deps)"),
]

PF = "0000:07:00.0"


_SEQ = itertools.count()


@pytest.fixture(params=["frontend", "inproc"])
def lab(tmp_path, request):
    plugin = request.param
    # names unique per test: a deleted netns frees its veths asynchronously
    tag = f"{os.getpid() % 10000}{next(_SEQ)}"
    vf_a, vf_b = f"cvfa{tag}", f"cvfb{tag}"
    for n in (vf_a, vf_b):
        subprocess.run(["ip", "link", "add", n, "type", "veth", "peer", "name", n + "p"], check=True)
    fake_vf_sysfs(tmp_path / "sys", PF, {3: ("0000:07:10.6", vf_a), 4: ("0000:07:11.0", vf_b),
                                         5: ("0000:07:11.2", None)})
    d = VfdProcess(tmp_path / "vfd", [sim_pf(PF, 8, "ixgbe", speed=10000)]).start()
    ns = [f"cnipod{tag}a", f"cnipod{tag}b"]
    paths = [netns_add(n) for n in ns]

    class Lab:
        vfd = d
        vfs = (vf_a, vf_b)
        netns = paths
        netns_names = ns
        env = {"VFD_CNI_SYSFS": str(tmp_path / "sys"), "VFD_CNI_SOCKET": str(d.cni_socket)}
        cache = str(tmp_path / "cache")
        exe = PLUGIN if plugin == "frontend" else INPROC

        def conf(self, version="1.0.0", **kw):
            c = {"cniVersion": version, "name": "vlan100", "type": "vfd-cni", "deviceID": "0000:07:10.6",
                 "vlan": 100, "vfdConfig": str(d.conf), "cacheDir": self.cache,
                 "ipam": {"type": "host-local", "subnet": "10.56.100.0/24",
                          "routes": [{"dst": "10.56.0.0/16"}], "dataDir": str(tmp_path / "ipam")}}
            c.update(kw)
            return c

        def run(self, cmd, conf, container="pod-a", netns=None, ifname="net1"):
            return run_plugin(cmd, conf, container, self.netns[0] if netns is None else netns, ifname,
                              extra_env=self.env, plugin=self.exe)

    yield Lab()
    d.stop()
    for n in ns:
        netns_del(n)
    for n in (vf_a, vf_b):
        subprocess.run(["ip", "link", "del", n], capture_output=True)


def test_add_check_del_round_trip(lab):
    before = link_json(lab.vfs[0])
    rc, res, err = lab.run("ADD", lab.conf(mac="02:56:00:00:01:01"))
    assert rc == 0, (res, err)
    validate_result(res, "1.0.0")
    assert res["interfaces"][0] == {"name": "net1", "sandbox": lab.netns[0], "mac": "02:56:00:00:01:01"}
    assert res["ips"][0]["address"].startswith("10.56.100.") and res["ips"][0]["interface"] == 0
    # vfd admitted and programmed the VF from the netconf
    st = lab.vfd.vf_state(3)
    assert st["vlans"] == [100] and st["mac"] == "02:56:00:00:01:01"
    assert lab.vfd.live() == [f"{_port(lab)}.json"]
    # the netdev is in the pod, renamed, with the MAC and the IPAM address and route
    assert link_json(lab.vfs[0]) is None
    pod = link_json("net1", lab.netns_names[0])
    assert pod["address"] == "02:56:00:00:01:01" and "UP" in pod["flags"]
    addrs = subprocess.run(["ip", "-n", lab.netns_names[0], "-j", "addr", "show", "net1"], capture_output=True,
                           text=True).stdout
    assert res["ips"][0]["address"].split("/")[0] in addrs
    routes = subprocess.run(["ip", "-n", lab.netns_names[0], "route"], capture_output=True, text=True).stdout
    assert "10.56.0.0/16" in routes

    rc, out, err = lab.run("CHECK", lab.conf(mac="02:56:00:00:01:01", prevResult=res))
    assert rc == 0, (out, err)

    rc, out, err = lab.run("DEL", lab.conf(mac="02:56:00:00:01:01"))
    assert rc == 0, (out, err)
    after = link_json(lab.vfs[0])
    assert after is not None and after["mtu"] == before["mtu"]
    assert link_json("net1", lab.netns_names[0]) is None
    assert lab.vfd.live() == [] and os.listdir(lab.cache) == ["locks"]
    assert not os.listdir(lab.vfd.config_dir)
    # DEL again: nothing left to do, still success
    rc, out, err = lab.run("DEL", lab.conf())
    assert rc == 0 and out is None, (out, err)


def _port(lab):
    from vfd.integrations.cni.netconf import port_id
    return port_id("pod-a", "net1")


def test_0_4_0_result_keeps_ip_version(lab):
    rc, res, err = lab.run("ADD", lab.conf(version="0.4.0"))
    assert rc == 0, (res, err)
    validate_result(res, "0.4.0")
    assert lab.run("DEL", lab.conf(version="0.4.0"))[0] == 0


def test_refused_add_is_a_cni_error_with_vfds_message_and_changes_nothing(lab):
    before = lab.vfd.snapshot()
    rc, out, err = lab.run("ADD", lab.conf(vfd={"vlans": [100, 100]}))
    assert rc == 1 and out["code"] == 100, (out, err)
    assert "duplicate VLAN 100" in out["msg"] and "0000:07:10.6" in out["msg"]
    assert lab.vfd.snapshot() == before
    assert link_json(lab.vfs[0]) is not None and link_json("net1", lab.netns_names[0]) is None
    assert not os.path.exists(lab.cache) or os.listdir(lab.cache) in ([], ["locks"])


def test_a_value_the_vf_config_model_refuses_is_code_4_naming_the_netconf_key(lab):
    """The VLAN range is the daemon's VF config model's rule, not the netconf's: its refusal comes back as
    an invalid netconf (code 4) naming `vlan`, the value and the rule, and nothing is left behind."""
    before = lab.vfd.snapshot()
    rc, out, err = lab.run("ADD", lab.conf(vlan=5000))
    assert rc == 1 and out["code"] == 4, (out, err)
    assert out["msg"].startswith("vlan 5000: ") and "4095" in out["msg"] and "(rule vf_config)" in out["msg"]
    assert lab.vfd.snapshot() == before
    assert not os.path.exists(lab.cache) or os.listdir(lab.cache) in ([], ["locks"])


def test_a_vf_of_an_unmanaged_pf_and_a_missing_device_are_named(lab, tmp_path):
    rc, out, _ = lab.run("ADD", lab.conf(deviceID="0000:09:00.1"))
    assert rc == 1 and out["code"] == 4 and "0000:09:00.1: no such PCI device" in out["msg"]
    fake_vf_sysfs(tmp_path / "sys", "0000:08:00.0", {0: ("0000:08:10.0", None)})
    rc, out, _ = lab.run("ADD", lab.conf(deviceID="0000:08:10.0"))
    assert rc == 1 and out["code"] == 101 and "vfd does not manage" in out["msg"] and PF in out["msg"]


def test_daemon_not_answering_is_try_again_later(lab):
    lab.vfd.stop()
    rc, out, _ = lab.run("ADD", lab.conf())
    assert rc == 1 and out["code"] == 11 and "vfd is not answering" in out["msg"]
    assert link_json(lab.vfs[0]) is not None


def test_del_survives_a_daemon_restart_and_a_vanished_netns(lab):
    rc, res, err = lab.run("ADD", lab.conf())
    assert rc == 0, (res, err)
    lab.vfd.stop()
    lab.vfd.start()
    netns_del(lab.netns_names[0])             # the pod's netns is gone (the veth goes with it)
    rc, out, err = lab.run("DEL", lab.conf())
    assert rc == 0, (out, err)
    assert lab.vfd.live() == []
    assert lab.run("DEL", lab.conf())[0] == 0


def test_check_fails_when_the_pod_interface_changed(lab):
    rc, res, _ = lab.run("ADD", lab.conf(mac="02:56:00:00:01:07"))
    assert rc == 0
    subprocess.run(["ip", "-n", lab.netns_names[0], "link", "set", "net1", "address", "02:56:00:00:01:08"],
                   check=True)
    rc, out, _ = lab.run("CHECK", lab.conf(mac="02:56:00:00:01:07", prevResult=res))
    assert rc == 1 and out["code"] == 104 and "02:56:00:00:01:08" in out["msg"]
    subprocess.run(["ip", "-n", lab.netns_names[0], "link", "set", "net1", "name", "eth9"], check=True)
    rc, out, _ = lab.run("CHECK", lab.conf(mac="02:56:00:00:01:07", prevResult=res))
    assert rc == 1 and "net1 is missing" in out["msg"]
    assert lab.run("DEL", lab.conf())[0] == 0


def test_vf_without_netdev_gets_policy_only(lab):
    conf = lab.conf(deviceID="0000:07:11.2", mac="02:56:00:00:01:05")
    del conf["ipam"]
    rc, res, err = lab.run("ADD", conf)
    assert rc == 0, (res, err)
    assert res["interfaces"] == [{"name": "net1", "sandbox": lab.netns[0], "mac": "02:56:00:00:01:05"}]
    assert lab.vfd.live() == [f"{_port(lab)}.json"]
    assert lab.run("DEL", conf)[0] == 0 and lab.vfd.live() == []


def test_two_adds_racing_for_one_vf_exactly_one_wins(lab):
    results = {}

    def add(who, netns):
        results[who] = lab.run("ADD", lab.conf(), container=who, netns=netns)

    ts = [threading.Thread(target=add, args=(w, n)) for w, n in (("pod-a", lab.netns[0]), ("pod-b", lab.netns[1]))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    codes = sorted(r[0] for r in results.values())
    assert codes == [0, 1], results
    winner = next(w for w, r in results.items() if r[0] == 0)
    loser = next(w for w, r in results.items() if r[0] == 1)
    assert results[loser][1]["code"] == 100
    assert len(lab.vfd.live()) == 1
    win_ns = lab.netns_names[0 if winner == "pod-a" else 1]
    lose_ns = lab.netns_names[1 if winner == "pod-a" else 0]
    assert link_json("net1", win_ns) is not None and link_json("net1", lose_ns) is None
    # the loser's DEL (the runtime cleans up a failed ADD) must not touch the winner's attachment
    assert lab.run("DEL", lab.conf(), container=loser)[0] == 0
    assert len(lab.vfd.live()) == 1 and link_json("net1", win_ns) is not None
    assert lab.run("DEL", lab.conf(), container=winner)[0] == 0 and lab.vfd.live() == []


def test_tuning_chained_after_vfd_cni_gets_our_result(lab):
    rc, res, err = lab.run("ADD", lab.conf())
    assert rc == 0, (res, err)
    conf = {"cniVersion": "1.0.0", "name": "vlan100", "type": "tuning",
            "sysctl": {"net.ipv4.conf.net1.arp_notify": "1"}, "prevResult": res}
    rc2, res2, err2 = run_plugin("ADD", conf, "pod-a", lab.netns[0], "net1",
                                   plugin=f"{CNI_DIR}/tuning")
    assert rc2 == 0, (res2, err2)
    assert res2["interfaces"] == res["interfaces"] and res2["ips"] == res["ips"]
    out = subprocess.run(["ip", "netns", "exec", lab.netns_names[0], "cat", "/proc/sys/net/ipv4/conf/net1/arp_notify"],
                         capture_output=True, text=True).stdout
    assert out.strip() == "1"
    assert lab.run("DEL", lab.conf())[0] == 0


def test_status_says_whether_the_daemon_answers(lab):
    conf = lab.conf(cniVersion="1.1.0")
    assert lab.run("STATUS", conf)[0] == 0
    lab.vfd.stop()
    rc, out, _ = lab.run("STATUS", conf)
    assert rc == 1 and out["code"] == 50 and "not answering" in out["msg"]


def test_gc_undoes_attachments_the_runtime_no_longer_lists(lab):
    assert lab.run("ADD", lab.conf(), container="pod-a")[0] == 0
    conf = lab.conf(deviceID="0000:07:11.0")
    assert lab.run("ADD", conf, container="pod-b", netns=lab.netns[1])[0] == 0
    gc = lab.conf(cniVersion="1.1.0", **{"cni.dev/valid-attachments": [{"containerID": "pod-b", "ifname": "net1"}]})
    rc, out, err = lab.run("GC", gc)
    assert rc == 0, (out, err)
    from vfd.integrations.cni.netconf import port_id
    assert lab.vfd.live() == [f"{port_id('pod-b', 'net1')}.json"]
    assert link_json(lab.vfs[0]) is not None and link_json("net1", lab.netns_names[0]) is None
    assert link_json("net1", lab.netns_names[1]) is not None
    assert lab.run("DEL", conf, container="pod-b", netns=lab.netns[1])[0] == 0


def test_ipam_plugin_runs_in_the_hosts_network_namespace(lab, tmp_path):
    """The pod's namespace is entered by one thread for its netlink socket only: the IPAM plugin, run
    after the netdev moved into the pod, still starts in the host's namespace (in vfd: its thread's)."""
    cni_bin = tmp_path / "ipambin"
    cni_bin.mkdir()
    seen = tmp_path / "ipam-netns"
    (cni_bin / "where-ipam").write_text(
        f"#!/bin/sh\nreadlink /proc/self/ns/net >> {seen}\n"
        "echo '{\"cniVersion\": \"1.0.0\", \"ips\": [{\"address\": \"10.57.0.2/24\"}]}'\n")
    os.chmod(cni_bin / "where-ipam", 0o755)
    conf = lab.conf(ipam={"type": "where-ipam"})
    rc, res, err = run_plugin("ADD", conf, "pod-a", lab.netns[0], "net1", extra_env=lab.env, plugin=lab.exe,
                              cni_path=str(cni_bin))
    assert rc == 0, (res, err)
    assert seen.read_text().split() == [os.readlink("/proc/self/ns/net")]
    assert link_json("net1", lab.netns_names[0]) is not None          # while the netdev is in the pod
    rc, out, err = run_plugin("DEL", conf, "pod-a", lab.netns[0], "net1", extra_env=lab.env, plugin=lab.exe,
                              cni_path=str(cni_bin))
    assert rc == 0, (out, err)
    assert seen.read_text().split() == [os.readlink("/proc/self/ns/net")] * 2
