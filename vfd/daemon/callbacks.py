"""start_cb / stop_cb: run as the owner of the VF's config file, without a shell, within a time budget.

A callback is the VF owner's code running on a root daemon's behalf, so it gets exactly the owner's
identity (uid, primary gid, supplementary groups from the group database: never root's groups), a
minimal environment, cwd "/", stdin /dev/null and no inherited descriptors. An owner uid with no
passwd entry has no groups to give; its callback is refused and logged, never run with root's.
Callbacks run concurrently, each in its own process group, and all of one batch share one deadline:
a batch of N callbacks takes at most the budget, not N times it (shutdown must finish well within
systemd's stop timeout). Whatever is still running at the deadline is killed with its process group.
"""

from __future__ import annotations

import logging
import os
import pwd
import shlex
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass

log = logging.getLogger("vfd.callbacks")

CLEAN_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
OUTPUT_LOGGED = 500        # characters of a callback's output that go into the log


@dataclass(frozen=True)
class Callback:
    which: str          # "start_cb" or "stop_cb"
    port_id: str
    command: str
    uid: int            # the owner of the VF's live config


@dataclass(frozen=True)
class Identity:
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str


class NoIdentity(Exception):
    """The callback's owner cannot be given a complete identity: the callback must not run."""


def identity_of(uid: int) -> Identity:
    """The owner's uid, primary gid and supplementary groups as initgroups(3) would set them."""
    try:
        pw = pwd.getpwuid(uid)
    except KeyError:
        raise NoIdentity(f"uid {uid} has no passwd entry, so no groups to run with") from None
    return Identity(uid=uid, gid=pw.pw_gid, groups=tuple(sorted(set(os.getgrouplist(pw.pw_name, pw.pw_gid)))),
                    home=pw.pw_dir or "/")


def environment(ident: Identity, port_id: str) -> dict[str, str]:
    """Nothing of the daemon's own environment: only what a callback needs to find programs."""
    return {"PATH": CLEAN_PATH, "HOME": ident.home, "LANG": "C", "VFD_PORT": port_id}


def _switch(uid: int) -> tuple[Identity, dict]:
    """The identity to run with and the Popen arguments that switch to it. As an ordinary user vfd
    can only run callbacks as itself (the demo); as root, exactly as the owner."""
    if os.geteuid() != 0:
        me = os.geteuid()
        try:
            return identity_of(me), {}
        except NoIdentity:
            return Identity(me, os.getegid(), tuple(os.getgroups()), "/"), {}
    ident = identity_of(uid)
    return ident, {"user": ident.uid, "group": ident.gid, "extra_groups": list(ident.groups)}


@dataclass
class _Running:
    cb: Callback
    proc: subprocess.Popen
    out: object         # temporary file holding stdout and stderr


def _start(cb: Callback) -> _Running | None:
    try:
        argv = shlex.split(cb.command)
        ident, kw = _switch(cb.uid)
    except (ValueError, NoIdentity) as exc:
        log.error("%s for %s not run: %s: %s", cb.which, cb.port_id, exc, cb.command)
        return None
    out = tempfile.TemporaryFile()
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                close_fds=True, cwd="/", env=environment(ident, cb.port_id),
                                start_new_session=True, umask=0o022, **kw)
    except (OSError, subprocess.SubprocessError) as exc:
        out.close()
        log.error("%s for %s could not run (%s): %s", cb.which, cb.port_id,
                  getattr(exc, "strerror", None) or exc, cb.command)
        return None
    return _Running(cb, proc, out)


def _kill_group(proc: subprocess.Popen) -> None:
    if proc.returncode is not None:
        return                                  # reaped: its pid may already be someone else's
    try:
        os.killpg(proc.pid, signal.SIGKILL)     # the callback's session: it and whatever it started
    except ProcessLookupError:
        pass


class Batch:
    """Callbacks started together. `wait` reaps them within one budget; `stop` (another thread, at
    shutdown) kills what is still running, so a long start_cb never holds up vfd's exit."""

    def __init__(self, callbacks: list[Callback]):
        self.running: list[_Running] = []
        self.results: dict[str, int | None] = {}
        self.stopping = False
        for cb in callbacks:
            r = _start(cb)
            if r is None:
                self.results[cb.port_id] = None
            else:
                self.running.append(r)

    def wait(self, budget: float) -> dict[str, int | None]:
        """{port id: exit status, or None when not run or killed}."""
        deadline = time.monotonic() + budget
        for r in self.running:
            cb = r.cb
            try:
                rc = r.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _kill_group(r.proc)
                r.proc.wait()
                log.error("%s for %s killed: still running after the %.0fs budget: %s", cb.which, cb.port_id,
                          budget, cb.command)
                rc = None
            else:
                if self.stopping and rc == -signal.SIGKILL:
                    log.error("%s for %s killed: vfd is stopping: %s", cb.which, cb.port_id, cb.command)
                    rc = None
                else:
                    r.out.seek(0)
                    text = r.out.read(OUTPUT_LOGGED * 4).decode(errors="replace").strip()
                    level = logging.INFO if rc == 0 else logging.WARNING
                    log.log(level, "%s for %s exited %d%s", cb.which, cb.port_id, rc,
                            f": {text[:OUTPUT_LOGGED]}" if text else "")
            r.out.close()
            self.results[cb.port_id] = rc
        return self.results

    def stop(self) -> None:
        self.stopping = True
        for r in self.running:
            _kill_group(r.proc)


def run_callbacks(callbacks: list[Callback], budget: float) -> dict[str, int | None]:
    """Run a batch concurrently and wait for it within the budget."""
    return Batch(callbacks).wait(budget)


def run_callback(which: str, port_id: str, command: str, uid: int, timeout: float) -> int | None:
    """One callback on its own (a batch of one)."""
    return run_callbacks([Callback(which, port_id, command, uid)], timeout)[port_id]
