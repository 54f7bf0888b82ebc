"""The kernel backend against a real kernel: Debian's 6.1 kernel with netdevsim VFs, in the lab guest.

A real vfd daemon (its own process, the kernel backend on $VFD_LAB_PF) is driven through its
request FIFO (once through the real `iplex`), and every check reads the VF state with iproute2
(`ip -d link show`, text and `-j` JSON), never with vfd's own code. One daemon serves the module;
the tests run in file order and build on each other (VF 1 added, updated, deleted, ...).

What netdevsim cannot show, and these tests therefore do not claim: traffic (its per-VF counters
exist but stay 0: no ndo_get_vf_stats, no datapath), VF netdevs and VF PCI addresses (legacy
mode makes no PCI functions, so no `virtfnN` links), a link speed (sysfs gives EINVAL: the PF's
`speed` comes from the config). And netdevsim keeps its VFs' settings when they are destroyed and
re-created (a real driver does not): the tests rewrite debugfs `max_vfs`, which clears them, to
play a driver whose VFs come back blank.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.vfdlab import VfdProcess

PF = os.environ.get("VFD_LAB_PF", "")
NSIM_DEV = Path(os.environ.get("VFD_LAB_NSIM_DEV", "/nonexistent"))
NSIM_DBG = Path(os.environ.get("VFD_LAB_NSIM_DEBUGFS", "/nonexistent"))
NUMVFS = NSIM_DEV / "sriov_numvfs"
RECONCILE = 3.0          # the daemon's reconcile_interval here (default 10)
START_TIMEOUT = 240      # importing pydantic + pyroute2 takes 15-30 s in the emulated guest

pytestmark = pytest.mark.kernel_lab


# ---- iproute2, the independent witness ----------------------------------------------------------
def ip(*args: str) -> str:
    r = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"ip {' '.join(args)}: {r.stderr}"
    return r.stdout


def ip_vfs() -> dict[int, dict]:
    link = json.loads(ip("-j", "-d", "link", "show", "dev", PF))[0]
    return {vf["vf"]: vf for vf in link.get("vfinfo_list", [])}


def ip_vf_line(vfid: int) -> str:
    for line in ip("-d", "link", "show", "dev", PF).splitlines():
        if line.strip().startswith(f"vf {vfid} "):
            return line.strip()
    raise AssertionError(f"no 'vf {vfid}' line in ip -d link show {PF}")


def vlan_of(vf: dict) -> tuple[int, int, str]:
    v = (vf.get("vlan_list") or [{}])[0]
    return v.get("vlan", 0), v.get("qos", 0), v.get("protocol", "802.1Q")


def summary(vf: dict) -> dict:
    """One VF as iproute2 reports it, in the terms the assertions use."""
    vlan, qos, proto = vlan_of(vf)
    return {"mac": vf["address"], "vlan": vlan, "qos": qos, "proto": proto, "max": vf["rate"]["max_tx"],
            "min": vf["rate"]["min_tx"], "spoofchk": vf["spoofchk"], "trust": vf["trust"],
            "link": vf["link_state"]}


def numvfs() -> int:
    return int(NUMVFS.read_text())


def destroy_vfs_like_a_driver_reload() -> None:
    """sriov_numvfs -> 0, then clear netdevsim's remembered VF settings (debugfs max_vfs rewrite,
    refused while VFs exist: a running daemon may re-create them in between, so try again)."""
    maxvfs = (NSIM_DBG / "max_vfs").read_text().strip()
    for attempt in range(10):
        NUMVFS.write_text("0")
        try:
            (NSIM_DBG / "max_vfs").write_text(maxvfs)
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("could not clear netdevsim's VF settings")


def wait_for(cond, timeout: float, what: str, d: VfdProcess | None = None) -> float:
    t0 = time.monotonic()
    while True:
        try:
            if cond():
                return time.monotonic() - t0
        except (AssertionError, KeyError, IndexError):
            pass
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"{what}: not within {timeout}s\n{tail(d)}")
        time.sleep(0.2)


def tail(d: VfdProcess | None, n: int = 60) -> str:
    if d is None:
        return ""
    return "--- daemon log (tail):\n" + "\n".join(d.log_text().splitlines()[-n:])


# ---- the daemon ---------------------------------------------------------------------------------
def vf_cfg(vfid: int, **extra) -> dict:
    return {"name": f"guest-vm-{vfid}", "pciid": PF, "vfid": vfid, "vlans": [100], "strip_stag": True, **extra}


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    assert PF and NUMVFS.exists(), "run inside tools/kernel-lab/run-in-guest"
    assert numvfs() == 0, "the lab starts with no VFs"
    vfd = VfdProcess(tmp_path_factory.mktemp("vfd"),
                     [{"id": PF, "backend": "kernel", "vfs_count": 4, "speed": 10000}],
                     reconcile_interval=RECONCILE)
    t0 = time.monotonic()
    vfd.start(timeout=START_TIMEOUT)
    print(f"\n[guest] daemon start with the kernel backend: {time.monotonic() - t0:.1f}s")
    yield vfd
    vfd.stop()


def req(d: VfdProcess, action: str, port: str | None = None, **params) -> tuple[bool, str]:
    if port is not None:
        params["filename"] = str(d.config_dir / f"{port}.json") if action in ("add", "update") else f"{port}.json"
    reply = d.request(action, timeout=120, **params)
    return reply.get("state") == "OK", "\n".join(str(x) for x in reply.get("msg", []))


def add(d: VfdProcess, port: str, cfg: dict, action: str = "add") -> tuple[bool, str]:
    d.drop(port, cfg)
    return req(d, action, port)


# ---- the tests, in order ------------------------------------------------------------------------
def test_daemon_creates_the_configured_vfs(d):
    assert numvfs() == 4
    vfs = ip_vfs()
    assert sorted(vfs) == [0, 1, 2, 3], tail(d)
    assert "setting sriov_numvfs to 4" in d.log_text()


def test_add_programs_every_attribute_in_one_go(d):
    # What the VF looked like before vfd: restored on delete (test_delete_restores_the_original_state).
    ip("link", "set", PF, "vf", "1", "mac", "02:00:00:00:01:01", "spoofchk", "on", "trust", "on",
       "state", "enable", "max_tx_rate", "42")
    d.drop("vm1", vf_cfg(1, macs=["02:fa:00:00:00:01"], mac_anti_spoof=True, allow_un_ucast=True,
                         rate=0.05, min_rate=0.01, link_status="off"))
    r = d.iplex("add", "vm1", timeout=120)                       # the real CLI, once
    assert r.returncode == 0 and "vf added successfully: vm1" in r.stdout, f"{r.stdout}{r.stderr}\n{tail(d)}"
    vf = summary(ip_vfs()[1])
    assert vf == {"mac": "02:fa:00:00:00:01", "vlan": 100, "qos": 0, "proto": "802.1Q", "max": 500, "min": 100,
                  "spoofchk": True, "trust": True, "link": "disable"}, tail(d)
    line = ip_vf_line(1)
    for want in ("02:fa:00:00:00:01", "vlan 100", "max_tx_rate 500Mbps", "min_tx_rate 100Mbps",
                 "spoof checking on", "link-state disable", "trust on"):
        assert want in line, line
    ok, text = req(d, "status", "vm1")
    assert ok and text.rstrip().endswith("in sync"), text


def test_update_applies_the_new_settings(d):
    ok, text = add(d, "vm1", vf_cfg(1, vlans=[200], macs=["02:fa:00:00:00:01"], mac_anti_spoof=True,
                                    allow_un_ucast=False, rate=0.1, min_rate=0.02, link_status="on",
                                    queues=[{"priority": 3, "share": "10%"}]), "update")
    assert ok, f"{text}\n{tail(d)}"
    assert summary(ip_vfs()[1]) == {"mac": "02:fa:00:00:00:01", "vlan": 200, "qos": 3, "proto": "802.1Q",
                                    "max": 1000, "min": 200, "spoofchk": True, "trust": False, "link": "enable"}


def test_802_1ad_port_vlan(d):
    ok, text = add(d, "vm3", vf_cfg(3, vlans=[300], vlan_proto="802.1ad", macs=["02:fa:00:00:00:03"]))
    assert ok, f"{text}\n{tail(d)}"
    vf = ip_vfs()[3]
    assert vlan_of(vf) == (300, 0, "802.1ad") and vf["address"] == "02:fa:00:00:00:03"
    assert "vlan 300" in ip_vf_line(3) and "vlan protocol 802.1ad" in ip_vf_line(3)


def test_what_rtnetlink_cannot_express_is_refused_naming_feature_and_driver(d):
    before = ip_vfs()[2]
    ok, text = add(d, "vm2", vf_cfg(2, vlans=[10, 20], strip_stag=False))
    assert not ok and "VLAN filter list" in text and "driver netdevsim" in text and "kernel backend" in text, text
    ok, text = add(d, "vm2b", vf_cfg(2, allow_bcast=False))
    assert not ok and "broadcast admission control" in text and "driver netdevsim" in text, text
    assert ip_vfs()[2] == before                                # nothing was touched


def test_a_driver_refusal_at_run_time_leaves_the_vf_as_it_was(d):
    """netdevsim refuses legacy VF rates in switchdev mode (EOPNOTSUPP): a real run-time refusal.

    The kernel applies the new MAC before it reaches the rate and stops there; vfd must put the
    MAC back, so the VF is exactly as before the request."""
    before = summary(ip_vfs()[3])
    r = subprocess.run(["devlink", "dev", "eswitch", "set", "netdevsim/netdevsim1", "mode", "switchdev"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    try:
        ok, text = add(d, "vm3", vf_cfg(3, vlans=[300], vlan_proto="802.1ad", macs=["02:fa:00:00:00:33"],
                                        rate=0.02), "update")
        assert not ok, text
        assert "set rate" in text and "EOPNOTSUPP" in text and "driver netdevsim" in text, text
        assert summary(ip_vfs()[3]) == before, tail(d)
    finally:
        subprocess.run(["devlink", "dev", "eswitch", "set", "netdevsim/netdevsim1", "mode", "legacy"],
                       capture_output=True, text=True, timeout=120, check=True)
    ok, text = req(d, "status", "vm3")
    assert ok and text.rstrip().endswith("in sync"), text


def test_delete_restores_the_original_state(d):
    ok, text = req(d, "delete", "vm1")
    assert ok, f"{text}\n{tail(d)}"
    assert summary(ip_vfs()[1]) == {"mac": "02:00:00:00:01:01", "vlan": 0, "qos": 0, "proto": "802.1Q",
                                    "max": 42, "min": 0, "spoofchk": True, "trust": True, "link": "enable"}, tail(d)


def test_a_vf_changed_by_hand_is_put_back_within_10s(d):
    ip("link", "set", PF, "vf", "3", "vlan", "999", "trust", "on", "state", "disable")
    took = wait_for(lambda: vlan_of(ip_vfs()[3]) == (300, 0, "802.1ad") and not ip_vfs()[3]["trust"]
                    and ip_vfs()[3]["link_state"] == "auto", 10, "drift repair", d)
    print(f"\n[guest] drift repaired after {took:.1f}s")
    assert "drift on PF" in d.log_text()


def test_counters_in_show(d):
    ok, text = req(d, "show", resource="all")
    assert ok, text
    rows = [ln.split() for ln in text.splitlines()]
    pf_rows = [r for r in rows if r and r[0] == "pf"]
    vf_rows = [r for r in rows if r and r[0] == "vf"]
    assert pf_rows and pf_rows[0][2] == PF and pf_rows[0][3] == "UP", text
    assert [r[1] for r in vf_rows] == ["3"], text
    # netdevsim has IFLA_VF_STATS but no datapath: every VF counter is 0 (nothing more can be claimed here)
    assert all(v == "0" for v in vf_rows[0][-8:]), text


def test_vfs_destroyed_under_a_running_daemon_come_back_programmed(d):
    destroy_vfs_like_a_driver_reload()
    took = wait_for(lambda: numvfs() == 4 and vlan_of(ip_vfs()[3]) == (300, 0, "802.1ad")
                    and ip_vfs()[3]["address"] == "02:fa:00:00:00:03", RECONCILE + 15, "VF re-creation", d)
    print(f"\n[guest] VFs re-created and re-programmed {took:.1f}s after they vanished "
          f"(reconcile_interval {RECONCILE:g}s)")
    assert "re-created" in d.log_text()


def test_restart_after_the_vfs_were_destroyed(d):
    # VF 0: an original state, then a live config; both must survive what follows.
    ip("link", "set", PF, "vf", "0", "mac", "02:00:00:00:00:0a", "trust", "on")
    ok, text = add(d, "vm0", vf_cfg(0, vlans=[50], macs=["02:fa:00:00:00:00"]))
    assert ok, text
    assert d.stop() == 0
    destroy_vfs_like_a_driver_reload()
    assert numvfs() == 0
    t0 = time.monotonic()
    d.start(timeout=START_TIMEOUT)
    print(f"\n[guest] restart with 0 VFs: {time.monotonic() - t0:.1f}s to ready")
    assert numvfs() == 4
    vfs = ip_vfs()
    assert vlan_of(vfs[0]) == (50, 0, "802.1Q") and vfs[0]["address"] == "02:fa:00:00:00:00", tail(d)
    assert vlan_of(vfs[3]) == (300, 0, "802.1ad") and vfs[3]["address"] == "02:fa:00:00:00:03", tail(d)
    for port in ("vm0", "vm3"):
        ok, text = req(d, "status", port)
        assert ok and text.rstrip().endswith("in sync"), text
    # The original state recorded before the first change (and the VFs' destruction) is still there.
    ok, text = req(d, "delete", "vm0")
    assert ok, text
    vf0 = summary(ip_vfs()[0])
    assert (vf0["mac"], vf0["trust"], vf0["vlan"]) == ("02:00:00:00:00:0a", True, 0), tail(d)


def test_start_up_batch_with_a_refused_vf_and_a_promiscuous_pf(d):
    """A restart whose start-up batch the kernel refuses part of: netdevsim in switchdev mode refuses
    legacy VF rates (EOPNOTSUPP). The refused VF is named with the op and the driver and left as it
    was; the VF after it in the same batch ends as asked. `promiscuous: true` sets IFF_PROMISC."""
    assert d.stop() == 0
    destroy_vfs_like_a_driver_reload()                       # blank VFs: every live VF is in the batch
    NUMVFS.write_text("4")
    (d.live_dir / "vm2.json").write_text(json.dumps(vf_cfg(2, macs=["02:fa:00:00:00:02"], rate=0.02)))
    d.main["pciids"][0]["promiscuous"] = True
    assert "PROMISC" not in json.loads(ip("-j", "link", "show", "dev", PF))[0]["flags"]
    r = subprocess.run(["devlink", "dev", "eswitch", "set", "netdevsim/netdevsim1", "mode", "switchdev"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    try:
        d.start(timeout=START_TIMEOUT)
        vfs = ip_vfs()
        assert vlan_of(vfs[3]) == (300, 0, "802.1ad") and vfs[3]["address"] == "02:fa:00:00:00:03", tail(d)
        assert (vfs[2]["address"], vlan_of(vfs[2]), vfs[2]["rate"]["max_tx"]) == \
            ("00:00:00:00:00:00", (0, 0, "802.1Q"), 0), tail(d)            # as it was: MAC and VLAN put back
        log = d.log_text()
        assert "VF 2: apply at start-up failed" in log and "set rate" in log and "EOPNOTSUPP" in log \
            and "driver netdevsim" in log, tail(d)
        assert "PROMISC" in json.loads(ip("-j", "link", "show", "dev", PF))[0]["flags"]
        # the manager retries the VF once the daemon runs and keeps the driver's answer for status
        wait_for(lambda: "set rate" in req(d, "status", "vm2")[1], 30, "status shows the refusal", d)
    finally:
        subprocess.run(["devlink", "dev", "eswitch", "set", "netdevsim/netdevsim1", "mode", "legacy"],
                       capture_output=True, text=True, timeout=120, check=True)
