"""The request FIFO: read requests as they arrive (asyncio, no polling), answer on each client's FIFO.

Guarantees: a malformed, oversized or hostile request gets an error reply (or is dropped when it
names no usable reply FIFO) and the server keeps going; replies go only to FIFOs that already
exist next to the request FIFO; a client that never reads its reply cannot block the daemon.
"""

from __future__ import annotations

import errno
import grp
import json
import logging
import os
import re
import stat
import time
from pathlib import Path
from typing import Callable

from vfd.protocol import ACTIONS, MAX_REQUEST_BYTES, encode_response

log = logging.getLogger("vfd.server")

REPLY_DEADLINE = 5.0            # seconds a slow reader gets before its reply is dropped
_RFIFO_RE = re.compile(rb'"r_fifo"\s*:\s*"([^"\\]{1,512})"')
_decoder = json.JSONDecoder()

# handler(action, params, requester_uid) -> (ok, msg lines, data or None); see vfd/policy/authz.py
Handler = Callable[[str, dict, "int | None"], tuple[bool, list[str], "dict | None"]]


class RequestServer:
    def __init__(self, loop, fifo_path: str, handler: Handler, group: str | None = None):
        self.loop = loop
        self.path = Path(fifo_path)
        self.dir = self.path.parent.resolve()
        self.dir_text = str(self.dir)
        # the directory as configured and as resolved: clients use the configured spelling
        self.dir_names = {self.dir_text, os.path.normpath(os.path.abspath(str(self.path.parent)))}
        self.handler = handler
        self.group = group
        self.buf = b""
        self.buf_since = 0.0
        self.rfd = self.wfd = -1
        self.pending_writes: dict[int, tuple[bytes, float]] = {}
        self.served = 0

    # ---- FIFO lifecycle ---------------------------------------------------------------------
    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            st = self.path.lstat()
            if not stat.S_ISFIFO(st.st_mode):
                self.path.unlink()
                raise FileNotFoundError
        except FileNotFoundError:
            os.mkfifo(self.path, 0o620)
        gid = -1
        if self.group:
            gid = grp.getgrnam(self.group).gr_gid
        if os.geteuid() == 0:
            os.chown(self.path, 0, gid)
        elif gid != -1:
            os.chown(self.path, -1, gid)
        os.chmod(self.path, 0o620)  # owner and group may write requests; nobody else
        self.rfd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        self.wfd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)  # never see EOF when clients close
        self.loop.add_reader(self.rfd, self._readable)
        log.info("listening on %s", self.path)

    def close(self) -> None:
        if self.rfd >= 0:
            self.loop.remove_reader(self.rfd)
            os.close(self.rfd)
            os.close(self.wfd)
            self.rfd = self.wfd = -1
        for fd in list(self.pending_writes):
            self._drop_writer(fd)

    # ---- reading and framing ----------------------------------------------------------------
    def _readable(self) -> None:
        while True:
            try:
                chunk = os.read(self.rfd, 65536)
            except BlockingIOError:
                break
            if not chunk:
                break
            if not self.buf:
                self.buf_since = time.monotonic()
            self.buf += chunk
            if len(chunk) < 65536:
                break
        self._drain()

    def _drain(self) -> None:
        buf = self.buf
        i = 0
        n = len(buf)
        while i < n:
            while i < n and buf[i] in b" \t\r\n\0":
                i += 1
            if i >= n:
                break
            if buf[i:i + 1] != b"{":
                j = buf.find(b"{", i)
                self._garbage(buf[i:j if j >= 0 else n])
                i = j if j >= 0 else n
                continue
            nxt = buf.find(b"\n{", i + 1)
            end = nxt if nxt >= 0 else n
            try:
                text = buf[i:end].decode()
                obj, used = _decoder.raw_decode(text)
            except (UnicodeDecodeError, json.JSONDecodeError):
                if nxt < 0 and n - i <= MAX_REQUEST_BYTES:
                    break            # maybe a request still being written: wait for the rest
                self._garbage(buf[i:end])
                i = end
                continue
            rest = text[used:].strip()
            i = i + len(text[:used].encode())
            if rest and nxt >= 0:
                self._garbage(rest.encode())
                i = end
            self._request(obj)
        self.buf = buf[i:]
        if len(self.buf) > MAX_REQUEST_BYTES:
            self._garbage(self.buf)
            self.buf = b""

    def _garbage(self, data: bytes) -> None:
        m = _RFIFO_RE.search(data[:MAX_REQUEST_BYTES])
        log.warning("malformed request (%d bytes)%s", len(data), "" if m else " with no reply fifo: dropped")
        if m:
            self._reply(m.group(1).decode(errors="replace"), "not-supplied", False,
                        [f"malformed request ({len(data)} bytes): not a JSON object of at most "
                         f"{MAX_REQUEST_BYTES} bytes"])

    # ---- dispatch ---------------------------------------------------------------------------
    def _request(self, req: object) -> None:
        params = req.get("params") if isinstance(req, dict) else None
        r_fifo = params.get("r_fifo") if isinstance(params, dict) else None
        rid = params.get("vfd_rid", "not-supplied") if isinstance(params, dict) else "not-supplied"
        rid = rid if isinstance(rid, str) and len(rid) <= 256 else "not-supplied"
        if not isinstance(r_fifo, str):
            log.warning("request without a reply fifo dropped: %.200s", json.dumps(req))
            return
        action = req.get("action")
        if not isinstance(action, str) or action.lower() not in ACTIONS:
            self._reply(r_fifo, rid, False, [f"unrecognised request: action {json.dumps(action)[:80]} is not one "
                                             f"of {', '.join(ACTIONS)}"])
            return
        try:
            ok, lines, data = self.handler(action.lower(), params, self._requester(r_fifo))
        except Exception as exc:  # noqa: BLE001 - one bad request must not end the daemon
            log.exception("internal error serving %s", action)
            ok, lines, data = False, [f"internal error while serving {action}: {exc}"], None
        self.served += 1
        self._reply(r_fifo, rid, ok, lines, data)

    def _requester(self, r_fifo: str) -> int | None:
        """Who asked: the owner of the reply FIFO (creating a FIFO owned by someone else takes root).
        None when it cannot be told; such a requester may only read (vfd/policy/authz.py)."""
        p = self._reply_path(r_fifo)
        if p is None:
            return None
        try:
            st = os.lstat(p)
        except OSError:
            return None
        return st.st_uid if stat.S_ISFIFO(st.st_mode) else None

    # ---- replies ----------------------------------------------------------------------------
    def _reply_path(self, r_fifo: str) -> str | None:
        """The reply FIFO must sit directly next to the request FIFO. Checked lexically (no syscalls
        on the hot path); the opener then refuses symlinks and anything that is not a FIFO."""
        if "\0" in r_fifo or len(r_fifo) > 1024:
            return None
        path = os.path.normpath(os.path.join(self.dir_text, r_fifo))
        parent, name = os.path.split(path)
        if parent not in self.dir_names:
            if os.path.realpath(parent) != self.dir_text:     # the same directory spelt another way
                log.warning("reply fifo %r is not next to %s: reply dropped", r_fifo, self.path)
                return None
        if name in ("", ".", "..") or name == self.path.name:
            log.warning("reply fifo %r is not a usable name: reply dropped", r_fifo)
            return None
        return path

    def _reply(self, r_fifo: str, rid: str, ok: bool, lines: list[str], data: dict | None = None) -> None:
        p = self._reply_path(r_fifo)
        if p is None:
            return
        try:
            if not stat.S_ISFIFO(os.lstat(p).st_mode):   # never open a regular file or a device
                log.warning("reply fifo %s is not a FIFO: reply dropped", p)
                return
            # O_NOFOLLOW refuses a symlink; O_NONBLOCK makes open fail (ENXIO) if no one reads.
            fd = os.open(p, os.O_WRONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
        except OSError as exc:
            # ENXIO: nobody has it open for reading (client gone); ENOENT: never made; ELOOP: symlink.
            log.info("reply to %s dropped: %s", p, exc.strerror)
            return
        if not stat.S_ISFIFO(os.fstat(fd).st_mode):     # swapped between lstat and open
            os.close(fd)
            log.warning("reply fifo %s is not a FIFO: reply dropped", p)
            return
        self._write(fd, encode_response(rid, ok, lines, data), time.monotonic() + REPLY_DEADLINE)

    def _write(self, fd: int, data: bytes, deadline: float) -> None:
        while data:
            try:
                data = data[os.write(fd, data):]
            except BlockingIOError:
                break
            except OSError as exc:       # EPIPE: the reader went away
                log.info("reply write failed: %s", exc.strerror if exc.errno != errno.EPIPE else "reader gone")
                data = b""
        if not data:
            self._drop_writer(fd)
            return
        if time.monotonic() > deadline:
            log.warning("reply not read within %.0fs: dropped", REPLY_DEADLINE)
            self._drop_writer(fd)
            return
        first = fd not in self.pending_writes
        self.pending_writes[fd] = (data, deadline)
        if first:
            self.loop.add_writer(fd, lambda: self._write(fd, *self.pending_writes[fd]))
            self.loop.call_at(self.loop.time() + REPLY_DEADLINE + 0.1, self._expire, fd, deadline)

    def _expire(self, fd: int, deadline: float) -> None:
        entry = self.pending_writes.get(fd)
        if entry is not None and entry[1] == deadline:
            log.warning("reply not read within %.0fs: dropped", REPLY_DEADLINE)
            self._drop_writer(fd)

    def _drop_writer(self, fd: int) -> None:
        if self.pending_writes.pop(fd, None) is not None:
            self.loop.remove_writer(fd)
        try:
            os.close(fd)
        except OSError:
            pass
