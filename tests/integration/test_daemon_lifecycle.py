"""The daemon's life cycle against a real process: callbacks' identity and budget, SIGHUP, --check,
start-up path checks."""

from __future__ import annotations

import grp
import json
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.vfdlab import BIN, sim_pf, vf_config

PF = "0000:07:00.0"

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to own a file as another user")


@pytest.fixture
def shared():
    """A directory 'nobody' can write (pytest's tmp_path is not reachable by other users)."""
    d = Path(tempfile.mkdtemp(prefix="vfd-ops-"))
    d.chmod(0o1777)
    yield d
    shutil.rmtree(d)


def _wait_for(path: Path, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not path.exists():
        time.sleep(0.05)
    assert path.exists(), f"{path} never appeared"


PROBE = """#!/usr/bin/python3
import json, os, sys
fds = [int(f) for f in os.listdir("/proc/self/fd")]
def is_open(fd):
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False
json.dump({"uid": os.getuid(), "gid": os.getgid(), "groups": sorted(os.getgroups()), "env": dict(e.split("=", 1) for e in open("/proc/self/environ").read().split("\\x00") if e),
           "cwd": os.getcwd(), "fds": sorted(f for f in fds if is_open(f)),
           "stdin": os.readlink("/proc/self/fd/0")}, open(sys.argv[1] + ".tmp", "w"))
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
"""


@needs_root
def test_callback_gets_the_owners_identity_a_clean_env_and_no_descriptors(make_vfd, shared):
    """Issue 9.2: a nobody-owned VF's callback ran with gid 0 and root's groups."""
    nobody = pwd.getpwnam("nobody")
    probe = shared / "probe.py"
    probe.write_text(PROBE)
    probe.chmod(0o755)
    out = shared / "start.json"
    d = make_vfd()
    path = d.drop("vm1", vf_config(PF, 1, start_cb=f"{probe} {out}"))
    os.chown(path, nobody.pw_uid, -1)
    assert d.iplex("add", "vm1").returncode == 0
    d.stop()
    os.environ["VFD_OPS_LEAK"] = "secret"          # must not reach the callback through the daemon
    try:
        d.start()
    finally:
        del os.environ["VFD_OPS_LEAK"]
    _wait_for(out)
    seen = json.loads(out.read_text())
    assert seen["uid"] == nobody.pw_uid
    assert seen["gid"] == nobody.pw_gid == grp.getgrnam("nogroup").gr_gid
    assert seen["groups"] == sorted(set(os.getgrouplist("nobody", nobody.pw_gid)))
    assert 0 not in seen["groups"]
    assert seen["env"] == {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": nobody.pw_dir, "LANG": "C",
                           "VFD_PORT": "vm1"}
    assert seen["cwd"] == "/"
    assert seen["fds"] == [0, 1, 2]
    assert seen["stdin"] == "/dev/null"


@needs_root
def test_callback_of_an_owner_without_passwd_entry_is_refused(make_vfd, shared):
    uid = 54321
    with pytest.raises(KeyError):
        pwd.getpwuid(uid)
    marker = shared / "ran"
    d = make_vfd()
    path = d.drop("vm1", vf_config(PF, 1, stop_cb=f"/usr/bin/touch {marker}"))
    os.chown(path, uid, -1)
    assert d.iplex("add", "vm1").returncode == 0
    assert d.stop() == 0
    assert not marker.exists()
    assert "stop_cb for vm1 not run: uid 54321 has no passwd entry" in d.log_text()


def test_stop_callbacks_run_concurrently_within_one_budget(make_vfd):
    """Issue 10.13: four `sleep 100` stop_cbs with callback_timeout 3 took 12 s one after another."""
    d = make_vfd([sim_pf(PF, 8)], callback_timeout=3)
    secs = str(100 + os.getpid() % 500)                  # as `sleep 100`, not mistaken for another run's
    for vf in range(1, 5):
        assert d.add(f"vm{vf}", vf_config(PF, vf, stop_cb=f"/bin/sleep {secs}")).returncode == 0
    t0 = time.monotonic()
    assert d.stop(signal.SIGTERM, timeout=60) == 0
    took = time.monotonic() - t0
    assert took < 8, f"shutdown took {took:.1f}s"
    log = d.log_text()
    assert log.count("killed: still running after the 3s budget") == 4
    assert "vfd stopped" in log
    assert not _sleeping(secs)


def test_sighup_with_an_unusable_log_dir_keeps_the_log_and_still_reapplies(make_vfd):
    """Issue 10.12: the handlers were removed before the new ones failed; vfd.log stayed closed."""
    d = make_vfd(start=False, log_level=1)
    logs = d.root / "logs"
    d.main["log_dir"] = str(logs)
    d.start()
    assert d.add("vm1", vf_config(PF, 1)).returncode == 0
    blocker = d.root / "not-a-dir"
    blocker.write_text("")
    d.main["log_dir"] = str(blocker / "logs")
    d.write_main()
    d.proc.send_signal(signal.SIGHUP)
    assert d.add("vm2", vf_config(PF, 2)).returncode == 0       # served after the SIGHUP
    text = (logs / "vfd.log").read_text()
    assert f"SIGHUP: log_dir {blocker / 'logs'} unusable" in text
    assert "vf added: vm2" in text.split("SIGHUP: log_dir")[1]
    assert d.vf_state(1)["vlans"] == [10] and d.vf_state(2)["vlans"] == [10]


def _check(d) -> subprocess.CompletedProcess:
    d.write_main()
    return subprocess.run([str(BIN / "vfd"), "--check", "-p", str(d.conf)], capture_output=True, text=True,
                          timeout=60)


def _start_fails(d) -> subprocess.CompletedProcess:
    d.write_main()
    return subprocess.run([str(BIN / "vfd"), "-f", "-p", str(d.conf)], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("driver,pf_extra,main_extra,message", [
    ("mlx5", {"enable_loopback": True}, {}, "enable_loopback failed: driver mlx5 has no PF TX loopback control"),
    ("bnxt", {}, {"enable_qos": True}, "enable_qos failed: per-TC QoS (DCB) is not supported by driver bnxt "
                                       "on the sim backend")])
def test_check_refuses_what_start_up_refuses_with_the_same_message(make_vfd, driver, pf_extra, main_extra,
                                                                   message):
    """Issue 10.3: --check passed configs the daemon then refused to start with."""
    d = make_vfd([sim_pf(PF, 4, driver, **pf_extra)], start=False, **main_extra)
    r = _check(d)
    assert r.returncode == 1 and message in r.stdout, r.stdout + r.stderr
    r = _start_fails(d)
    assert r.returncode == 1 and message in r.stderr, r.stderr
    assert not d.sim_dir.exists() or not list(d.sim_dir.iterdir())   # refused before the NIC


def test_check_admits_live_configs_against_their_pf(make_vfd):
    """Two live configs for one VF parse fine each; admission (as at start) refuses the second."""
    d = make_vfd([sim_pf(PF, 4)])
    assert d.add("vm1", vf_config(PF, 1)).returncode == 0
    d.stop()
    (d.live_dir / "vm2.json").write_text(json.dumps(vf_config(PF, 1, name="other")))
    r = _check(d)
    assert r.returncode == 1, r.stdout
    assert "vm2.json" in r.stdout and "rule vf_free" in r.stdout, r.stdout
    assert "1 live configs ok, 1 bad" in r.stdout


@pytest.mark.parametrize("key", ["config_dir", "log_dir", "sim_state_dir"])
def test_unusable_paths_stop_start_up_before_any_nic_is_touched(make_vfd, key):
    """Issue 10.14: a bad path failed with a raw traceback after every VF was already reprogrammed."""
    d = make_vfd(start=False)
    blocker = d.root / "plain-file"
    blocker.write_text("")
    bad = blocker / "sub"
    d.main[key] = str(bad)
    r = _start_fails(d)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [f"vfd: {key} {bad}: cannot be created: {blocker} is not a directory"]
    assert "Traceback" not in r.stderr
    if key != "sim_state_dir":
        assert not d.sim_dir.exists()                    # no PF was opened


def test_verbose_level_outside_the_range_or_missing_is_refused(make_vfd):
    """Issue 10.4: loglevel 9 was accepted and a bare verbose set level 0."""
    d = make_vfd()
    for params, words in [({"loglevel": 9}, "verbose level 9 is not a whole number in 0..5"),
                          ({}, "verbose needs a level: loglevel 0..5 (none given)"),
                          ({"loglevel": -1}, "verbose level -1")]:
        reply = d.request("verbose", **params)
        assert reply["state"] == "ERROR" and words in " ".join(reply["msg"]), reply
    assert d.request("verbose", loglevel=5)["state"] == "OK"


def test_cpu_alarm_takes_percentages_only(make_vfd):
    d = make_vfd()
    r = d.iplex("cpu_alarm", "0.3")
    assert r.returncode == 1 and "is 0.3%, below the floor of 5%" in r.stdout + r.stderr
    assert d.request("cpu_alarm", resource=0.3)["state"] == "ERROR"
    assert "changed to: 30%" in d.iplex("cpu_alarm", "30").stdout


def test_a_start_callback_still_running_does_not_hold_up_shutdown(make_vfd):
    """A start_cb within its (long) budget is killed at SIGTERM rather than waited for."""
    d = make_vfd([sim_pf(PF, 8)], callback_timeout=600)
    secs = str(300 + os.getpid() % 500)                  # not mistaken for another run's sleep
    assert d.add("vm1", vf_config(PF, 1, start_cb=f"/bin/sleep {secs}")).returncode == 0
    d.stop()
    d.start()
    deadline = time.monotonic() + 20
    while not _sleeping(secs) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _sleeping(secs)
    t0 = time.monotonic()
    assert d.stop(signal.SIGTERM, timeout=60) == 0
    assert time.monotonic() - t0 < 8
    assert "start_cb for vm1 killed: vfd is stopping" in d.log_text()
    assert not _sleeping(secs)


def _sleeping(seconds: str) -> bool:
    return bool(subprocess.run(["pgrep", "-f", f"^/bin/sleep {seconds}$"], capture_output=True).stdout)
