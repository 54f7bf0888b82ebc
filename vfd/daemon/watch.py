"""`iplex watch`: event streams to any number of clients over the daemon's Unix socket.

A `watch` request keeps its connection open: the daemon answers it like any request (one reply
and @eom@), then writes each event of vfd/daemon/events.py as one JSON line. An idle watcher
costs a descriptor and nothing else (no thread, no timer). Writes are non-blocking; what a
watcher has not read yet is queued up to MAX_QUEUED bytes, and a watcher that falls further
behind is dropped (logged), never waited for: the daemon does not slow down for a reader.
"""

from __future__ import annotations

import json
import logging
import socket

from vfd.daemon import events

log = logging.getLogger("vfd.watch")

MAX_QUEUED = 256 * 1024        # bytes an unread watcher may hold before it is dropped
MAX_WATCHERS = 64              # beyond this, a new watcher is refused


class Watcher:
    def __init__(self, sock: socket.socket, uid: int):
        self.sock = sock
        self.uid = uid
        self.out = bytearray()
        self.writing = False


class WatchHub:
    def __init__(self, loop):
        self.loop = loop
        self.watchers: dict[int, Watcher] = {}
        self._unsubscribe = events.subscribe(self.publish)

    def add(self, sock: socket.socket, uid: int, greeting: bytes) -> bool:
        """Take over a connection whose request was `watch`; False (and nothing taken) when full."""
        if len(self.watchers) >= MAX_WATCHERS:
            return False
        w = Watcher(sock, uid)
        self.watchers[sock.fileno()] = w
        self.loop.add_reader(sock.fileno(), self._readable, w)     # only to see the client leave
        log.info("watcher added (uid %d, %d watching)", uid, len(self.watchers))
        self._queue(w, greeting)
        return True

    def publish(self, ev: dict) -> None:
        if not self.watchers:           # every change publishes; encode only for someone
            return
        line = (json.dumps(ev) + "\n").encode()
        for w in list(self.watchers.values()):
            self._queue(w, line)

    def _queue(self, w: Watcher, data: bytes) -> None:
        if len(w.out) + len(data) > MAX_QUEUED:
            log.warning("watcher of uid %d dropped: %d bytes unread", w.uid, len(w.out))
            self._drop(w)
            return
        w.out += data
        self._flush(w)

    def _flush(self, w: Watcher) -> None:
        fd = w.sock.fileno()
        if self.watchers.get(fd) is not w:
            return
        while w.out:
            try:
                sent = w.sock.send(w.out)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self._drop(w)
                return
            del w.out[:sent]
        if w.out and not w.writing:
            w.writing = True
            self.loop.add_writer(fd, self._flush, w)
        elif not w.out and w.writing:
            w.writing = False
            self.loop.remove_writer(fd)

    def _readable(self, w: Watcher) -> None:
        try:
            data = w.sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:                    # the client went away (anything else it sends is ignored)
            self._drop(w)

    def _drop(self, w: Watcher) -> None:
        fd = w.sock.fileno()
        if fd < 0 or self.watchers.get(fd) is not w:
            return
        del self.watchers[fd]
        self.loop.remove_reader(fd)
        if w.writing:
            self.loop.remove_writer(fd)
        w.sock.close()
        log.info("watcher of uid %d gone (%d watching)", w.uid, len(self.watchers))

    def close(self) -> None:
        self._unsubscribe()
        for w in list(self.watchers.values()):
            self._drop(w)
