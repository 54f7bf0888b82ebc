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
    for vf in range(1, 5):
        assert d.add(f"vm{vf}", vf_config(PF, vf, stop_cb="/bin/sleep 100")).returncode == 0
    t0 = time.monotonic()
    assert d.stop(signal.SIGTERM, timeout=60) == 0
    took = time.monotonic() - t0
    assert took < 8, f"shutdown took {took:.1f}s"
    log = d.log_text()
    assert log.count("killed: still running after the 3s budget") == 4
    assert "vfd stopped" in log
    assert not subprocess.run(["pgrep", "-f", "^/bin/sleep 100$"], capture_output=True).stdout
