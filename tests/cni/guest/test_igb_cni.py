"""vfd-cni on real VF netdevs (QEMU's igb + Linux igb/igbvf), run as a runtime runs it, with Debian's
host-local IPAM and the tuning plugin chained after it. Pods are network namespaces. The plugin is
the deployed one: the static front end handing each command to the daemon's CNI socket."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading

import pytest

from tests.cni.cnilab import INPROC, PLUGIN, run_plugin, validate_result
from tests.cni.guest.igblab import sh, start_lab, vf_info, vf_netdev, vf_pci, wait_for
from vfd.integrations.cni.netconf import port_id

PODS = ("podA", "podB", "podC", "podD", "podE")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    root = tmp_path_factory.mktemp("igb")
    d, pfs = start_lab(root / "vfd")
    for p in PODS:
        sh("ip", "netns", "add", p)
    vfs = {(i, v): vf_pci(pfs[i][0], v) for i in range(2) for v in range(2)}
    found = {k: {"netdev": vf_netdev(pci), "link": _link(vf_netdev(pci)),
                 "pfvf": vf_info(pfs[k[0]][1], k[1])} for k, pci in vfs.items()}

    class Lab:
        vfd = d
        pf = pfs
        vf = vfs
        as_found = found
        cache = str(root / "cache")
        ipam_dir = str(root / "ipam")

        def conf(self, vlan, mac=None, version="1.0.0", **kw):
            c = {"cniVersion": version, "name": f"vlan{vlan}", "type": "vfd-cni", "vlan": vlan,
                 "vfdConfig": str(d.conf), "cacheDir": self.cache,
                 "ipam": {"type": "host-local", "subnet": "10.56.0.0/24", "dataDir": self.ipam_dir}}
            if mac:
                c["mac"] = mac
            c.update(kw)
            return c

        def add(self, pod, conf, dev, ifname="net1"):
            return self.run("ADD", pod, conf, dev, ifname)

        def run(self, cmd, pod, conf, dev, ifname="net1", plugin=PLUGIN):
            return run_plugin(cmd, {**conf, "deviceID": dev}, pod, f"/var/run/netns/{pod}", ifname,
                              extra_env={"VFD_CNI_SOCKET": str(d.cni_socket)}, plugin=plugin)

    yield Lab()
    d.stop()
    for p in PODS:
        sh("ip", "netns", "del", p, check=False)


def _link(name: str, netns: str | None = None) -> dict | None:
    cmd = ["ip"] + (["-n", netns] if netns else []) + ["-j", "link", "show", "dev", name]
    p = subprocess.run(cmd, capture_output=True, text=True)
    return json.loads(p.stdout)[0] if p.returncode == 0 else None


def _ping(pod: str, ip: str) -> bool:
    return subprocess.run(["ip", "netns", "exec", pod, "ping", "-c", "2", "-w", "8", ip],
                          capture_output=True).returncode == 0


RESULTS: dict = {}


def test_add_two_pods_on_vlan100_and_one_on_vlan200(lab):
    for pod, (pf, vf), vlan, mac in (("podA", (0, 0), 100, "02:56:00:00:0a:01"),
                                     ("podB", (1, 0), 100, "02:56:00:00:0b:01"),
                                     ("podC", (1, 1), 200, "02:56:00:00:0c:01")):
        rc, res, err = lab.add(pod, lab.conf(vlan, mac), lab.vf[(pf, vf)])
        assert rc == 0, (pod, res, err)
        validate_result(res, "1.0.0")
        assert res["interfaces"][0]["mac"] == mac and res["interfaces"][0]["sandbox"] == f"/var/run/netns/{pod}"
        RESULTS[pod] = res
        # vfd programmed the VF from the PF side
        info = vf_info(lab.pf[pf][1], vf)
        assert info["address"] == mac and info["vlan"] == vlan, info
        # the igbvf netdev is in the pod as net1, with the MAC and the IPAM address
        link = _link("net1", pod)
        assert link is not None and link["address"] == mac
        assert vf_netdev(lab.vf[(pf, vf)]) is None          # no longer in the host
        addrs = sh("ip", "-n", pod, "-j", "addr", "show", "dev", "net1")
        assert res["ips"][0]["address"].split("/")[0] in addrs


def test_tuning_chained_after_vfd_cni(lab):
    conf = {"cniVersion": "1.0.0", "name": "vlan100", "type": "tuning",
            "sysctl": {"net.ipv4.conf.net1.arp_notify": "1"}, "prevResult": RESULTS["podA"]}
    rc, res, err = run_plugin("ADD", conf, "podA", "/var/run/netns/podA", "net1", plugin="/usr/lib/cni/tuning")
    assert rc == 0, (res, err)
    assert res["interfaces"] == RESULTS["podA"]["interfaces"]
    assert sh("ip", "netns", "exec", "podA", "cat", "/proc/sys/net/ipv4/conf/net1/arp_notify").strip() == "1"


def test_vlan100_pods_reach_each_other_and_vlan200_does_not(lab):
    b_ip = RESULTS["podB"]["ips"][0]["address"].split("/")[0]
    c_ip = RESULTS["podC"]["ips"][0]["address"].split("/")[0]
    a_ip = RESULTS["podA"]["ips"][0]["address"].split("/")[0]
    assert wait_for(lambda: _ping("podA", b_ip), "podA -> podB over VLAN 100", 90)
    assert _ping("podB", a_ip)
    assert not _ping("podA", c_ip)          # podC is on VLAN 200, same subnet: only the VLAN separates them


def _check(lab, pod="podA", pf=0, vf=0, vlan=100, mac="02:56:00:00:0a:01", plugin=PLUGIN):
    return lab.run("CHECK", pod, lab.conf(vlan, mac, prevResult=RESULTS[pod]), lab.vf[(pf, vf)], plugin=plugin)


def _in_sync(lab, pod="podA") -> bool:
    r = lab.vfd.request("status", filename=f"{port_id(pod, 'net1')}.json")
    return bool(r.get("data", {}).get("in_sync"))


def _pending(fifo: str) -> int:
    """Bytes waiting in a FIFO (FIONREAD), without consuming them."""
    import array
    import fcntl
    import termios
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        buf = array.array("i", [0])
        fcntl.ioctl(fd, termios.FIONREAD, buf)
        return buf[0]
    finally:
        os.close(fd)


def _queued_connections(path: str) -> int:
    """Connections waiting to be accepted on a listening Unix socket (`ss`'s Recv-Q for it). vfd binds
    it through its run directory's descriptor, so `ss` names it /proc/self/fd/N/<name>: matched by
    name (one daemon in the guest)."""
    if not os.path.exists(path):
        return 0
    name = "/" + os.path.basename(path)
    for line in sh("ss", "-xlnH").splitlines():
        fields = line.split()
        if len(fields) > 4 and fields[4].endswith(name) and fields[2].isdigit():
            return int(fields[2])
    return 0


def test_check_passes_then_fails_after_a_hand_change_until_vfd_repairs(lab):
    rc, out, err = _check(lab)
    assert rc == 0, (out, err)
    pf_nd = lab.pf[0][1]
    # vfd repairs a hand change as soon as it reads the netlink event. To see the drift, the daemon
    # is stopped (SIGSTOP) while the VF is changed and until CHECK's status request is in its FIFO;
    # resumed, it answers the request before its event-driven check runs (deferred on its loop).
    # That needs the status request itself queued before the resume: so this CHECK runs in a process of
    # its own (vfd-cni-inproc); through the front end, the status request would come from a thread
    # that vfd starts only after it resumed, racing the repair.
    lab.vfd.proc.send_signal(signal.SIGSTOP)
    try:
        sh("ip", "link", "set", pf_nd, "vf", "0", "vlan", "301")
        box = {}
        t = threading.Thread(target=lambda: box.update(r=_check(lab, plugin=INPROC)))
        t.start()
        sock = str(lab.vfd.fifo) + ".sock"      # the plugin asks over vfd's socket when there is one
        wait_for(lambda: _pending(str(lab.vfd.fifo)) > 0 or _queued_connections(sock) > 0,
                 "CHECK's request at vfd's socket or FIFO", 120)
    finally:
        lab.vfd.proc.send_signal(signal.SIGCONT)
    t.join()
    rc, out, err = box["r"]
    assert rc == 1 and out["code"] == 104 and "differs from vfd's config" in out["msg"], (out, err)
    wait_for(lambda: _in_sync(lab), "vfd's repair", 60)
    assert vf_info(pf_nd, 0)["vlan"] == 100
    rc, out, err = _check(lab)
    assert rc == 0, (out, err)


def test_del_twice_and_the_vfs_are_back_as_found(lab):
    for pod, (pf, vf), vlan in (("podA", (0, 0), 100), ("podB", (1, 0), 100), ("podC", (1, 1), 200)):
        for _ in range(2):
            rc, out, err = lab.run("DEL", pod, lab.conf(vlan), lab.vf[(pf, vf)])
            assert rc == 0 and out is None, (pod, out, err)
        found = lab.as_found[(pf, vf)]
        name = vf_netdev(lab.vf[(pf, vf)])
        assert name == found["netdev"]
        link = _link(name)
        assert link["mtu"] == found["link"]["mtu"]
        assert _link("net1", pod) is None
        info = vf_info(lab.pf[pf][1], vf)
        assert info.get("vlan", 0) == found["pfvf"].get("vlan", 0)
        assert info["address"] == found["pfvf"]["address"]
    assert lab.vfd.live() == []


def test_two_adds_racing_for_one_vf_exactly_one_wins(lab):
    dev = lab.vf[(0, 1)]
    results = {}

    def add(pod):
        results[pod] = lab.add(pod, lab.conf(100), dev)

    ts = [threading.Thread(target=add, args=(p,)) for p in ("podD", "podE")]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert sorted(r[0] for r in results.values()) == [0, 1], results
    winner = next(p for p, r in results.items() if r[0] == 0)
    loser = next(p for p, r in results.items() if r[0] == 1)
    assert results[loser][1]["code"] == 100, results[loser]
    assert _link("net1", winner) is not None and _link("net1", loser) is None
    assert len(lab.vfd.live()) == 1
    for pod in (loser, winner):
        r = lab.run("DEL", pod, lab.conf(100), dev)
        assert r[0] == 0, (pod, r)
    assert lab.vfd.live() == [] and vf_netdev(dev) == lab.as_found[(0, 1)]["netdev"]


def test_a_released_vf_attaches_again_with_another_mac(lab):
    """After DEL the VF netdev is down in the host; vfd sets the new MAC from the PF, and igbvf only
    takes it on its next reset: the plugin must still give the pod that MAC."""
    dev = lab.vf[(0, 0)]
    rc, res, err = lab.add("podD", lab.conf(100, "02:56:00:00:0d:02"), dev)
    assert rc == 0, (res, err)
    assert _link("net1", "podD")["address"] == "02:56:00:00:0d:02"
    assert lab.run("DEL", "podD", lab.conf(100), dev)[0] == 0
    assert vf_netdev(dev) == lab.as_found[(0, 0)]["netdev"]
