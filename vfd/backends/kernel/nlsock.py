"""A plain netlink socket for request/answer and dump exchanges (generic netlink, tc, dcbnl).

The switchdev modules (devlink.py, tcmirror.py, dcb.py) build their messages with pyroute2's
message classes and send them here, for the reason netlink.py gives: pyroute2 0.9's synchronous
sockets run their own asyncio loop per call, which cannot run inside the daemon's loop. This
class only moves bytes: it sends one request and collects every answer carrying its sequence
number until the ACK (NLMSG_ERROR 0), the NLMSG_DONE of a dump, or an error (NetlinkError).
"""

from __future__ import annotations

import socket
import struct
import threading
import time

from pyroute2.netlink.exceptions import NetlinkError

NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_ACK = 0x4
NLM_F_DUMP = 0x300
NLM_F_CREATE = 0x400
NLM_F_EXCL = 0x200
NETLINK_GENERIC = 16


class NlSocket:
    """Requests on one netlink socket of `protocol`, in the caller's thread."""

    def __init__(self, protocol: int, sock: socket.socket | None = None):
        if sock is None:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, protocol)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            sock.bind((0, 0))
            sock.settimeout(30)
        self.sock = sock
        self.seq = int(time.time() * 7) & 0xFFFFFF
        self.lock = threading.Lock()

    def next_seq(self) -> int:
        self.seq = (self.seq + 1) & 0x7FFFFFFF
        return self.seq

    def request(self, build, flags: int) -> list[bytes]:
        """`build(seq, flags)` -> the request bytes; returns the answers (raw messages) before the end.

        A dump (`flags` with NLM_F_DUMP) ends at NLMSG_DONE; anything else asks for an ACK. An error
        answer raises NetlinkError.
        """
        full = NLM_F_REQUEST | flags | (0 if flags & NLM_F_DUMP == NLM_F_DUMP else NLM_F_ACK)
        with self.lock:
            seq = self.next_seq()
            self.sock.send(build(seq, full))
            out: list[bytes] = []
            while True:
                data = self.sock.recv(1 << 20)
                off = 0
                while off + 16 <= len(data):
                    length, mtype, mflags, mseq, _pid = struct.unpack_from("=IHHII", data, off)
                    if length < 16:
                        break
                    msg = data[off:off + length]
                    off += (length + 3) & ~3
                    if mseq != seq:
                        continue
                    if mtype == NLMSG_ERROR:
                        code = -struct.unpack_from("=i", msg, 16)[0]
                        if code:
                            raise NetlinkError(code)
                        return out
                    if mtype == NLMSG_DONE:
                        return out
                    out.append(msg)         # a "do" answer is followed by its ACK

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
