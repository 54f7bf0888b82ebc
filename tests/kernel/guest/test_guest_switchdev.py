"""Switchdev mode (eswitch_mode "switchdev") against a real kernel: netdevsim in the lab guest.

A real vfd daemon drives the PF; every check reads the kernel with iproute2's `devlink` (eswitch
mode, representor ports, rate leaves and nodes: `devlink -j port function rate show`, rates in
bytes per second) and `tc` (`tc -j filter show dev REP ingress|egress`), never with vfd's code.
Runs after test_guest_kernel.py in the same guest (file order) and puts the PF back in legacy
mode with no VFs at the end.

What netdevsim cannot show: traffic through the mirrors (no datapath), DCB (it has no dcbnl
ops), per-TC bandwidth in devlink rate (Debian 12's 6.1 kernel predates tc-bw, Linux 6.17): the
refusal of enable_qos is what is checked here.
"""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from tests.vfdlab import VfdProcess

PF = os.environ.get("VFD_LAB_PF", "")
DEV = "netdevsim/netdevsim1"
RECONCILE = 3.0
START_TIMEOUT = 240
MB = 125_000             # devlink's bytes per second in 1 Mb/s
SPEED = 4000             # netdevsim's devlink rates stop at 5000 Mb/s

pytestmark = pytest.mark.kernel_lab


def run(*cmd: str, check: bool = True) -> str:
    r = subprocess.run(list(cmd), capture_output=True, text=True, timeout=120)
    if check:
        assert r.returncode == 0, f"{' '.join(cmd)}: {r.stderr}"
    return r.stdout


def devlink(*args: str):
    return json.loads(run("devlink", "-j", *args))


def rates() -> dict:
    return {k.split("/", 2)[2]: v for k, v in devlink("port", "function", "rate", "show")["rate"].items()
            if k.startswith(DEV + "/")}


def rep(vf: int) -> str:
    """The representor netdev of a VF, from devlink's port list (flavour pcivf, vfnum)."""
    for port in devlink("port", "show")["port"].values():
        if port.get("flavour") == "pcivf" and port.get("vfnum") == vf:
            return port["netdev"]
    raise AssertionError(f"no representor for VF {vf}")


def mirrors(dev: str) -> dict[str, list[str]]:
    """hook -> target devices of mirred-mirror actions on `dev` (tc's own view)."""
    out = {}
    for hook in ("ingress", "egress"):
        text = run("tc", "-j", "filter", "show", "dev", dev, hook, check=False) or "[]"
        out[hook] = [a["to_dev"] for f in json.loads(text) for a in f.get("options", {}).get("actions", [])
                     if a.get("kind") == "mirred" and a.get("mirred_action") == "mirror"]
    return out


def wait_for(cond, timeout: float, what: str, d: VfdProcess | None = None) -> float:
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"{what}: not within {timeout}s\n{tail(d)}")
        time.sleep(0.2)
    return time.monotonic() - t0


def tail(d: VfdProcess | None, n: int = 60) -> str:
    return "" if d is None else "--- daemon log (tail):\n" + "\n".join(d.log_text().splitlines()[-n:])


PF_CFG = {"backend": "kernel", "vfs_count": 4, "speed": SPEED, "eswitch_mode": "switchdev",
          "tclasses": [{"pri": 0, "min_bw": 40}, {"pri": 1, "min_bw": 20, "max_bw": 50}],
          "bw_grps": {"bwg0": [0], "bwg1": [1]}}


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    assert PF, "run inside tools/kernel-lab/run-in-guest"
    for m in ("sch_ingress", "cls_matchall", "act_mirred"):
        run("modprobe", m)
    vfd = VfdProcess(tmp_path_factory.mktemp("vfd-sw"), [{"id": PF, **PF_CFG}], reconcile_interval=RECONCILE)
    t0 = time.monotonic()
    vfd.start(timeout=START_TIMEOUT)
    print(f"\n[guest] daemon start in switchdev mode: {time.monotonic() - t0:.1f}s")
    yield vfd
    vfd.stop()
    run("devlink", "dev", "eswitch", "set", DEV, "mode", "legacy", check=False)
    with open(f"/sys/bus/netdevsim/devices/netdevsim1/sriov_numvfs", "w") as f:
        f.write("0")


def req(d: VfdProcess, action: str, port: str | None = None, **params) -> tuple[bool, str]:
    if port is not None:
        params["filename"] = str(d.config_dir / f"{port}.json") if action in ("add", "update") else f"{port}.json"
    reply = d.request(action, timeout=120, **params)
    return reply.get("state") == "OK", "\n".join(str(x) for x in reply.get("msg", []))


# One traffic class, priority 3: the port VLAN's PCP 3 -> TC 1 (4 TCs, PCP pairs) -> bandwidth group bwg1.
VM1 = {"name": "sw-vm-1", "pciid": PF, "vfid": 1, "vlans": [100], "strip_stag": True,
       "rate": 0.1, "min_rate": 0.025, "queues": [{"priority": 3, "share": "10%"}],
       "mirror": {"target": 2, "direction": "all"}}


def test_start_up_puts_the_eswitch_in_switchdev_mode_with_group_nodes(d):
    assert devlink("dev", "eswitch", "show", DEV)["dev"][DEV]["mode"] == "switchdev"
    reps = [p for p in devlink("port", "show")["port"].values() if p.get("flavour") == "pcivf"]
    assert sorted(p["vfnum"] for p in reps) == [0, 1, 2, 3]
    r = rates()
    # bwg0: 40% of 4000 Mb/s guaranteed, uncapped; bwg1: 20% guaranteed, capped at 50%
    assert r["vfd_bwg0"]["type"] == "node" and r["vfd_bwg0"]["tx_share"] == 1600 * MB
    assert "tx_max" not in r["vfd_bwg0"] or r["vfd_bwg0"]["tx_max"] == 0
    assert (r["vfd_bwg1"]["tx_share"], r["vfd_bwg1"]["tx_max"]) == (800 * MB, 2000 * MB)


def test_add_gives_the_leaf_its_rates_and_group_and_mirrors_on_the_representors(d):
    d.drop("sw-vm-1", VM1)
    ok, text = req(d, "add", "sw-vm-1")
    assert ok, f"{text}\n{tail(d)}"
    leaf = rates()["129"]                     # VF 1's port
    assert (leaf["tx_max"], leaf["tx_share"], leaf["parent"]) == (400 * MB, 100 * MB, "vfd_bwg1"), leaf
    # direction all: the VF's sent frames (representor ingress) and received ones (egress) -> VF 2
    assert mirrors(rep(1)) == {"ingress": [rep(2)], "egress": [rep(2)]}
    ok, text = req(d, "status", "sw-vm-1")
    assert ok and text.rstrip().endswith("in sync"), text
    ok, text = req(d, "show", resource="mirror")
    assert ok and "vf 1 (all) ==> vf 2" in text, text


def test_iplex_mirror_changes_direction_and_target(d):
    ok, text = req(d, "mirror", resource=f"{PF} 1 out 3")
    assert ok, f"{text}\n{tail(d)}"
    assert mirrors(rep(1)) == {"ingress": [rep(3)], "egress": []}
    ok, text = req(d, "mirror", resource=f"{PF} 1 in 2")
    assert ok, text
    assert mirrors(rep(1)) == {"ingress": [], "egress": [rep(2)]}


def test_drift_of_rate_group_and_mirror_is_repaired(d):
    run("devlink", "port", "function", "rate", "set", f"{DEV}/129", "tx_max", "700mbit", "noparent")
    run("tc", "filter", "del", "dev", rep(1), "egress", "pref", "4048")
    took = wait_for(lambda: rates()["129"].get("tx_max") == 400 * MB and rates()["129"].get("parent") == "vfd_bwg1"
                    and mirrors(rep(1))["egress"] == [rep(2)], RECONCILE * 3 + 10, "drift repair", d)
    print(f"\n[guest] switchdev drift repaired {took:.1f}s after the change (reconcile_interval {RECONCILE:g}s)")
    assert "drift on PF" in d.log_text()


def test_restart_keeps_the_mode_and_reapplies(d):
    assert d.stop() == 0
    assert devlink("dev", "eswitch", "show", DEV)["dev"][DEV]["mode"] == "switchdev"   # left as configured
    assert mirrors(rep(1))["ingress"] == [] and mirrors(rep(1))["egress"] == []        # mirrors off at shutdown
    run("devlink", "port", "function", "rate", "set", f"{DEV}/129", "tx_max", "900mbit")
    d.start(timeout=START_TIMEOUT)
    leaf = rates()["129"]
    assert (leaf["tx_max"], leaf["tx_share"], leaf["parent"]) == (400 * MB, 100 * MB, "vfd_bwg1"), tail(d)
    assert mirrors(rep(1)) == {"ingress": [], "egress": [rep(2)]}, tail(d)


def test_delete_clears_rates_group_and_mirrors(d):
    ok, text = req(d, "delete", "sw-vm-1")
    assert ok, f"{text}\n{tail(d)}"
    leaf = rates()["129"]
    assert leaf.get("tx_max", 0) == 0 and leaf.get("tx_share", 0) == 0 and "parent" not in leaf, leaf
    assert mirrors(rep(1)) == {"ingress": [], "egress": []}


def test_enable_qos_is_refused_naming_the_kernel_and_the_feature(d, tmp_path):
    d.stop()
    other = VfdProcess(tmp_path / "qos", [{"id": PF, **PF_CFG}], reconcile_interval=RECONCILE, enable_qos=True)
    with pytest.raises(RuntimeError) as ei:
        other.start(timeout=START_TIMEOUT)
    text = str(ei.value)
    assert "tc-bw, Linux 6.17" in text and os.uname().release in text, text
