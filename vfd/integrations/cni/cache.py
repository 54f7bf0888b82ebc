"""Per-attachment state (like sriov-cni's cache): what DEL and CHECK need once the runtime's inputs are
gone, one JSON file per attachment under cacheDir; and the per-VF lock that serialises ADD and DEL on
one VF (vfd itself serialises admission; the lock keeps the netdev steps of two attachments apart)."""

from __future__ import annotations

import fcntl
import json
import os
from contextlib import contextmanager
from pathlib import Path

from vfd.integrations.cni.errors import IO_FAILURE, CniError
from vfd.store import atomic_write


def _path(cache_dir: str, port_id: str) -> Path:
    return Path(cache_dir) / f"{port_id}.json"


def load(cache_dir: str, port_id: str) -> dict | None:
    try:
        data = json.loads(_path(cache_dir, port_id).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise CniError(IO_FAILURE, f"cannot read the attachment cache {_path(cache_dir, port_id)}: {exc}") from None
    return data if isinstance(data, dict) else None


def save(cache_dir: str, port_id: str, state: dict) -> None:
    try:
        os.makedirs(cache_dir, mode=0o700, exist_ok=True)
        atomic_write(_path(cache_dir, port_id), (json.dumps(state, indent=1) + "\n").encode(), mode=0o600)
    except OSError as exc:
        raise CniError(IO_FAILURE, f"cannot write the attachment cache {_path(cache_dir, port_id)}: "
                                   f"{exc.strerror}") from None


def remove(cache_dir: str, port_id: str) -> None:
    try:
        _path(cache_dir, port_id).unlink()
    except FileNotFoundError:
        pass


def all_ports(cache_dir: str) -> list[str]:
    try:
        return sorted(p.name[:-5] for p in Path(cache_dir).iterdir()
                      if p.name.endswith(".json") and not p.name.startswith("."))
    except OSError:
        return []


@contextmanager
def vf_lock(cache_dir: str, device_id: str):
    """Held for a whole ADD or DEL of `device_id` (blocking: the other one finishes first)."""
    d = Path(cache_dir) / "locks"
    try:
        d.mkdir(parents=True, mode=0o700, exist_ok=True)
        fd = os.open(d / f"{device_id}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise CniError(IO_FAILURE, f"cannot open the VF lock in {d}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
