"""Each VF's state as vfd found it, recorded before vfd first changes it and put back on delete.

As sriov-cni does on DEL (its cache in /var/lib/cni/sriov), but kept per PF in one JSON file
(`<state dir>/<pf id>.json`, written atomically before the change is sent), so a daemon restart,
a crash or a reboot between add and delete does not lose it. A record is dropped once the VF has
been put back.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from vfd.store import atomic_write, remove_stale_temps

log = logging.getLogger("vfd.kernel")
ABOUT = "VF state before vfd changed it; restored when the VF's config is deleted"


class OriginalStore:
    def __init__(self, directory: str | os.PathLike):
        self.dir = Path(directory)
        self._pfs: dict[str, dict[int, dict]] = {}
        self._dir_made = False
        self._json: dict[str, dict[int, tuple[dict, str]]] = {}   # record -> its JSON text (see _save)

    def path(self, pf_id: str) -> Path:
        return self.dir / f"{pf_id.replace('/', '_')}.json"

    def _load(self, pf_id: str) -> dict[int, dict]:
        if pf_id in self._pfs:
            return self._pfs[pf_id]
        vfs: dict[int, dict] = {}
        path = self.path(pf_id)
        try:
            data = json.loads(path.read_text())
            vfs = {int(k): dict(v) for k, v in data.get("vfs", {}).items()}
        except FileNotFoundError:
            pass
        except (OSError, ValueError, AttributeError, TypeError) as exc:
            bad = path.with_name(path.name + ".bad")
            log.error("original VF states in %s unreadable (%s); moved to %s, starting afresh", path, exc, bad)
            try:
                os.replace(path, bad)
            except OSError:
                pass
        self._pfs[pf_id] = vfs
        return vfs

    def _save(self, pf_id: str) -> None:
        """Write the PF's whole file, atomically. A record never changes once made, so its JSON text
        is encoded once and the file is joined from those texts: a change on a PF with 64 recorded
        VFs encodes one record, not 64."""
        if not self._dir_made:
            self.dir.mkdir(mode=0o755, parents=True, exist_ok=True)
            self._dir_made = True
        vfs = self._pfs.get(pf_id, {})
        texts = self._json.setdefault(pf_id, {})
        for vfid in [v for v in texts if v not in vfs]:
            del texts[vfid]
        parts = []
        for vfid, rec in sorted(vfs.items()):
            if vfid not in texts or texts[vfid][0] is not rec:
                texts[vfid] = (rec, json.dumps(rec, sort_keys=True, separators=(",", ":")))
            parts.append(f'"{vfid}":{texts[vfid][1]}')
        head = json.dumps({"about": ABOUT, "pf": pf_id}, sort_keys=True, separators=(",", ":"))[:-1]
        data = f'{head},"vfs":{{{",".join(parts)}}}}}\n'.encode()
        try:
            atomic_write(self.path(pf_id), data)
        except FileNotFoundError:            # the directory was removed under the daemon: made again
            self.dir.mkdir(mode=0o755, parents=True, exist_ok=True)
            atomic_write(self.path(pf_id), data)

    def open(self, pf_id: str) -> None:
        if self.dir.is_dir():
            remove_stale_temps(self.dir)
        self._load(pf_id)

    def get(self, pf_id: str, vfid: int) -> dict | None:
        rec = self._load(pf_id).get(vfid)
        return dict(rec) if rec is not None else None

    def has(self, pf_id: str, vfid: int) -> bool:
        return vfid in self._load(pf_id)

    def record(self, pf_id: str, vfid: int, state: dict) -> bool:
        """Record `state` unless a record exists (the first change wins); True when recorded now."""
        vfs = self._load(pf_id)
        if vfid in vfs:
            return False
        vfs[vfid] = dict(state)
        self._save(pf_id)
        return True

    def record_many(self, pf_id: str, states: dict[int, dict]) -> list[int]:
        """record() for several VFs of one PF with one durable write; the VFs recorded now."""
        vfs = self._load(pf_id)
        new = [vfid for vfid in sorted(states) if vfid not in vfs]
        for vfid in new:
            vfs[vfid] = dict(states[vfid])
        if new:
            self._save(pf_id)
        return new

    def drop(self, pf_id: str, vfid: int) -> None:
        self.drop_many(pf_id, [vfid])

    def drop_many(self, pf_id: str, vfids) -> None:
        vfs = self._load(pf_id)
        if [vfid for vfid in vfids if vfs.pop(vfid, None) is not None]:
            self._save(pf_id)

    def drop_pf(self, pf_id: str) -> None:
        if self._load(pf_id):
            self._pfs[pf_id] = {}
            self._save(pf_id)

    def vfids(self, pf_id: str) -> list[int]:
        return sorted(self._load(pf_id))
