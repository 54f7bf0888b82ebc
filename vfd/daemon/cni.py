"""vfd's CNI socket: CNI commands executed inside the daemon, for the static front end `vfd-cni`.

Why: a runtime starts a CNI plugin process per command, and a Python plugin's start-up alone costs
more than Debian's host-device plugin's whole ADD+DEL (docs/performance.md). So the plugin on the
node is a small static binary (tools/cni-frontend/vfd-cni.c) that hands its environment and stdin
to this socket and prints what comes back; the commands (vfd/integrations/cni/main.py) run here.

Rules: the socket is mode 0600 and every peer must be uid 0 by SO_PEERCRED (a request makes vfd
exec IPAM plugins from CNI_PATH and enter network namespaces); others get a refusal (code 107) and
a log line. One request per connection, framed by vfd/integrations/cni/wire.py; a malformed one
gets a CNI error, never a crash. The loop only reads, writes and dispatches: each command runs in
a thread of its own (the command itself asks the daemon's add/delete/status over the daemon's own
socket, which this loop serves). A command still running after REQUEST_DEADLINE is answered with
code 11 and left to finish; at stop, running commands get DRAIN seconds, then vfd exits anyway
(the threads are daemon threads; a DEL undoes what an interrupted ADD recorded).
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import socket
import struct
import threading
import time

from vfd.daemon.rundir import RunDirError, bind_unix_socket
from vfd.integrations.cni import wire
from vfd.integrations.cni.errors import INTERNAL_ERROR, INVALID_ENV, NOT_ROOT, TRY_AGAIN_LATER

log = logging.getLogger("vfd.cni")

READ_DEADLINE = 5.0         # the whole request must arrive within this after the connection
REPLY_DEADLINE = 5.0        # a front end that does not read its reply within this is dropped
REQUEST_DEADLINE = 120.0    # a command still running after this is answered with code 11
DRAIN = 10.0                # at stop: how long running commands get before vfd exits anyway
MAX_CONNS = 32              # connections (and so command threads) at once; beyond: code 11
_SEQ = itertools.count(1)


def error_reply(code: int, msg: str) -> bytes:
    """A reply carrying a CNI error result (exit 1); cniVersion 1.0.0, the request being unread."""
    return wire.encode_reply(1, (json.dumps({"cniVersion": "1.0.0", "code": code, "msg": msg}) + "\n").encode(), b"")


class _Conn:
    def __init__(self, sock: socket.socket, pid: int, uid: int):
        self.sock, self.pid, self.uid = sock, pid, uid
        self.fd = sock.fileno()
        self.buf = b""
        self.need = 0               # payload bytes announced by the header (0: header not read yet)
        self.out = b""
        self.state = "reading"      # reading -> running -> writing -> closed
        self.timer = None
        self.what = "request"       # "ADD <container>/<ifname>" once decoded, for the log
        self.started = 0.0
        self.answered = False       # a reply (possibly "still running") was queued


class CniServer:
    def __init__(self, path: str, execute=None):
        self.path = path
        self._execute = execute
        self.sock: socket.socket | None = None
        self.loop = None
        self.conns: dict[int, _Conn] = {}
        self.running = 0            # command threads not yet finished
        self.ident: tuple[int, int] | None = None

    # ---- the socket ---------------------------------------------------------------------------
    def bind(self) -> None:
        """Create the socket (mode 0600, not yet listening): at start-up, before any NIC is touched.
        A stale socket is replaced; one that answers (another vfd) or anything else is refused."""
        where = f"cni_socket {self.path}"
        d, name = os.path.split(self.path)
        try:
            os.makedirs(d, mode=0o755, exist_ok=True)
            dirfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise RunDirError(f"{where}: cannot use directory {d}: {exc.strerror}") from None
        try:
            sock = bind_unix_socket(dirfd, name, where, "cni_socket", 0o177, refuse_live=True)   # born 0600
            st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
            self.ident = (st.st_dev, st.st_ino)
        finally:
            os.close(dirfd)
        self.sock = sock

    def open(self, loop) -> None:
        self.loop = loop
        if self.sock is None:
            self.bind()
        if self._execute is None:
            from vfd.integrations.cni.main import execute   # the commands: loaded once, here
            self._execute = execute
        self.sock.listen(64)
        loop.add_reader(self.sock.fileno(), self._accept)
        log.info("CNI requests on %s", self.path)

    def _stop_listening(self) -> None:
        if self.sock is None:
            return
        if self.loop is not None:
            self.loop.remove_reader(self.sock.fileno())
        self.sock.close()
        self.sock = None
        try:
            st = os.stat(self.path, follow_symlinks=False)
            if (st.st_dev, st.st_ino) == self.ident:
                os.unlink(self.path)
        except OSError:
            pass

    async def drain(self, timeout: float = DRAIN) -> None:
        """At stop: no new requests; running commands get `timeout` seconds to finish (the loop still
        serves the daemon requests they make); those still running are answered with code 11."""
        import asyncio
        self._stop_listening()
        deadline = time.monotonic() + timeout
        while self.running and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for c in list(self.conns.values()):
            if c.state == "running" and not c.answered:
                log.warning("CNI %s (pid %d) still running at stop: answered with 'try again later'", c.what, c.pid)
                self._answer(c, error_reply(TRY_AGAIN_LATER, f"vfd stopped while {c.what} was running; "
                                                             f"try again when vfd is back"))
        end = time.monotonic() + 1.0                    # the replies just queued get their chance
        while any(c.state == "writing" for c in self.conns.values()) and time.monotonic() < end:
            await asyncio.sleep(0.02)

    def close(self) -> None:
        self._stop_listening()
        for c in list(self.conns.values()):
            self._close(c)

    # ---- connections --------------------------------------------------------------------------
    def _accept(self) -> None:
        while self.sock is not None:
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("CNI socket accept failed: %s", exc.strerror)
                return
            pid, uid, _gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
            conn.setblocking(False)
            if uid != 0:
                log.warning("CNI request from uid %d (pid %d) refused: vfd's CNI socket serves root only", uid, pid)
                self._send_and_close(conn, error_reply(NOT_ROOT, f"vfd serves CNI requests from root only (this "
                                                                 f"one came from uid {uid}); run vfd-cni as root"))
                continue
            if len(self.conns) >= MAX_CONNS:
                log.warning("CNI request from pid %d refused: %d requests already open", pid, len(self.conns))
                self._send_and_close(conn, error_reply(TRY_AGAIN_LATER, f"vfd is serving {len(self.conns)} CNI "
                                                                        "requests already; try again later"))
                continue
            c = _Conn(conn, pid, uid)
            self.conns[c.fd] = c
            self.loop.add_reader(c.fd, self._readable, c)
            c.timer = self.loop.call_later(READ_DEADLINE, self._read_timeout, c)

    @staticmethod
    def _send_and_close(conn: socket.socket, data: bytes) -> None:
        """A short refusal (far below the socket buffer): sent at once, best effort."""
        try:
            conn.send(data)
        except OSError:
            pass
        conn.close()

    def _readable(self, c: _Conn) -> None:
        try:
            chunk = c.sock.recv(1 << 16)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        if not chunk:
            if c.buf:
                log.warning("CNI request from pid %d cut short after %d bytes", c.pid, len(c.buf))
                self._refuse(c, wire.WireError(INVALID_ENV, f"truncated request: the connection closed after "
                                                            f"{len(c.buf)} bytes"))
            else:
                self._close(c)
            return
        c.buf += chunk
        try:
            if not c.need and len(c.buf) >= wire.HEADER.size:
                c.need = wire.check_header(c.buf[:wire.HEADER.size]) + wire.HEADER.size
            if c.need and len(c.buf) > c.need:
                raise wire.WireError(INVALID_ENV, f"{len(c.buf) - c.need} bytes after the request's end")
            if c.need and len(c.buf) == c.need:
                env, stdin = wire.decode_request(c.buf[wire.HEADER.size:])
            else:
                return
        except wire.WireError as exc:
            log.warning("malformed CNI request from pid %d: %s", c.pid, exc.msg)
            self._refuse(c, exc)
            return
        self._start(c, env, stdin)

    def _read_timeout(self, c: _Conn) -> None:
        c.timer = None
        if c.state == "reading":
            log.warning("CNI request from pid %d incomplete after %.0fs (%d bytes): dropped", c.pid, READ_DEADLINE,
                        len(c.buf))
            self._refuse(c, wire.WireError(INVALID_ENV, f"incomplete request: {len(c.buf)} bytes in "
                                                        f"{READ_DEADLINE:g}s"))

    def _refuse(self, c: _Conn, exc: wire.WireError) -> None:
        self.loop.remove_reader(c.fd)
        c.state = "running"                 # so _answer() takes it
        self._answer(c, error_reply(exc.code, exc.msg))

    # ---- commands -----------------------------------------------------------------------------
    def _start(self, c: _Conn, env: dict, stdin: bytes) -> None:
        self.loop.remove_reader(c.fd)
        if c.timer is not None:
            c.timer.cancel()
        c.state = "running"
        c.started = time.monotonic()
        c.what = f"{env.get('CNI_COMMAND', '?')} {env.get('CNI_CONTAINERID', '')}/{env.get('CNI_IFNAME', '')}"
        c.timer = self.loop.call_later(REQUEST_DEADLINE, self._overdue, c)
        self.running += 1
        t = threading.Thread(target=self._work, args=(c, env, stdin), name=f"vfd-cni-{next(_SEQ)}", daemon=True)
        t.start()

    def _work(self, c: _Conn, env: dict, stdin: bytes) -> None:
        """In the command's own thread: never touches the loop's state except through call_soon_threadsafe."""
        own = os.stat("/proc/thread-self/ns/net").st_ino
        try:
            rc, out, err = self._execute(env, stdin)
            if len(out) > wire.MAX_STDOUT:
                raise ValueError(f"result of {len(out)} bytes is over the limit of {wire.MAX_STDOUT}")
            reply = wire.encode_reply(rc, out, err[-wire.MAX_STDERR:])
        except BaseException as exc:  # noqa: BLE001 - one request fails, never the daemon
            log.exception("CNI %s: internal error", c.what)
            reply = error_reply(INTERNAL_ERROR, f"internal error in vfd while serving {c.what}: {exc!r:.300} "
                                                "(vfd's log has the details)")
            rc = 1
        if os.stat("/proc/thread-self/ns/net").st_ino != own:       # never expected: setns back failed
            log.critical("CNI %s: its thread ended in another network namespace", c.what)
        try:
            self.loop.call_soon_threadsafe(self._done, c, rc, reply)
        except RuntimeError:                # the loop is closed: vfd has stopped
            pass

    def _done(self, c: _Conn, rc: int, reply: bytes) -> None:
        self.running -= 1
        took = time.monotonic() - c.started
        if c.answered:
            log.warning("CNI %s finished after %.1fs (exit %d), after its front end was told to try again",
                        c.what, took, rc)
            return
        log.info("CNI %s from pid %d: exit %d in %.3fs", c.what, c.pid, rc, took)
        self._answer(c, reply)

    def _overdue(self, c: _Conn) -> None:
        c.timer = None
        if c.state == "running" and not c.answered:
            log.warning("CNI %s still running after %.0fs: its front end is told to try again later", c.what,
                        REQUEST_DEADLINE)
            self._answer(c, error_reply(TRY_AGAIN_LATER, f"{c.what} did not finish within {REQUEST_DEADLINE:g}s in "
                                                         f"vfd (it goes on there; a DEL waits for it)"))

    # ---- replies ------------------------------------------------------------------------------
    def _answer(self, c: _Conn, reply: bytes) -> None:
        if c.state == "closed":
            return
        c.answered = True
        c.state = "writing"
        c.out = reply
        if c.timer is not None:
            c.timer.cancel()
        c.timer = self.loop.call_later(REPLY_DEADLINE, self._write_timeout, c)
        self._write(c)

    def _write(self, c: _Conn) -> None:
        while c.out:
            try:
                c.out = c.out[c.sock.send(c.out):]
            except (BlockingIOError, InterruptedError):
                self.loop.add_writer(c.fd, self._write, c)
                return
            except OSError:
                break
        self._close(c)

    def _write_timeout(self, c: _Conn) -> None:
        c.timer = None
        if c.state == "writing":
            log.warning("CNI reply to pid %d not read within %.0fs: dropped", c.pid, REPLY_DEADLINE)
            self._close(c)

    def _close(self, c: _Conn) -> None:
        if c.state == "closed":
            return
        if c.state == "reading":
            self.loop.remove_reader(c.fd)
        if c.state == "writing":
            self.loop.remove_writer(c.fd)
        if c.timer is not None:
            c.timer.cancel()
            c.timer = None
        keep = c.state == "running"                 # its thread still reports to _done
        c.state = "closed"
        c.answered = c.answered or keep
        self.conns.pop(c.fd, None)
        c.sock.close()
