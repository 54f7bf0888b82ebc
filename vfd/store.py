"""Desired state on disk: VF configs dropped in `config_dir`, admitted ones in `config_dir`_live.

Every write is atomic (temp file in the same directory, fsync, rename, fsync of the directory), so
a crash at any instant leaves either the old or the new file. Request file names are confined to
these two directories: no request can make vfd read, write or rename anything elsewhere.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from vfd.errors import RequestError

SUFFIX = ".json"
MAX_CONFIG_BYTES = 256 * 1024


def fsync_dir(path: str | os.PathLike) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, data: bytes, mode: int = 0o644, durable: bool = True) -> None:
    """Replace `path` with `data` all at once. `durable` adds the fsyncs that make the new content
    survive a power cut; without them readers still never see a torn file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.replace(tmp, path)
    except OSError:
        os.unlink(tmp)
        raise
    if durable:
        fsync_dir(path.parent)


def remove_stale_temps(directory: Path) -> None:
    """Temp files of atomic_write left by a crash (kill -9 between write and rename)."""
    for p in directory.glob(".*.tmp*"):
        try:
            p.unlink()
        except OSError:
            pass


@dataclass(frozen=True)
class ReadFile:
    path: Path
    port_id: str
    data: bytes
    owner_uid: int


class Store:
    def __init__(self, config_dir: str, live_dir: str, keep_deleted: bool = False):
        self.config_dir = Path(config_dir)
        self.live_dir = Path(live_dir)
        self.keep_deleted = keep_deleted

    def ensure_dirs(self) -> None:
        for d in (self.config_dir, self.live_dir):
            d.mkdir(mode=0o775, parents=True, exist_ok=True)
        remove_stale_temps(self.live_dir)

    # ---- naming ---------------------------------------------------------------------------
    def resolve(self, name: object, where: str) -> tuple[Path, str]:
        """Map a request's file name to a path inside `where` ('config' or 'live').

        A bare name resolves in that directory; a full path is accepted only when it names a file
        directly inside it (what iplex sends). Anything else is refused before touching the disk.
        """
        base = self.config_dir if where == "config" else self.live_dir
        if not isinstance(name, str) or not name or "\0" in name or len(name) > 4096:
            raise RequestError(f"filename {name!r} is not a valid file name")
        p = Path(name)
        if p.is_absolute() or "/" in name:
            if p.parent.resolve() != base.resolve():
                raise RequestError(f"filename {name!r} is outside {base} (vfd only reads configs from there)")
            base_name = p.name
        else:
            base_name = name
        if base_name in (".", "..") or base_name.startswith("."):
            raise RequestError(f"filename {name!r} is not a valid config name")
        if not base_name.endswith(SUFFIX):
            base_name += SUFFIX
        port_id = base_name[: -len(SUFFIX)]
        if not port_id:
            raise RequestError(f"filename {name!r} is not a valid config name")
        return base / base_name, port_id

    def live_path(self, port_id: str) -> Path:
        return self.live_dir / f"{port_id}{SUFFIX}"

    # ---- reading --------------------------------------------------------------------------
    @staticmethod
    def read(path: Path, port_id: str) -> ReadFile:
        """Read a regular file without following a symlink planted in vfd's directory."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError as exc:
            raise RequestError(f"unable to read config file: {path}: {exc.strerror}") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise RequestError(f"unable to read config file: {path}: not a regular file")
            if st.st_size > MAX_CONFIG_BYTES:
                raise RequestError(f"unable to read config file: {path}: larger than {MAX_CONFIG_BYTES} bytes")
            chunks = []
            while True:
                b = os.read(fd, 65536)
                if not b:
                    break
                chunks.append(b)
            data = b"".join(chunks)
        finally:
            os.close(fd)
        if not data.strip():
            raise RequestError(f"unable to read config file: {path}: file is empty")
        return ReadFile(path=path, port_id=port_id, data=data, owner_uid=st.st_uid)

    def live_files(self) -> list[Path]:
        if not self.live_dir.is_dir():
            return []
        return sorted(p for p in self.live_dir.iterdir() if p.name.endswith(SUFFIX) and not p.name.startswith("."))

    # ---- state changes --------------------------------------------------------------------
    def write_live(self, port_id: str, data: bytes, uid: int | None = None) -> None:
        path = self.live_path(port_id)
        atomic_write(path, data)
        if uid is not None and os.geteuid() == 0:
            os.chown(path, uid, -1)  # callbacks run as the owner recorded in the live file

    def consume(self, src: Path) -> None:
        """Remove an admitted drop file from config_dir (after its live copy is durable)."""
        try:
            os.unlink(src)
            fsync_dir(src.parent)
        except FileNotFoundError:
            pass

    def mark_error(self, src: Path) -> None:
        if src.parent.resolve() == self.config_dir.resolve() and src.exists():
            os.replace(src, src.with_name(src.name + ".error"))

    def remove_live(self, port_id: str) -> None:
        path = self.live_path(port_id)
        if self.keep_deleted:
            os.replace(path, self.config_dir / f"{path.name}-")
            fsync_dir(self.config_dir)
        else:
            os.unlink(path)
        fsync_dir(self.live_dir)

    def quarantine_live(self, path: Path) -> Path:
        """A live file that no longer admits at start-up is moved out to config_dir as <name>-."""
        dest = self.config_dir / f"{path.name}-"
        os.replace(path, dest)
        fsync_dir(self.live_dir)
        return dest

    def export(self, port_id: str, output: object) -> Path:
        src = self.live_path(port_id)
        if not isinstance(output, str) or not output:
            raise RequestError("export needs an output file name")
        out = Path(output)
        if not out.is_absolute():
            out = self.config_dir / out
        if out.parent.resolve() != self.config_dir.resolve() or out.name.startswith("."):
            raise RequestError(f"export output {output!r} must be a file directly inside {self.config_dir}")
        data = self.read(src, port_id).data
        atomic_write(out, data)
        return out
