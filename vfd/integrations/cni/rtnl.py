"""The few rtnetlink requests vfd-cni needs, on plain sockets (stdlib only), one per network namespace.

Why not pyroute2: the in-process plugin is a fresh process per CNI command, so its start-up is its cost.
`from pyroute2 import IPRoute, NetNS` loaded ~190 modules of pyroute2 and asyncio (`import
pyroute2` alone ~10 s in the lab guest), and `NetNS` creates its socket in a forked child process. A netlink socket stays bound to
the namespace it was created in, so `Rtnl(netns_path)` enters the pod's namespace with setns(2)
(this thread only: in the daemon, the command's own thread), creates the socket and comes straight
back: no child process, no import.

Requests: link lookup by name, a link's MAC and MTU, RTM_NEWLINK (up/down, name, MTU, MAC, move to
another namespace), address and route creation. Errors are `NetlinkError` (an OSError with errno).
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import struct

RTM_NEWLINK, RTM_GETLINK, RTM_NEWADDR, RTM_NEWROUTE = 16, 18, 20, 24
NLMSG_ERROR = 2
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE = 0x1, 0x4, 0x200, 0x400
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_EXT_MASK, IFLA_NET_NS_FD = 1, 3, 4, 29, 28
IFA_ADDRESS, IFA_LOCAL = 1, 2
RTA_DST, RTA_OIF, RTA_GATEWAY = 1, 4, 5
IFF_UP = 0x1
RT_TABLE_MAIN, RTPROT_BOOT, RT_SCOPE_UNIVERSE, RT_SCOPE_LINK, RTN_UNICAST = 254, 3, 0, 253, 1
CLONE_NEWNET = 0x40000000
_HDR = struct.Struct("=IHHII")
_IFINFO = struct.Struct("=BBHiII")


class NetlinkError(OSError):
    """The kernel refused a request: `code` is its errno."""

    def __init__(self, code: int, what: str = ""):
        super().__init__(code, os.strerror(code) + (f" ({what})" if what else ""))
        self.code = code


def _nla(atype: int, payload: bytes) -> bytes:
    n = 4 + len(payload)
    return struct.pack("=HH", n, atype) + payload + b"\0" * ((-n) & 3)


def _attrs(data: bytes, off: int, end: int):
    while off + 4 <= end:
        n, atype = struct.unpack_from("=HH", data, off)
        if n < 4:
            return
        yield atype & 0x3FFF, data[off + 4:off + n]
        off += (n + 3) & ~3


def setns(fd: int) -> None:
    """Move the calling thread into the network namespace open at `fd` (os.setns is Python >= 3.12)."""
    if hasattr(os, "setns"):
        os.setns(fd, CLONE_NEWNET)
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def _new_socket() -> socket.socket:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE)
    sock.bind((0, 0))
    sock.settimeout(60)
    return sock


def socket_in(netns_path: str) -> socket.socket:
    """An rtnetlink socket bound to the namespace at `netns_path`, created in-process with setns."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        target = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            setns(target)
        finally:
            os.close(target)
        try:
            return _new_socket()
        finally:
            setns(own)      # if coming back failed, the OSError ends the command (in vfd: its thread, which ends)
    finally:
        os.close(own)


class Rtnl:
    """One rtnetlink socket: the plugin's own namespace (netns_path None) or a pod's."""

    def __init__(self, netns_path: str | None = None):
        self.sock = socket_in(netns_path) if netns_path else _new_socket()
        self.seq = 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _request(self, mtype: int, flags: int, body: bytes) -> bytes:
        """Send one request; the answer carrying its sequence number (an ack, an error or the reply)."""
        self.seq += 1
        self.sock.send(_HDR.pack(16 + len(body), mtype, NLM_F_REQUEST | flags, self.seq, 0) + body)
        while True:
            data = self.sock.recv(1 << 16)
            off = 0
            while off + 16 <= len(data):
                length, atype, _f, seq, _pid = _HDR.unpack_from(data, off)
                if length < 16:
                    break
                if seq == self.seq:
                    msg = data[off:off + length]
                    if atype == NLMSG_ERROR:
                        code = -struct.unpack_from("=i", msg, 16)[0]
                        if code:
                            raise NetlinkError(code)
                    return msg
                off += (length + 3) & ~3

    # ---- links ----
    def link(self, name: str | None = None, index: int = 0) -> dict | None:
        """{index, name, mac, mtu} of the link named `name` (or with `index`); None when there is none."""
        body = _IFINFO.pack(socket.AF_UNSPEC, 0, 0, index, 0, 0) + _nla(IFLA_EXT_MASK, struct.pack("=I", 0))
        if name is not None:
            body += _nla(IFLA_IFNAME, name.encode() + b"\0")
        try:
            msg = self._request(RTM_GETLINK, 0, body)
        except NetlinkError as exc:
            if exc.code in (errno.ENODEV, errno.ENOENT):
                return None
            raise
        if _HDR.unpack_from(msg)[1] != RTM_NEWLINK:
            return None
        out = {"index": _IFINFO.unpack_from(msg, 16)[3], "name": None, "mac": "", "mtu": None}
        for atype, val in _attrs(msg, 16 + _IFINFO.size, len(msg)):
            if atype == IFLA_IFNAME:
                out["name"] = val.split(b"\0", 1)[0].decode()
            elif atype == IFLA_ADDRESS:
                out["mac"] = ":".join(f"{b:02x}" for b in val)
            elif atype == IFLA_MTU:
                out["mtu"] = struct.unpack("=I", val[:4])[0]
        return out

    def index(self, name: str) -> int | None:
        found = self.link(name)
        return found["index"] if found else None

    def set_link(self, index: int, *, up: bool | None = None, ifname: str | None = None, mtu: int | None = None,
                 mac: str | None = None, netns_fd: int | None = None) -> None:
        """One RTM_NEWLINK: what `ip link set` does with the same arguments."""
        flags, change = (0, 0) if up is None else (IFF_UP if up else 0, IFF_UP)
        body = _IFINFO.pack(socket.AF_UNSPEC, 0, 0, index, flags, change)
        if ifname is not None:
            body += _nla(IFLA_IFNAME, ifname.encode() + b"\0")
        if mtu is not None:
            body += _nla(IFLA_MTU, struct.pack("=I", mtu))
        if mac is not None:
            body += _nla(IFLA_ADDRESS, bytes(int(x, 16) for x in mac.split(":")))
        if netns_fd is not None:
            body += _nla(IFLA_NET_NS_FD, struct.pack("=I", netns_fd))
        self._request(RTM_NEWLINK, NLM_F_ACK, body)

    # ---- addresses and routes ----
    def add_address(self, index: int, iface) -> None:
        """`iface`: an ipaddress.IPv4Interface or IPv6Interface."""
        family = socket.AF_INET if iface.version == 4 else socket.AF_INET6
        ip = iface.ip.packed
        body = struct.pack("=BBBBI", family, iface.network.prefixlen, 0, 0, index)
        body += _nla(IFA_LOCAL, ip) + _nla(IFA_ADDRESS, ip)
        self._request(RTM_NEWADDR, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, body)

    def add_route(self, dst, oif: int, gateway=None) -> None:
        """`dst`: an ipaddress network; `gateway`: an ipaddress address or None (a link route)."""
        family = socket.AF_INET if dst.version == 4 else socket.AF_INET6
        body = struct.pack("=BBBBBBBBI", family, dst.prefixlen, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT,
                           RT_SCOPE_UNIVERSE if gateway else RT_SCOPE_LINK, RTN_UNICAST, 0)
        body += _nla(RTA_DST, dst.network_address.packed) + _nla(RTA_OIF, struct.pack("=I", oif))
        if gateway:
            body += _nla(RTA_GATEWAY, gateway.packed)
        self._request(RTM_NEWROUTE, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, body)
