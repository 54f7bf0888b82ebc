"""Per-attachment state (like sriov-cni's cache): what DEL and CHECK need once the runtime's inputs are
gone, one JSON file per attachment under cacheDir; and the per-VF lock that serialises ADD and DEL on
one VF (vfd itself serialises admission; the lock keeps the netdev steps of two attachments apart)."""

from __future__ import annotations

import fcntl
import json
import os
from contextlib import contextmanager

from vfd.integrations.cni.errors import IO_FAILURE, CniError


def _path(cache_dir: str, port_id: str) -> str:
    return os.path.join(cache_dir, f"{port_id}.json")


def load(cache_dir: str, port_id: str) -> dict | None:
    try:
        with open(_path(cache_dir, port_id), "rb") as f:
            data = json.loads(f.read())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise CniError(IO_FAILURE, f"cannot read the attachment cache {_path(cache_dir, port_id)}: {exc}") from None
    return data if isinstance(data, dict) else None


def save(cache_dir: str, port_id: str, state: dict) -> None:
    from vfd.store import atomic_write   # here: DEL never writes; vfd.store pulls pathlib and secrets
    try:
        os.makedirs(cache_dir, mode=0o700, exist_ok=True)
        atomic_write(_path(cache_dir, port_id), (json.dumps(state, indent=1) + "\n").encode(), mode=0o600)
    except OSError as exc:
        raise CniError(IO_FAILURE, f"cannot write the attachment cache {_path(cache_dir, port_id)}: "
                                   f"{exc.strerror}") from None


def remove(cache_dir: str, port_id: str) -> None:
    try:
        os.unlink(_path(cache_dir, port_id))
    except FileNotFoundError:
        pass


def all_ports(cache_dir: str) -> list[str]:
    try:
        return sorted(n[:-5] for n in os.listdir(cache_dir) if n.endswith(".json") and not n.startswith("."))
    except OSError:
        return []


@contextmanager
def vf_lock(cache_dir: str, device_id: str):
    """Held for a whole ADD or DEL of `device_id` (blocking: the other one finishes first)."""
    d = os.path.join(cache_dir, "locks")
    try:
        os.makedirs(d, mode=0o700, exist_ok=True)
        fd = os.open(os.path.join(d, f"{device_id}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise CniError(IO_FAILURE, f"cannot open the VF lock in {d}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
