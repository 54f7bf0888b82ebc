"""File-change events for the sim NIC's register files: Linux inotify through ctypes.

The sim backend turns edits of its state files (a link flap, drift made by hand) into NIC events
without polling. Thirty lines of ctypes against libc rather than a dependency: the maintained
PyPI wrappers do the same thing with more code than is needed here.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import struct

IN_CLOSE_WRITE = 0x00000008
IN_MOVED_TO = 0x00000080
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000
_EVENT = struct.Struct("iIII")   # wd, mask, cookie, len; then len bytes of NUL-padded name


class DirWatch:
    """Names of files written (closed after writing) or renamed into one directory."""

    def __init__(self, directory: str):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        self.fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        wd = libc.inotify_add_watch(self.fd, os.fsencode(directory), IN_CLOSE_WRITE | IN_MOVED_TO)
        if wd < 0:
            err = ctypes.get_errno()
            os.close(self.fd)
            raise OSError(err, f"inotify_add_watch {directory} failed")

    def read(self) -> set[str]:
        names: set[str] = set()
        while True:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                return names
            pos = 0
            while pos + _EVENT.size <= len(data):
                _, _, _, length = _EVENT.unpack_from(data, pos)
                pos += _EVENT.size
                names.add(data[pos:pos + length].rstrip(b"\0").decode(errors="replace"))
                pos += length

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
