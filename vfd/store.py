"""Desired state on disk: VF configs dropped in `config_dir`, admitted ones in `config_dir`_live.

Every write is atomic (a temp file with an unpredictable name in the same directory, fsync,
rename, fsync of the directory), so a crash at any instant leaves either the old or the new file,
and nothing another user plants in these directories can be opened, followed or block vfd.
Request file names are confined to these two directories and to a conservative character set:
no request can make vfd read, write or rename anything elsewhere, or print a forged line.
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from vfd.errors import ConfigError, RequestError, VfdError
from vfd.text import shown

SUFFIX = ".json"
MAX_CONFIG_BYTES = 256 * 1024
# Port ids (a config file's name without .json): safe in a path, a log line and a reply line. The
# length leaves room in NAME_MAX (255) for the suffixes and the temp names vfd adds.
PORT_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@+-]*")
MAX_PORT_ID_BYTES = 200
ERROR_SUFFIX = ".error"
MAX_ERROR_FILES = 64            # refused drop files kept in config_dir (the oldest go first)
BASELINES = ".counter-baselines"   # in the live dir; the leading dot and no .json keep it out of port ids


class StoreError(VfdError):
    """A file operation in vfd's directories failed (disk full, permissions, descriptors): a transient
    failure of the host, never a verdict on the config, so a drop file is not marked .error for it."""

    def __init__(self, op: str, path: str | os.PathLike, reason: str):
        self.op = op
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot {op} {path}: {reason}")

    @classmethod
    def of(cls, op: str, path: str | os.PathLike, exc: OSError) -> "StoreError":
        return cls(op, path, exc.strerror or str(exc))


def fsync_dir(path: str | os.PathLike) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, data: bytes, mode: int = 0o644, durable: bool = True,
                 uid: int | None = None) -> None:
    """Replace `path` with `data` all at once. `durable` adds the fsyncs that make the new content
    survive a power cut; without them readers still never see a torn file. `uid` owns the file
    from the moment it appears (the temp file is chowned before the rename). The temp file is
    removed on every failure, so a full disk leaves nothing behind."""
    directory, name = os.path.split(os.fspath(path))     # plain strings: pathlib costs more than the I/O here
    tmp = os.path.join(directory, f".{name}.tmp{os.urandom(8).hex()}")
    # O_EXCL|O_NOFOLLOW: never open what someone planted (a symlink, a FIFO); O_NONBLOCK: never wait
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, mode)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if uid is not None and uid != os.geteuid() == 0:   # a new file is the creator's already
                os.fchown(fd, uid, -1)
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    if durable:
        fsync_dir(directory or ".")


def remove_stale_temps(directory: Path) -> None:
    """Temp files of atomic_write left by a crash (kill -9 between write and rename)."""
    for p in directory.glob(".*.tmp*"):
        try:
            p.unlink()
        except OSError:
            pass


def check_port_id(port_id: str, spelt: str) -> None:
    """The one rule for port ids; `spelt` is how the request wrote the name (already escaped)."""
    if len(port_id.encode()) > MAX_PORT_ID_BYTES:
        raise RequestError(f"config name {spelt} is {len(port_id.encode())} bytes long; port names are at most "
                           f"{MAX_PORT_ID_BYTES} bytes (rule port_name)")
    if not PORT_ID_RE.fullmatch(port_id):
        raise RequestError(f"config name {spelt} is not a valid port name: it must start with a letter or digit "
                           f"and contain only letters, digits and _ . : @ + - (rule port_name)")


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
        self._live_prefix = os.path.join(str(self.live_dir), "")
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
            raise RequestError(f"filename {shown(name)} is not a valid file name")
        parent, tail = os.path.split(name)
        if tail and parent == str(base):       # what iplex sends: the directory spelt as vfd spells it
            base_name = tail
        elif "/" in name:
            p = Path(name)
            try:
                inside = os.path.samefile(p.parent, base)     # another spelling of it: 2 stat() calls
            except OSError:
                inside = False
            if not inside:
                raise RequestError(f"filename {shown(name)} is outside {base} (vfd only reads configs from there)")
            base_name = p.name
        else:
            base_name = name
        if base_name in (".", "..") or base_name.startswith("."):
            raise RequestError(f"filename {shown(name)} is not a valid config name")
        if not base_name.endswith(SUFFIX):
            base_name += SUFFIX
        port_id = base_name[: -len(SUFFIX)]
        check_port_id(port_id, shown(name))
        return base / base_name, port_id

    def live_path(self, port_id: str) -> Path:
        return Path(self._live_file(port_id))

    def _live_file(self, port_id: str) -> str:
        """The live file's name as a plain string, for the write every change makes (pathlib costs
        more than the write there)."""
        return f"{self._live_prefix}{port_id}{SUFFIX}"

    # ---- reading --------------------------------------------------------------------------
    @staticmethod
    def read(path: Path, port_id: str) -> ReadFile:
        """Read a regular file without following a symlink planted in vfd's directory.

        A file that is not a config (a symlink, a FIFO, empty, too large) is a ConfigError: the file
        itself is refused. A failure to read it (missing, EMFILE, EIO) is a StoreError."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            if exc.errno == errno.ELOOP:   # a symlink
                raise ConfigError(f"unable to read config file: {path}",
                                  ["is a symbolic link (vfd does not follow links in its directories)"]) from None
            if isinstance(exc, FileNotFoundError):
                raise RequestError(f"unable to read config file: {path}: {exc.strerror}") from None
            raise StoreError.of("read", path, exc) from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise ConfigError(f"unable to read config file: {path}", ["not a regular file"])
            # One read of the size fstat gave, plus one byte: a short read of a regular file is its
            # end; a file that grew meanwhile is read on to its end, within the size limit.
            data = os.read(fd, st.st_size + 1) if st.st_size <= MAX_CONFIG_BYTES else b""
            while len(data) > st.st_size and len(data) <= MAX_CONFIG_BYTES:
                b = os.read(fd, 65536)
                if not b:
                    break
                data += b
            if max(len(data), st.st_size) > MAX_CONFIG_BYTES:
                raise ConfigError(f"unable to read config file: {path}", [f"larger than {MAX_CONFIG_BYTES} bytes"])
        except OSError as exc:
            raise StoreError.of("read", path, exc) from None
        finally:
            os.close(fd)
        if not data.strip():
            raise ConfigError(f"unable to read config file: {path}", ["file is empty"])
        return ReadFile(path=path, port_id=port_id, data=data, owner_uid=st.st_uid)

    def live_files(self) -> list[Path]:
        if not self.live_dir.is_dir():
            return []
        return sorted(p for p in self.live_dir.iterdir() if p.name.endswith(SUFFIX) and not p.name.startswith("."))

    # ---- state changes (each raises StoreError, never a bare OSError) ------------------------
    def write_live(self, port_id: str, data: bytes, uid: int | None = None) -> None:
        """The live copy keeps the drop file's owner: callbacks run as that uid."""
        path = self._live_file(port_id)
        try:
            atomic_write(path, data, uid=uid)
        except OSError as exc:
            raise StoreError.of("write the live config", path, exc) from None

    def read_live(self, port_id: str) -> bytes | None:
        """The live file's current bytes, or None when there is none (for a rollback to restore)."""
        try:
            return self.read(self.live_path(port_id), port_id).data
        except VfdError:
            return None

    def consume(self, src: Path) -> None:
        """Remove an admitted drop file from config_dir (after its live copy is durable). The removal
        is not made durable: a drop file a power cut brings back names a port that is live already,
        and adding it again is refused as such (docs/admission.md)."""
        try:
            os.unlink(src)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise StoreError.of("remove the drop file", src, exc) from None

    def mark_error(self, src: Path) -> Path | None:
        """A drop file whose config was refused becomes <name>.json.error: the rename replaces an
        older one of the same port, and at most MAX_ERROR_FILES are kept (the oldest removed)."""
        if src.parent.resolve() != self.config_dir.resolve() or not src.exists():
            return None
        dest = src.with_name(src.name + ERROR_SUFFIX)
        try:
            os.replace(src, dest)
            os.utime(dest, follow_symlinks=False)     # its age is when it was refused
            errors = sorted(self.config_dir.glob(f"*{SUFFIX}{ERROR_SUFFIX}"),
                            key=lambda p: p.lstat().st_mtime_ns)
            for old in errors[:max(0, len(errors) - MAX_ERROR_FILES)]:
                old.unlink()
        except OSError as exc:
            raise StoreError.of("mark refused", src, exc) from None
        return dest

    def remove_live(self, port_id: str) -> None:
        path = self.live_path(port_id)
        try:
            if self.keep_deleted:
                os.replace(path, self.config_dir / f"{path.name}-")
                fsync_dir(self.config_dir)
            else:
                os.unlink(path)
            fsync_dir(self.live_dir)
        except OSError as exc:
            raise StoreError.of("remove the live config", path, exc) from None

    def discard_live(self, port_id: str) -> None:
        """Undo of a live file just written by an add: gone, whatever `delete_keep` says."""
        path = self.live_path(port_id)
        try:
            os.unlink(path)
            fsync_dir(self.live_dir)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise StoreError.of("remove the live config", path, exc) from None

    def quarantine_live(self, path: Path) -> Path:
        """A live file that no longer admits at start-up is moved out to config_dir as <name>-."""
        dest = self.config_dir / f"{path.name}-"
        try:
            os.replace(path, dest)
            fsync_dir(self.live_dir)
        except OSError as exc:
            raise StoreError.of("quarantine", path, exc) from None
        return dest

    # ---- counter baselines (clear_stats survives a restart) ---------------------------------
    def load_baselines(self) -> dict:
        """{pf_id: {"pf": {counter: n}, "vfs": {"3": {counter: n}}}}; {} when none or unreadable."""
        path = self.live_dir / BASELINES
        try:
            data = json.loads(self.read(path, BASELINES).data)
        except (VfdError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def save_baselines(self, data: dict) -> None:
        path = self.live_dir / BASELINES
        try:
            atomic_write(path, (json.dumps(data, sort_keys=True) + "\n").encode(), mode=0o644)
        except OSError as exc:
            raise StoreError.of("write the counter baselines", path, exc) from None
