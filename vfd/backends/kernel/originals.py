"""Each VF's state as vfd found it, recorded before vfd first changes it and put back on delete.

As sriov-cni does on DEL (its cache in /var/lib/cni/sriov), but kept per PF in the state dir, so
a daemon restart, a crash or a reboot between add and delete does not lose it. A record is
dropped once the VF has been put back.

Two files per PF: `<pf id>.json`, the snapshot (one JSON object, replaced atomically), and
`<pf id>.journal`, what changed since (one JSON line per record made or dropped). A record is
appended and fdatasync'd before the change it protects is sent: one write and one sync per VF
change, where rewriting the PF's whole file cost a temp file, a rename and two syncs. Loading
replays the journal over the snapshot; every line sets or drops one VF's record, so replaying it
over a snapshot that already holds it (a crash between the two steps of folding) ends the same.
A line left torn by a crash in the middle of an append is skipped: its change was never sent.
The journal is folded into the snapshot when the PF is opened and once it outgrows the records.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from vfd.store import atomic_write, fsync_dir, remove_stale_temps

log = logging.getLogger("vfd.kernel")
ABOUT = "VF state before vfd changed it; restored when the VF's config is deleted"
FOLD_AFTER = 256        # journal lines beyond which (and beyond 4 per record) it is folded into the snapshot


def _line(vfid: int, state: dict | None) -> str:
    return json.dumps({"vf": vfid, "state": state}, sort_keys=True, separators=(",", ":")) + "\n"


class OriginalStore:
    def __init__(self, directory: str | os.PathLike):
        self.dir = Path(directory)
        self._pfs: dict[str, dict[int, dict]] = {}
        self._journal: dict[str, tuple[int, int]] = {}     # pf -> (open journal fd, lines in it)

    def path(self, pf_id: str) -> Path:
        return self.dir / f"{pf_id.replace('/', '_')}.json"

    def journal_path(self, pf_id: str) -> Path:
        return self.dir / f"{pf_id.replace('/', '_')}.journal"

    # ---- reading --------------------------------------------------------------------------
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
            self._set_aside(path, exc)
        self._replay(pf_id, vfs)
        self._pfs[pf_id] = vfs
        return vfs

    def _replay(self, pf_id: str, vfs: dict[int, dict]) -> None:
        path = self.journal_path(pf_id)
        try:
            text = path.read_bytes().decode("utf-8", "replace")
        except FileNotFoundError:
            return
        except OSError as exc:
            self._set_aside(path, exc)
            return
        for n, line in enumerate(text.splitlines(), 1):
            try:
                entry = json.loads(line)
                vfid, state = int(entry["vf"]), entry["state"]
                if state is None:
                    vfs.pop(vfid, None)
                else:
                    vfs[vfid] = dict(state)
            except (ValueError, KeyError, TypeError, AttributeError):
                log.warning("original VF states: line %d of %s is torn or unreadable (a crash while it was "
                            "written: its change was never sent); skipped", n, path)

    @staticmethod
    def _set_aside(path: Path, exc: Exception) -> None:
        bad = path.with_name(path.name + ".bad")
        log.error("original VF states in %s unreadable (%s); moved to %s, starting afresh", path, exc, bad)
        try:
            os.replace(path, bad)
        except OSError:
            pass

    # ---- writing --------------------------------------------------------------------------
    def _append(self, pf_id: str, text: str) -> None:
        """Append journal lines durably (memory already holds what they say). A failed write is cut
        back off, so no line ever lands behind a torn one; if even that fails, the journal is
        closed and the next change opens it anew after folding."""
        fd, lines, size = self._journal_fd(pf_id)
        try:
            view = memoryview(text.encode())
            while view:
                view = view[os.write(fd, view):]
            os.fdatasync(fd)
        except OSError:
            try:
                os.ftruncate(fd, size)
            except OSError:
                self._close_journal(pf_id)
            raise
        lines += text.count("\n")
        self._journal[pf_id] = (fd, lines)
        if lines > max(FOLD_AFTER, 4 * len(self._pfs.get(pf_id, {}))):
            try:
                self._fold(pf_id)
            except OSError as exc:            # the lines are durable: folding is only housekeeping
                log.warning("original VF states of PF %s: folding the journal failed: %s", pf_id, exc)

    def _journal_fd(self, pf_id: str) -> tuple[int, int, int]:
        """The PF's journal open for appending: (fd, lines, size). A journal whose file was removed
        under the daemon (the state dir deleted) is made anew, after the snapshot is rewritten with
        every record: appends to an unlinked file would be lost."""
        held = self._journal.get(pf_id)
        if held is not None:
            try:
                st = os.fstat(held[0])
                if st.st_nlink > 0:
                    return held[0], held[1], st.st_size
            except OSError:
                pass
            self._close_journal(pf_id)
            self._fold(pf_id)
        self.dir.mkdir(mode=0o755, parents=True, exist_ok=True)
        path = self.journal_path(pf_id)
        flags = os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
        try:
            fd = os.open(path, flags)
        except FileNotFoundError:
            fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o644)
            fsync_dir(self.dir)          # the new file's name must survive a power cut too
        self._journal[pf_id] = (fd, 0)
        return fd, 0, os.fstat(fd).st_size

    def _close_journal(self, pf_id: str) -> None:
        held = self._journal.pop(pf_id, None)
        if held is not None:
            try:
                os.close(held[0])
            except OSError:
                pass

    def _fold(self, pf_id: str) -> None:
        """The snapshot rewritten with every record (atomically), then the journal emptied."""
        vfs = self._pfs.get(pf_id, {})
        data = json.dumps({"about": ABOUT, "pf": pf_id, "vfs": {str(k): vfs[k] for k in sorted(vfs)}},
                          sort_keys=True, separators=(",", ":")).encode() + b"\n"
        try:
            atomic_write(self.path(pf_id), data)
        except FileNotFoundError:            # the directory was removed under the daemon: made again
            self.dir.mkdir(mode=0o755, parents=True, exist_ok=True)
            atomic_write(self.path(pf_id), data)
        held = self._journal.get(pf_id)
        if held is not None:
            os.ftruncate(held[0], 0)
            os.fdatasync(held[0])
            self._journal[pf_id] = (held[0], 0)
        else:
            try:
                os.truncate(self.journal_path(pf_id), 0)
            except FileNotFoundError:
                pass

    # ---- the interface the backend uses ----------------------------------------------------
    def open(self, pf_id: str) -> None:
        """Load the PF's records and fold its journal (a restart's start is the time for a rewrite)."""
        if self.dir.is_dir():
            remove_stale_temps(self.dir)
        self._close_journal(pf_id)
        self._pfs.pop(pf_id, None)
        self._load(pf_id)
        try:
            if self.journal_path(pf_id).stat().st_size:
                self._fold(pf_id)
        except FileNotFoundError:
            pass

    def get(self, pf_id: str, vfid: int) -> dict | None:
        rec = self._load(pf_id).get(vfid)
        return dict(rec) if rec is not None else None

    def has(self, pf_id: str, vfid: int) -> bool:
        return vfid in self._load(pf_id)

    def record(self, pf_id: str, vfid: int, state: dict) -> bool:
        """Record `state` unless a record exists (the first change wins); True when recorded now."""
        return bool(self.record_many(pf_id, {vfid: state}))

    def record_many(self, pf_id: str, states: dict[int, dict]) -> list[int]:
        """Record several VFs of one PF with one durable append; the VFs recorded now (a failed
        write records none)."""
        vfs = self._load(pf_id)
        new = [vfid for vfid in sorted(states) if vfid not in vfs]
        if new:
            vfs.update((vfid, dict(states[vfid])) for vfid in new)
            try:
                self._append(pf_id, "".join(_line(vfid, vfs[vfid]) for vfid in new))
            except BaseException:
                for vfid in new:
                    del vfs[vfid]
                raise
        return new

    def drop(self, pf_id: str, vfid: int) -> None:
        self.drop_many(pf_id, [vfid])

    def drop_many(self, pf_id: str, vfids) -> None:
        vfs = self._load(pf_id)
        gone = {vfid: vfs.pop(vfid) for vfid in vfids if vfid in vfs}
        if gone:
            try:
                self._append(pf_id, "".join(_line(vfid, None) for vfid in gone))
            except BaseException:
                vfs.update(gone)
                raise

    def drop_pf(self, pf_id: str) -> None:
        if self._load(pf_id):
            self._pfs[pf_id] = {}
            self._fold(pf_id)

    def vfids(self, pf_id: str) -> list[int]:
        return sorted(self._load(pf_id))

    def close(self) -> None:
        for pf_id in list(self._journal):
            self._close_journal(pf_id)
