"""The run directory: where the request FIFO lives and where clients create their reply FIFOs.

vfd opens it once (O_DIRECTORY|O_NOFOLLOW) and does everything else relative to that descriptor:
a symlink swapped in later, for the directory or for a reply FIFO, is never followed. Recommended
mode 1730 root:fifo_group: members of fifo_group create their reply FIFOs, cannot list anyone's
(so cannot learn a reply FIFO's name) and cannot remove or rename anyone else's (sticky).

Requester identity (docs/operations.md, Security): only root can create a FIFO owned by someone
else, so a reply FIFO's owner says who asked -- provided nobody could have named a reply FIFO of
another user. That holds only when the directory is unlistable by group and others, sticky, owned
by vfd's user, and the FIFO's name carries >= 128 random bits (iplex's `<fifo>_IPLEX.<pid>.<random>`).
Otherwise the requester is unidentified (None), which vfd/policy/authz.py allows only to read.
"""

from __future__ import annotations

import grp
import logging
import os
import re
import socket
import stat
import time

from vfd.errors import VfdError

log = logging.getLogger("vfd.server")

RUN_DIR_MODE = 0o1730
FIFO_MODE = 0o620            # owner and fifo_group may write requests; nobody may read them but vfd
STALE_AGE = 300.0            # a reply FIFO of a dead pid is removed once it is this old (seconds)
_RANDOM = r"[A-Za-z0-9_-]{22,128}"   # >= 22 base64url characters: >= 128 bits


class RunDirError(VfdError):
    """The request FIFO's path or directory cannot be used; the message names the path and why."""


def _gid_of(group: str | None) -> int:
    if not group:
        return -1
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise RunDirError(f"fifo_group {group!r} is not a group on this host") from None


class RunDir:
    """The request FIFO's directory, held open; reply FIFOs are opened relative to it."""

    def __init__(self, fifo_path: str, group: str | None = None, socket_path: str | None = None):
        self.fifo_path = os.path.abspath(fifo_path)
        self.dir_path, self.fifo_name = os.path.split(self.fifo_path)
        self.socket_path = os.path.abspath(socket_path) if socket_path else None
        self.group = group
        self.dirfd = -1
        self.created = False
        self.trusted = False
        self._reply_re = re.compile(re.escape(self.fifo_name) + r"_IPLEX\.\d+\.(?:[^/]*\.)?" + _RANDOM)
        self._stale_re = re.compile(re.escape(self.fifo_name) + r"_IPLEX\.(\d+)(?:\.[^/]*)?")

    # ---- start-up: before any NIC is touched ------------------------------------------------
    def prepare(self) -> None:
        """Open (or create) the directory and make sure the FIFO is vfd's: refuse a regular file,
        directory, symlink or anything else at the `fifo` path, never replace it. One RunDirError
        naming the path and the reason for every failure."""
        gid = _gid_of(self.group)
        if not self.fifo_name or self.fifo_name in (".", ".."):
            raise RunDirError(f"fifo {self.fifo_path}: not a file name")
        if self.socket_path and os.path.dirname(self.socket_path) != self.dir_path:
            raise RunDirError(f"socket {self.socket_path}: must be in the fifo's directory {self.dir_path}")
        self._open_dir(gid)
        self._check_dir()
        fd = self.open_fifo(gid)
        os.close(fd)

    def bind_socket(self) -> socket.socket | None:
        """Bind the Unix socket (mode 0660, owner vfd's user, group fifo_group), not yet listening:
        until the daemon is ready a client is refused at once. A stale socket there is replaced;
        anything else is refused and left alone."""
        if not self.socket_path:
            return None
        name = os.path.basename(self.socket_path)
        sock = bind_unix_socket(self.dirfd, name, f"socket {self.socket_path}", "socket", 0o117)
        try:
            os.chown(name, 0 if os.geteuid() == 0 else -1, _gid_of(self.group), dir_fd=self.dirfd,
                     follow_symlinks=False)
        except OSError as exc:
            sock.close()
            raise RunDirError(f"socket {self.socket_path}: cannot set its group: {exc.strerror}") from None
        return sock

    def remove_socket(self) -> None:
        if self.socket_path and self.dirfd >= 0:
            name = os.path.basename(self.socket_path)
            try:
                if stat.S_ISSOCK(os.stat(name, dir_fd=self.dirfd, follow_symlinks=False).st_mode):
                    os.unlink(name, dir_fd=self.dirfd)
            except OSError:
                pass

    def _open_dir(self, gid: int) -> None:
        path = self.dir_path
        real = os.path.realpath(path)
        try:
            if not os.path.lexists(real):
                parent = os.path.dirname(real)
                os.makedirs(parent, exist_ok=True)
                os.mkdir(real, 0o700)
                self.created = True
            self.dirfd = os.open(real, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except (NotADirectoryError, FileExistsError):
            raise RunDirError(f"fifo {self.fifo_path}: {_not_a_dir(real)} is not a directory") from None
        except OSError as exc:
            raise RunDirError(f"fifo {self.fifo_path}: cannot use directory {path}: {exc.strerror}") from None
        if self.created:
            os.fchown(self.dirfd, -1 if os.geteuid() != 0 else 0, gid)
            os.fchmod(self.dirfd, RUN_DIR_MODE)
            log.info("created run directory %s (mode %o)", path, RUN_DIR_MODE)

    def _check_dir(self) -> None:
        st = os.fstat(self.dirfd)
        mode = stat.S_IMODE(st.st_mode)
        sticky = bool(mode & stat.S_ISVTX)
        listable = bool(mode & (stat.S_IRGRP | stat.S_IROTH))
        own = st.st_uid == os.geteuid()
        if not sticky:
            log.warning("run directory %s (mode %04o) is not sticky: clients can remove or rename each other's "
                        "reply FIFOs; recommended: chmod 1730, owner root, group fifo_group", self.dir_path, mode)
        self.trusted = sticky and own and not listable
        if not self.trusted:
            log.warning("run directory %s (mode %04o, uid %d) is %s: requests over the FIFO are treated as "
                        "unidentified (read-only); use mode 1730 owned by vfd's user", self.dir_path, mode,
                        st.st_uid, "listable" if listable else "not vfd's" if not own else "not sticky")

    def _lstat(self, name: str, what: str) -> os.stat_result | None:
        """What `name` in the run directory is, never following a symlink; None when absent."""
        try:
            return os.stat(name, dir_fd=self.dirfd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise RunDirError(f"{what}: {exc.strerror}") from None

    def open_fifo(self, gid: int | None = None) -> int:
        """Create the request FIFO if missing; return a read descriptor of it, owner and mode fixed
        through that descriptor. A FIFO someone else made is replaced (it may be held open by
        them); anything that is not a FIFO is refused and left alone."""
        gid = _gid_of(self.group) if gid is None else gid
        name = self.fifo_name
        for _ in range(3):
            st = self._lstat(name, f"fifo {self.fifo_path}")
            if st is not None and not stat.S_ISFIFO(st.st_mode):
                raise RunDirError(f"fifo {self.fifo_path}: exists and is {_kind(st.st_mode)}, not a FIFO; vfd never "
                                  f"replaces it: remove it or set another `fifo` in the main config")
            if st is not None and st.st_uid != os.geteuid():
                log.warning("fifo %s was made by uid %d: replaced", self.fifo_path, st.st_uid)
                os.unlink(name, dir_fd=self.dirfd)
                st = None
            if st is None:
                try:
                    os.mkfifo(name, 0o600, dir_fd=self.dirfd)
                except FileExistsError:
                    continue
                except OSError as exc:
                    raise RunDirError(f"fifo {self.fifo_path}: cannot create a FIFO there: {exc.strerror}") from None
            try:
                fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=self.dirfd)
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise RunDirError(f"fifo {self.fifo_path}: cannot open: {exc.strerror}") from None
            fst = os.fstat(fd)
            if not stat.S_ISFIFO(fst.st_mode) or fst.st_uid != os.geteuid():
                os.close(fd)
                continue                # swapped under us: look again
            try:
                os.fchown(fd, 0 if os.geteuid() == 0 else -1, gid)
                os.fchmod(fd, FIFO_MODE)
            except OSError as exc:
                os.close(fd)
                raise RunDirError(f"fifo {self.fifo_path}: cannot set owner/mode: {exc.strerror}") from None
            return fd
        raise RunDirError(f"fifo {self.fifo_path}: keeps changing under vfd; refusing to use it")

    def close(self) -> None:
        if self.dirfd >= 0:
            os.close(self.dirfd)
            self.dirfd = -1

    # ---- reply FIFOs ------------------------------------------------------------------------
    def reply_name(self, r_fifo: str) -> str | None:
        """The name, in this directory, of the reply FIFO a request names; None if it names
        anything elsewhere (checked lexically: the directory as configured or as resolved)."""
        if "\0" in r_fifo or len(r_fifo) > 1024:
            return None
        path = os.path.normpath(os.path.join(self.dir_path, r_fifo))
        parent, name = os.path.split(path)
        if parent != self.dir_path and parent != os.path.realpath(self.dir_path) \
                and os.path.realpath(parent) != os.path.realpath(self.dir_path):
            return None
        if name in ("", ".", "..") or name == self.fifo_name:
            return None
        return name

    def requester(self, name: str) -> int | None:
        """Who asked: the owner of the reply FIFO `name`, when that can be trusted (module doc)."""
        if not self.trusted or not self._reply_re.fullmatch(name):
            return None
        try:
            st = os.stat(name, dir_fd=self.dirfd, follow_symlinks=False)
        except OSError:
            return None
        return st.st_uid if stat.S_ISFIFO(st.st_mode) else None

    def open_reply(self, name: str) -> tuple[int, os.stat_result]:
        """A write descriptor of reply FIFO `name`: never through a symlink, never anything but a
        FIFO, never blocking (OSError ENXIO when nobody reads it)."""
        st = os.stat(name, dir_fd=self.dirfd, follow_symlinks=False)
        if not stat.S_ISFIFO(st.st_mode):
            raise OSError(0, f"is {_kind(st.st_mode)}, not a FIFO")
        fd = os.open(name, os.O_WRONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=self.dirfd)
        fst = os.fstat(fd)
        if not stat.S_ISFIFO(fst.st_mode):
            os.close(fd)
            raise OSError(0, "is not a FIFO")
        return fd, fst

    # ---- housekeeping -----------------------------------------------------------------------
    def remove_stale(self, now: float | None = None) -> int:
        """Remove reply FIFOs `<fifo>_IPLEX.<pid>...` whose pid is gone and that are older than
        STALE_AGE (a client in another pid namespace is not taken for dead while it waits).
        Only FIFOs, only that pattern, never through a symlink."""
        now = time.time() if now is None else now
        removed = 0
        try:
            names = os.listdir(self.dirfd)
        except OSError as exc:
            log.warning("cannot list %s for stale reply FIFOs: %s", self.dir_path, exc.strerror)
            return 0
        for name in names:
            m = self._stale_re.fullmatch(name)
            if not m or _alive(int(m.group(1))):
                continue
            try:
                st = os.stat(name, dir_fd=self.dirfd, follow_symlinks=False)
                if stat.S_ISFIFO(st.st_mode) and now - st.st_mtime >= STALE_AGE:
                    os.unlink(name, dir_fd=self.dirfd)
                    removed += 1
            except OSError:
                continue
        if removed:
            log.info("removed %d stale reply FIFOs from %s", removed, self.dir_path)
        return removed


def bind_unix_socket(dirfd: int, name: str, where: str, key: str, umask: int,
                     refuse_live: bool = False) -> socket.socket:
    """A non-blocking Unix stream socket bound at `name` in the directory open at `dirfd` (any path
    length: bound through /proc/self/fd), born with the mode `umask` leaves, so no other user can
    connect in between. A stale socket there is replaced; anything else, or with `refuse_live` a
    socket some process answers on, is a RunDirError naming `where` and the main-config `key`."""
    try:
        st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise RunDirError(f"{where}: {exc.strerror}") from None
    at = f"/proc/self/fd/{dirfd}/{name}"
    if st is not None:
        if not stat.S_ISSOCK(st.st_mode):
            raise RunDirError(f"{where}: exists and is {_kind(st.st_mode)}, not a socket; vfd never replaces it: "
                              f"remove it or set another `{key}` in the main config")
        if refuse_live:
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
            probe.settimeout(1.0)
            try:
                probe.connect(at)
            except OSError:
                pass                                    # nobody listens: stale, replaced
            else:
                raise RunDirError(f"{where}: another process is serving it (another vfd?); vfd does not take "
                                  f"it over: stop that one or set another `{key}`")
            finally:
                probe.close()
        os.unlink(name, dir_fd=dirfd)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    old = os.umask(umask)
    try:
        sock.bind(at)
    except OSError as exc:
        sock.close()
        raise RunDirError(f"{where}: cannot create: {exc.strerror}") from None
    finally:
        os.umask(old)
    sock.setblocking(False)
    return sock


def _not_a_dir(path: str) -> str:
    """The first component of `path` that exists and is not a directory (for the error)."""
    parts = path.split("/")
    for n in range(2, len(parts) + 1):
        p = "/".join(parts[:n]) or "/"
        if os.path.lexists(p) and not os.path.isdir(p):
            return p
    return path


def _alive(pid: int) -> bool:
    if pid <= 0 or pid > 4194304:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kind(mode: int) -> str:
    for test, what in ((stat.S_ISREG, "a regular file"), (stat.S_ISDIR, "a directory"), (stat.S_ISLNK, "a symlink"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device")):
        if test(mode):
            return what
    return "not a FIFO"


def raise_fd_limit() -> None:
    """Soft RLIMIT_NOFILE up to the hard limit: systemd's default soft limit (1024) is low for a
    daemon that holds PFs, reply FIFOs and, under DPDK, many more descriptors."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open-files limit from %d to %d: %s", soft, hard, exc)
