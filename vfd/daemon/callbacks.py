"""start_cb / stop_cb: run as the owner of the VF's config file, without a shell, with a time limit."""

from __future__ import annotations

import logging
import os
import shlex
import subprocess

log = logging.getLogger("vfd.callbacks")


def run_callback(which: str, port_id: str, command: str, uid: int, timeout: float) -> int | None:
    """Run one callback; log and return its exit status (None when it could not run or timed out)."""
    argv = shlex.split(command)
    kwargs = {}
    if os.geteuid() == 0 and uid != 0:
        kwargs["user"] = uid
    try:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout,
                              close_fds=True, **kwargs)
    except subprocess.TimeoutExpired:
        log.error("%s for %s timed out after %.0fs: %s", which, port_id, timeout, command)
        return None
    except OSError as exc:
        log.error("%s for %s could not run (%s): %s", which, port_id, exc.strerror, command)
        return None
    out = (proc.stdout + proc.stderr).decode(errors="replace").strip()
    level = logging.INFO if proc.returncode == 0 else logging.WARNING
    log.log(level, "%s for %s exited %d%s", which, port_id, proc.returncode, f": {out[:500]}" if out else "")
    return proc.returncode
