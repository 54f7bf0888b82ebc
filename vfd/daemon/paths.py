"""The main config's paths, checked before any NIC is touched: a path vfd cannot use must stop
start-up with one line naming the key, the path and the reason, not a traceback after every VF
was already reprogrammed. (The request FIFO's own checks are the server's.)"""

from __future__ import annotations

import os
import stat

from vfd.model.mainconfig import MainConfig


def _dir_problem(path: str) -> str | None:
    """Why `path` cannot be used (or created) as a directory vfd writes in; None when it can."""
    if not path or "\0" in path:
        return "not a usable path"
    p = os.path.abspath(path)
    try:
        st = os.stat(p)
    except (FileNotFoundError, NotADirectoryError):
        parent = os.path.dirname(p)
        while parent != os.path.dirname(parent) and not os.path.isdir(parent) and not os.path.lexists(parent):
            parent = os.path.dirname(parent)
        try:
            pst = os.stat(parent)
        except OSError as exc:
            return f"cannot be created: {parent}: {exc.strerror}"
        if not stat.S_ISDIR(pst.st_mode):
            return f"cannot be created: {parent} is not a directory"
        if not os.access(parent, os.W_OK | os.X_OK):
            return f"cannot be created: {parent} is not writable"
        return None
    except OSError as exc:
        return exc.strerror or str(exc)
    if not stat.S_ISDIR(st.st_mode):
        return "not a directory"
    if not os.access(p, os.W_OK | os.X_OK):
        return "not writable"
    return None


def check_paths(main: MainConfig, daemonise: bool) -> list[str]:
    """Every directory the daemon will write in, as `<key> <path>: <reason>` lines (empty: all usable)."""
    wanted = [("config_dir", main.config_dir, main.config_dir), ("config_dir", main.config_dir, main.live_dir)]
    if main.log_dir.strip() != "stderr":
        wanted.append(("log_dir", main.log_dir.strip(), main.log_dir.strip()))
    if any(main.backend_of(pf) == "sim" for pf in main.pciids):
        wanted.append(("sim_state_dir", main.sim_state_dir, main.sim_state_dir))
    if daemonise:
        wanted.append(("pid_fname", main.pid_fname, os.path.dirname(os.path.abspath(main.pid_fname))))
    problems, failed = [], set()
    for key, shown, directory in wanted:
        why = None if key in failed else _dir_problem(directory)
        if why is not None:
            failed.add(key)
            where = f" (its directory {directory})" if key == "pid_fname" else \
                (f" (the live directory {directory})" if directory != shown else "")
            problems.append(f"{key} {shown}{where}: {why}")
    return problems
