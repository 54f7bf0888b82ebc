"""The request FIFO: read requests as they arrive (asyncio, no polling), answer on each client's FIFO.

Guarantees: whatever a request contains, only that request fails (vfd/protocol.py frames the
stream: bounded size and nesting, invalid UTF-8 refused, an unfinished request dropped after
STALE_AFTER seconds without new bytes); replies go only to FIFOs in the run directory, opened
through its descriptor without following symlinks (vfd/daemon/rundir.py); a client that never
reads its reply cannot block the daemon or exhaust its descriptors (pending replies are bounded
per requester and in total, the oldest dropped); everything logged that came from a request is
escaped. A `watch` request on the socket is answered, then its connection is handed to the watch
hub (vfd/daemon/watch.py), which streams events on it.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import socket
import stat
import struct
import time
from dataclasses import dataclass
from typing import Callable

from vfd.daemon.rundir import RunDir
from vfd.protocol import (ACTIONS, MAX_REQUEST_BYTES, Framed, drop_unfinished, encode_response, frame, printable,
                          printable_bytes)

log = logging.getLogger("vfd.server")

REPLY_DEADLINE = 5.0            # seconds a slow reader gets before its reply is dropped
STALE_AFTER = 1.0               # an unfinished request with no new bytes for this long is dropped
STALE_FIFO_SWEEP = 60.0         # how often stale reply FIFOs of dead clients are removed
MAX_PENDING_PER_UID = 16        # unread replies held per reply-FIFO owner ...
MAX_PENDING_TOTAL = 128         # ... and in total (each holds a descriptor); the oldest is dropped
MAX_PENDING_BYTES = 4 << 20     # bytes queued for one reply FIFO
MAX_CONNS = 128                 # open socket connections; beyond, the uid holding most loses its oldest
_RFIFO_RE = re.compile(rb'"r_fifo"\s*:\s*"([^"\\]{1,512})"')

def _is_watch(req: dict) -> bool:
    action = req.get("action")
    return isinstance(action, str) and action.lower() == "watch"


# handler(action, params, requester_uid) -> (ok, msg lines, data or None); see vfd/policy/authz.py
Handler = Callable[[str, dict, "int | None"], tuple[bool, list[str], "dict | None"]]


@dataclass
class _Pending:
    data: bytes
    deadline: float
    uid: int
    key: tuple[int, int]        # (st_dev, st_ino) of the reply FIFO: replies to one FIFO queue up, never interleave


@dataclass
class _Conn:
    sock: socket.socket
    uid: int
    last: float
    buf: bytes = b""
    out: bytes = b""
    deadline: float = 0.0
    writing: bool = False
    reading: bool = False       # a reader is registered with the loop (the request was not all there at accept)
    timer: object = None


class RequestServer:
    def __init__(self, fifo_path: str, handler: Handler, group: str | None = None, loop=None,
                 socket_path: str | None = None):
        self.loop = loop
        self.rundir = RunDir(fifo_path, group, socket_path)
        self.sock: socket.socket | None = None
        self.conns: dict[int, _Conn] = {}
        self.path = self.rundir.fifo_path
        self.handler = handler
        self.buf = b""
        self.last_bytes = 0.0
        self._stale_timer = None
        self._sweep_timer = None
        self.rfd = self.wfd = -1
        self.pending: dict[int, _Pending] = {}       # insertion order is age
        self.served = 0
        self.watch_hub = None       # vfd/daemon/watch.py WatchHub: `watch` connections are handed to it

    # ---- FIFO lifecycle ---------------------------------------------------------------------
    def prepare(self) -> None:
        """Check and create the run directory and the FIFO: at start-up, before any NIC is touched."""
        self.rundir.prepare()
        self.sock = self.rundir.bind_socket()

    def open(self, loop=None) -> None:
        self.loop = loop or self.loop
        if self.rundir.dirfd < 0:
            self.prepare()
        self.rfd = self.rundir.open_fifo()
        # a writer of our own: the read end never sees EOF when clients close
        self.wfd = os.open(self.rundir.fifo_name, os.O_WRONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC,
                           dir_fd=self.rundir.dirfd)
        a, b = os.fstat(self.rfd), os.fstat(self.wfd)
        if (a.st_dev, a.st_ino) != (b.st_dev, b.st_ino) or not stat.S_ISFIFO(b.st_mode):
            raise OSError(errno.EAGAIN, f"fifo {self.path} changed while it was opened")
        self.loop.add_reader(self.rfd, self._readable)
        if self.sock is not None:
            self.sock.listen(64)
            self.loop.add_reader(self.sock.fileno(), self._accept)
            log.info("listening on %s", self.rundir.socket_path)
        self._sweep()
        log.info("listening on %s", self.path)

    def close(self) -> None:
        for t in (self._stale_timer, self._sweep_timer):
            if t is not None:
                t.cancel()
        if self.rfd >= 0:
            self.loop.remove_reader(self.rfd)
            os.close(self.rfd)
            os.close(self.wfd)
            self.rfd = self.wfd = -1
        for fd in list(self.pending):
            self._drop_writer(fd)
        for c in list(self.conns.values()):
            self._conn_close(c)
        if self.sock is not None:
            if self.loop is not None:
                self.loop.remove_reader(self.sock.fileno())
            self.sock.close()
            self.sock = None
            self.rundir.remove_socket()
        self.rundir.close()

    def _sweep(self) -> None:
        self.rundir.remove_stale()
        self._sweep_timer = self.loop.call_later(STALE_FIFO_SWEEP, self._sweep)

    # ---- reading and framing ----------------------------------------------------------------
    def _readable(self) -> None:
        got = False
        while True:
            try:
                chunk = os.read(self.rfd, 65536)
            except (BlockingIOError, InterruptedError):
                break
            if not chunk:
                break
            got = True
            self.buf += chunk
            if len(chunk) < 65536:
                break
        if got:
            self.last_bytes = time.monotonic()
        self._drain()

    def _drain(self) -> None:
        try:
            items, self.buf = frame(self.buf)
        except Exception:  # noqa: BLE001 - a framing bug must not stop the server: drop what we have
            log.exception("request framing failed: %d bytes dropped", len(self.buf))
            items, self.buf = [], b""
        for item in items:
            try:
                if item.request is not None:
                    self._request(item.request)
                else:
                    self._garbage(item)
            except Exception:  # noqa: BLE001 - only this request fails
                log.exception("internal error serving a request (%d bytes): %s", len(item.raw),
                              printable_bytes(item.raw))
        if self.buf and self.loop is not None and self._stale_timer is None:
            self._stale_timer = self.loop.call_later(STALE_AFTER, self._stale)

    def _stale(self) -> None:
        """An unfinished request that got no new bytes for STALE_AFTER seconds is dropped."""
        self._stale_timer = None
        if not self.buf:
            return
        idle = time.monotonic() - self.last_bytes
        if idle < STALE_AFTER:
            self._stale_timer = self.loop.call_later(STALE_AFTER - idle, self._stale)
            return
        item, self.buf = drop_unfinished(self.buf)
        self._garbage(item)
        self._drain()

    def _garbage(self, item: Framed) -> None:
        data = item.raw
        m = _RFIFO_RE.search(data[:MAX_REQUEST_BYTES])
        log.warning("malformed request (%d bytes, %s)%s: %s", len(data), item.error,
                    "" if m else "; no reply fifo: dropped", printable_bytes(data))
        if m:
            name = self.rundir.reply_name(m.group(1).decode("utf-8", "replace"))
            if name is not None:
                self._reply(name, "not-supplied", False,
                            [f"malformed request ({len(data)} bytes): {item.error}; a request is one JSON object of "
                             f"at most {MAX_REQUEST_BYTES} bytes"])

    # ---- dispatch ---------------------------------------------------------------------------
    def _request(self, req: dict) -> None:
        params = req.get("params")
        r_fifo = params.get("r_fifo") if isinstance(params, dict) else None
        rid = params.get("vfd_rid", "not-supplied") if isinstance(params, dict) else "not-supplied"
        rid = rid if isinstance(rid, str) and len(rid) <= 256 else "not-supplied"
        if not isinstance(r_fifo, str):
            log.warning("request without a reply fifo dropped: %.200s", json.dumps(req))
            return
        name = self.rundir.reply_name(r_fifo)
        if name is None:
            log.warning("reply fifo %s is not in %s: request dropped", printable(r_fifo, 200), self.rundir.dir_path)
            return
        if _is_watch(req):
            self._reply(name, rid, False, [f"watch is served over the daemon's socket only ("
                                           f"{self.rundir.socket_path or 'none configured: main config socket'})"])
            return
        self._reply(name, rid, *self._answer(req, params, self.rundir.requester(name)))

    def _answer(self, req: dict, params: dict, uid: int | None) -> tuple[bool, list[str], dict | None]:
        action = req.get("action")
        if not isinstance(action, str) or action.lower() not in ACTIONS:
            return False, [f"unrecognised request: action {json.dumps(action)[:80]} is not one "
                           f"of {', '.join(ACTIONS)}"], None
        try:
            ok, lines, data = self.handler(action.lower(), params, uid)
        except Exception as exc:  # noqa: BLE001 - one bad request must not end the daemon
            log.exception("internal error serving %s", action)
            ok, lines, data = False, [f"internal error while serving {action}: {printable(exc, 300)}"], None
        self.served += 1
        return ok, lines, data

    # ---- the Unix socket: one request per connection, the peer's uid from the kernel -------------
    def _accept(self) -> None:
        """One connection per wake-up (the listening socket is level-triggered: the loop calls again
        while more wait). A client sends its request right after connecting, so it is usually there
        already: then it is served at once, without a reader, a timer and another turn of the loop."""
        try:
            conn, _ = self.sock.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:          # EMFILE and friends: try again on the next wake-up
            log.warning("socket accept failed: %s", exc.strerror)
            return
        uid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))[1]
        conn.setblocking(False)
        c = _Conn(conn, uid, time.monotonic())
        self.conns[conn.fileno()] = c
        if len(self.conns) > MAX_CONNS:
            # fair eviction: the uid holding the most connections loses its oldest one
            counts: dict[int, int] = {}
            for other in self.conns.values():
                counts[other.uid] = counts.get(other.uid, 0) + 1
            hog = max(counts, key=counts.get)
            oldest = next(o for o in self.conns.values() if o.uid == hog)
            log.warning("%d open connections: the oldest of uid %d (which holds %d) is closed", len(self.conns),
                        hog, counts[hog])
            self._conn_close(oldest)
            if oldest is c:
                return
        self._conn_readable(c)
        if self.conns.get(conn.fileno()) is c and not c.out:
            c.reading = True                # not all there yet: wait for the rest
            self.loop.add_reader(conn.fileno(), self._conn_readable, c)
            c.timer = self.loop.call_later(STALE_AFTER, self._conn_idle, c)

    def _conn_readable(self, c: "_Conn") -> None:
        try:
            chunk = c.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        if chunk:
            c.buf += chunk
            c.last = time.monotonic()
        try:
            items, rest = frame(c.buf)
        except Exception:  # noqa: BLE001
            log.exception("request framing failed")
            items, rest = [], b""
        if items:
            self._conn_serve(c, items[0])
        elif not chunk:                     # the client closed before a whole request came
            if c.buf.strip():
                self._conn_serve(c, drop_unfinished(c.buf)[0])
            else:
                self._conn_close(c)
        else:
            c.buf = rest

    def _conn_idle(self, c: "_Conn") -> None:
        c.timer = None
        if c.sock.fileno() not in self.conns or c.out:
            return
        idle = time.monotonic() - c.last
        if idle < STALE_AFTER:
            c.timer = self.loop.call_later(STALE_AFTER - idle, self._conn_idle, c)
            return
        if c.buf.strip():
            self._conn_serve(c, drop_unfinished(c.buf)[0])
        else:
            self._conn_close(c)

    def _conn_serve(self, c: "_Conn", item: Framed) -> None:
        if c.reading:
            c.reading = False
            self.loop.remove_reader(c.sock.fileno())
        rid = "not-supplied"
        try:
            if item.request is None:
                log.warning("malformed request on the socket from uid %d (%d bytes, %s): %s", c.uid, len(item.raw),
                            item.error, printable_bytes(item.raw))
                answer = (False, [f"malformed request ({len(item.raw)} bytes): {item.error}; a request is one "
                                  f"JSON object of at most {MAX_REQUEST_BYTES} bytes"], None)
            else:
                params = item.request.get("params")
                params = params if isinstance(params, dict) else {}
                r = params.get("vfd_rid", rid)
                rid = r if isinstance(r, str) and len(r) <= 256 else rid
                if _is_watch(item.request) and not self._can_watch():
                    answer = (False, ["too many watchers: try again later"], None)
                else:
                    answer = self._answer(item.request, params, c.uid)
                    if _is_watch(item.request) and answer[0]:
                        self._conn_detach(c)
                        self.watch_hub.add(c.sock, c.uid, encode_response(rid, *answer))
                        return
        except Exception:  # noqa: BLE001 - only this request fails
            log.exception("internal error serving a socket request")
            answer = (False, ["internal error"], None)
        c.out = encode_response(rid, *answer)
        c.deadline = time.monotonic() + REPLY_DEADLINE
        self._conn_write(c)

    def _conn_write(self, c: "_Conn") -> None:
        fd = c.sock.fileno()
        if self.conns.get(fd) is not c:
            return
        while c.out:
            try:
                c.out = c.out[c.sock.send(c.out):]
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                c.out = b""
        if not c.out:
            self._conn_close(c)
        elif time.monotonic() > c.deadline:
            log.warning("reply to uid %d not read within %.0fs: dropped", c.uid, REPLY_DEADLINE)
            self._conn_close(c)
        elif not c.writing:
            c.writing = True
            self.loop.add_writer(fd, self._conn_write, c)
            self.loop.call_later(REPLY_DEADLINE + 0.1, self._conn_write, c)

    def _can_watch(self) -> bool:
        from vfd.daemon.watch import MAX_WATCHERS
        return self.watch_hub is not None and len(self.watch_hub.watchers) < MAX_WATCHERS

    def _conn_detach(self, c: "_Conn") -> None:
        """The connection leaves the request server (its reader is already off): a watcher now."""
        del self.conns[c.sock.fileno()]
        if c.timer is not None:
            c.timer.cancel()
            c.timer = None

    def _conn_close(self, c: "_Conn") -> None:
        fd = c.sock.fileno()
        if fd < 0 or self.conns.get(fd) is not c:
            return
        del self.conns[fd]
        if c.reading:
            self.loop.remove_reader(fd)
        if c.writing:
            self.loop.remove_writer(fd)
        if c.timer is not None:
            c.timer.cancel()
        c.sock.close()

    # ---- replies ----------------------------------------------------------------------------
    def _reply(self, name: str, rid: str, ok: bool, lines: list[str], data: dict | None = None) -> None:
        try:
            fd, st = self.rundir.open_reply(name)
        except OSError as exc:
            # ENXIO: nobody has it open for reading (client gone); ENOENT: never made; ELOOP: symlink.
            log.info("reply to %s dropped: %s", printable(name), exc.strerror or exc)
            return
        self._send(fd, st, encode_response(rid, ok, lines, data))

    def _send(self, fd: int, st: os.stat_result, payload: bytes) -> None:
        key = (st.st_dev, st.st_ino)
        for pfd, p in self.pending.items():
            if p.key == key:                 # a reply to this FIFO is still queued: this one goes after it
                os.close(fd)
                if len(p.data) + len(payload) > MAX_PENDING_BYTES:
                    log.warning("reply to uid %d dropped: %d bytes already wait unread", p.uid, len(p.data))
                else:
                    p.data += payload
                return
        self._write(fd, _Pending(payload, time.monotonic() + REPLY_DEADLINE, st.st_uid, key))

    def _write(self, fd: int, p: _Pending) -> None:
        while p.data:
            try:
                p.data = p.data[os.write(fd, p.data):]
            except BlockingIOError:
                break
            except OSError as exc:       # EPIPE: the reader went away
                log.info("reply write failed: %s", exc.strerror if exc.errno != errno.EPIPE else "reader gone")
                p.data = b""
        if not p.data:
            self._drop_writer(fd)
            return
        if fd in self.pending:
            if time.monotonic() > p.deadline:
                log.warning("reply not read within %.0fs: dropped", REPLY_DEADLINE)
                self._drop_writer(fd)
            return
        self._make_room(p.uid)
        self.pending[fd] = p
        self.loop.add_writer(fd, self._writable, fd)
        self.loop.call_at(self.loop.time() + REPLY_DEADLINE + 0.1, self._expire, fd, p)

    def _make_room(self, uid: int) -> None:
        mine = [fd for fd, p in self.pending.items() if p.uid == uid]
        if len(mine) >= MAX_PENDING_PER_UID:
            log.warning("uid %d has %d unread replies: the oldest is dropped", uid, len(mine))
            self._drop_writer(mine[0])
        if len(self.pending) >= MAX_PENDING_TOTAL:
            log.warning("%d unread replies: the oldest is dropped", len(self.pending))
            self._drop_writer(next(iter(self.pending)))

    def _writable(self, fd: int) -> None:
        p = self.pending.get(fd)
        if p is not None:
            self._write(fd, p)

    def _expire(self, fd: int, p: _Pending) -> None:
        if self.pending.get(fd) is p:
            log.warning("reply not read within %.0fs: dropped", REPLY_DEADLINE)
            self._drop_writer(fd)

    def _drop_writer(self, fd: int) -> None:
        if self.pending.pop(fd, None) is not None:
            self.loop.remove_writer(fd)
        try:
            os.close(fd)
        except OSError:
            pass
