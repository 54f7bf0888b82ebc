"""Callbacks as real processes: the environment they get, the process group killed at the deadline,
the owner's identity. (The daemon's side, with a nobody-owned VF: tests/integration/test_daemon_lifecycle.py.)"""

from __future__ import annotations

import os
import pwd
import subprocess
import time

import pytest

from vfd.daemon import callbacks
from vfd.daemon.callbacks import run_callback

DUMP_ENV = "/usr/bin/python3 -c \"import sys; open(sys.argv[1], 'w').write(open('/proc/self/environ').read())\""


def _alive(pattern: str) -> bool:
    return bool(subprocess.run(["pgrep", "-f", pattern], capture_output=True).stdout)


def test_environment_is_only_what_a_callback_needs(tmp_path, monkeypatch):
    monkeypatch.setenv("VFD_TEST_SECRET", "x")
    out = tmp_path / "env"
    assert run_callback("start_cb", "port-1", f"{DUMP_ENV} {out}", os.geteuid(), 30) == 0
    env = dict(e.split("=", 1) for e in out.read_text().split("\0") if e)
    assert set(env) == {"PATH", "HOME", "LANG", "VFD_PORT"}
    assert (env["PATH"], env["LANG"], env["VFD_PORT"]) == ("/usr/sbin:/usr/bin:/sbin:/bin", "C", "port-1")


def test_the_deadline_kills_the_whole_process_group():
    """A callback that started a child of its own: the child must not outlive the budget."""
    a, b = 1000 + os.getpid() % 7000, 9000 + os.getpid() % 7000    # unique to this run: other runs may be alive
    t0 = time.monotonic()
    rc = run_callback("stop_cb", "port-1", f"/bin/sh -c 'sleep {a} & exec sleep {b}'", os.geteuid(), 1)
    assert rc is None and time.monotonic() - t0 < 10
    assert not _alive(f"^sleep {a}$") and not _alive(f"^sleep {b}$")


def test_an_owner_without_passwd_entry_gets_no_identity():
    uid = 54321
    with pytest.raises(KeyError):
        pwd.getpwuid(uid)
    with pytest.raises(callbacks.NoIdentity, match="uid 54321 has no passwd entry"):
        callbacks.identity_of(uid)


def test_identity_is_the_users_groups_not_the_callers():
    nobody = pwd.getpwnam("nobody")
    ident = callbacks.identity_of(nobody.pw_uid)
    assert (ident.uid, ident.gid, ident.home) == (nobody.pw_uid, nobody.pw_gid, nobody.pw_dir)
    assert set(ident.groups) == set(os.getgrouplist("nobody", nobody.pw_gid))
