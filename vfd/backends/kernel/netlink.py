"""The rtnetlink side of a kernel PF: read the VFs, set one VF (or a batch of VFs) per message, events.

Change messages are written in the bytes pyroute2 writes for `IPRoute.link("set", vf=...)`
(`setlink_message`: its `ifinfmsg` class and VF request filter), packed directly by
`encode_setlink` (pyroute2's generic encoder took ~1-2 s for one 64-VF batch in the lab guest;
the two are compared byte for byte in the unit tests); they travel on a plain rtnetlink socket
(`Rtnl`), and answers are decoded straight from their bytes (`parse_link`). Why:
- pyroute2 0.9's synchronous `IPRoute` runs its own asyncio loop per call, which cannot run inside
  the daemon's running loop ("Cannot run the event loop while another loop is running"), and in
  the lab each call cost ~17 ms against ~1.3 ms for a plain socket; its generic NLA decoding cost
  ~0.5 s per read of a 64-VF PF (parse_link_nla, kept as the reference the fast decoder is tested
  against). Reads happen before and after every VF change, so both mattered.
- pyroute2 (0.9.7) encodes IFLA_VF_VLAN_INFO as 14 bytes (u32 vf, u32 vlan, u32 qos, be16 proto)
  while the kernel checks `nla_len >= sizeof(struct ifla_vf_vlan_info)`, which is 16 (padded), and
  answers EINVAL to the list form (the only form that carries 802.1ad). `fix_vlan_info_padding`
  adds the two padding bytes. Found and checked against a real 6.1 kernel in tools/kernel-lab.
- pyroute2's `get_vf()` pops `vf`, `vlan` and `rate` from the caller's dict and writes `vf` into
  the nested dicts: `setlink_message` always hands it a deep copy.

Kernel vocabulary of one VF (a plain dict, what `ip link` shows): `mac`, `vlan`, `qos`, `proto`
(0x8100 / 0x88a8), `spoofchk`, `trust` (bool, None when the driver does not report it),
`min_tx_rate`, `max_tx_rate` (Mb/s), `link_state` (0 auto, 1 enable, 2 disable).
"""

from __future__ import annotations

import copy
import errno
import importlib.util
import os
import select
import socket
import struct
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any



def _pyroute2_without_its_init() -> None:
    """Load the `pyroute2` package without running its __init__ (which imports the whole library:
    IPRoute, NDB, IPDB, conntrack, nl80211, ...): that import was ~15 s of the daemon's ~23 s
    start-up in the lab guest (`python -X importtime`). At run time vfd needs only NetlinkError;
    pyroute2's message classes (setlink_message, parse_link_nla: the references the direct
    encoder and decoder are tested against) load on first use. Anything that later asks the
    package for a name it lacks (`from pyroute2 import IPRoute` elsewhere in the process) runs
    the real __init__ then."""
    if "pyroute2" in sys.modules:
        return
    spec = importlib.util.find_spec("pyroute2")
    if spec is None or spec.loader is None or not spec.submodule_search_locations:
        return
    pkg = importlib.util.module_from_spec(spec)

    def complete(name: str):
        if not name.startswith("__"):         # `from pyroute2 import config`: a submodule, not __init__'s
            try:
                return importlib.import_module(f"pyroute2.{name}")
            except ModuleNotFoundError as exc:
                if exc.name != f"pyroute2.{name}":
                    raise
        pkg.__dict__.pop("__getattr__", None)
        spec.loader.exec_module(pkg)
        try:
            return pkg.__dict__[name]
        except KeyError:
            raise AttributeError(f"module 'pyroute2' has no attribute {name!r}") from None
    pkg.__getattr__ = complete
    sys.modules["pyroute2"] = pkg


_pyroute2_without_its_init()
from pyroute2.netlink.exceptions import NetlinkError  # noqa: E402

__all__ = ["NetlinkError", "Rtnl", "LinkSnapshot", "VFTable", "parse_link", "setlink_message", "vf_spec",
           "OPS", "ATTRS", "FIELD_OPS", "fix_vlan_info_padding", "Monitor", "ETH_P_8021Q", "ETH_P_8021AD",
           "errno_name", "MAX_VFS_PER_MESSAGE"]

ETH_P_8021Q = 0x8100
ETH_P_8021AD = 0x88A8
RTEXT_FILTER_VF = 1 << 0
RTEXT_FILTER_SKIP_STATS = 1 << 3
IFF_UP = 0x1
IFF_PROMISC = 0x100
IFF_LOWER_UP = 0x10000
RTM_NEWLINK = 16
RTM_DELLINK = 17
RTMGRP_LINK = 1
IFLA_IFNAME = 3
IFLA_EXT_MASK = 29
RTM_GETLINK = 18
ANSWER_TIMEOUT = 60           # seconds the kernel may take to answer one rtnetlink request
NLMSG_ERROR = 2
NLM_F_REQUEST = 1
NLM_F_ACK = 4
U32_UNSET = 0xFFFFFFFF     # what rtnetlink reports for spoofchk/trust a driver does not fill in
# VFs per batched RTM_NEWLINK: ~130 bytes each with every op, so 128 of them (~17 KiB) stay far below
# the u16 length of the IFLA_VFINFO_LIST attribute and the socket's send buffer (~208 KiB).
MAX_VFS_PER_MESSAGE = 128

# One op per rtnetlink VF attribute, in the order the kernel applies them (do_setvfinfo): it stops
# at the first error, so after a failure the first op that did not take effect is the one refused.
OPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("mac", ("mac",)),
    ("vlan", ("vlan", "qos", "proto")),
    ("rate", ("min_tx_rate", "max_tx_rate")),   # IFLA_VF_RATE carries both: always sent together
    ("spoofchk", ("spoofchk",)),
    ("link_state", ("link_state",)),
    ("trust", ("trust",)),
)
ATTRS = tuple(a for _, attrs in OPS for a in attrs)
# Which op sets each program field (vfd.program.VFProgram) a VF's IFLA_VF_INFO reports: the kernel
# backend sends, for the fields the one drift check (vfd.program.compare) finds differing, these ops.
# vlan_anti_spoof is spoofchk's on ixgbe (elsewhere it reads fixed true); trust is what lets the
# guest receive unknown unicast (profiles.py, the trust mapping). A field not here (allow-list,
# gates, mirror, C-tag strip) has no rtnetlink control: admission refuses configs that need it.
FIELD_OPS: dict[str, str] = {
    "mac": "mac",
    "vlans": "vlan", "strip": "vlan", "insert": "vlan", "vlan_proto": "vlan", "pcp": "vlan",
    "min_rate": "rate", "max_rate": "rate",
    "mac_anti_spoof": "spoofchk", "vlan_anti_spoof": "spoofchk",
    "link": "link_state",
    "uucast": "trust",
}


def errno_name(code: int) -> str:
    if code == errno.EOPNOTSUPP:
        return "EOPNOTSUPP"               # errorcode says ENOTSUP, the same number on Linux
    return errno.errorcode.get(code, f"errno {code}")


def fix_vlan_info_padding() -> None:
    """Pad pyroute2's IFLA_VF_VLAN_INFO to the kernel's 16 bytes (see the module docstring)."""
    from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
    ivvi = ifinfmsg.vflist.vfinfo.vf_vlist.ivvi
    size = struct.calcsize("=" + "".join(fmt.lstrip("<>!=") for _, fmt in ivvi.fields))
    if size < 16:
        ivvi.fields = tuple(ivvi.fields) + (("__pad", f"{16 - size}x"),)


# ---- reading ------------------------------------------------------------------------------------
class VFTable(Mapping):
    """VF index -> kernel vocabulary, decoded from the message bytes on first access.

    A read of a PF with 64 VFs decodes only the VFs that are looked at (programming one VF looks
    at one), and finds a VF without walking the list: the kernel lists the VFs in index order and
    with the same attributes each, so VF n's entry is the n-th of one size (_jump, checked by the
    VF number it carries); a list that is not so is walked, only as far as the VF looked for.
    Equal bytes in two reads mean an unchanged VF (raw).
    """

    def __init__(self, data: bytes, start: int = 0, end: int = 0):
        self._data = data
        self._next, self._end = start, end       # the part of IFLA_VFINFO_LIST not walked yet
        self._spans: list[tuple[int, int]] = []  # IFLA_VF_INFO payloads walked so far, in list order
        self._vfs: dict[int, dict] = {}
        self._stats: dict[int, dict] = {}
        self._where: dict[int, int] | None = None

    def _walk(self, pos: int | None) -> bool:
        """Walk the list until entry `pos` is known (None: to its end); whether it exists."""
        data, off, end, spans = self._data, self._next, self._end, self._spans
        while (pos is None or len(spans) <= pos) and off + 4 <= end:
            alen, atype = _NLA(data, off)
            if alen < 4 or off + alen > end:
                off = end
                break
            if atype & 0x3FFF == IFLA_VF_INFO:
                spans.append((off + 4, off + alen))
            off += (alen + 3) & ~3
        self._next = off
        return pos is not None and pos < len(spans)

    def _decode(self, pos: int) -> int:
        vfid, st, vst = _vfinfo(self._data, *self._spans[pos])
        if vfid >= 0:
            self._vfs[vfid], self._stats[vfid] = st, vst
        return vfid

    def _index(self) -> dict[int, int]:
        """vfid -> list position for every VF, decoding all once (a list not in index order)."""
        if self._where is None:
            self._walk(None)
            self._where = {self._decode(i): i for i in range(len(self._spans))}
        return self._where

    def _jump(self, vfid: int) -> tuple[int, int] | None:
        """VF `vfid`'s entry found without a walk: the kernel writes the same attributes for every VF
        of a PF, so entries have one size and VF n's is the n-th. Taken only when the entry there
        has the first entry's size and carries VF n (IFLA_VF_MAC's VF number); else None (walk)."""
        if not isinstance(vfid, int) or vfid < 0 or not (self._spans or self._walk(0)):
            return None
        s0, e0 = self._spans[0]
        size = e0 - s0 + 4
        off = s0 - 4 + vfid * ((size + 3) & ~3)
        if off + size > self._end:
            return None
        alen, atype = _NLA(self._data, off)
        if alen != size or atype & 0x3FFF != IFLA_VF_INFO or _leading_vfid(self._data, off + 4, off + size) != vfid:
            return None
        return off + 4, off + size

    def _find(self, vfid: int) -> bool:
        if vfid in self._vfs:
            return True
        span = self._jump(vfid)
        if span is not None:
            found, st, vst = _vfinfo(self._data, *span)
            if found == vfid:
                self._vfs[vfid], self._stats[vfid] = st, vst
                return True
        if isinstance(vfid, int) and vfid >= 0 and self._walk(vfid) and self._decode(vfid) == vfid:
            return True
        return vfid in self._index() and vfid in self._vfs

    def __getitem__(self, vfid: int) -> dict:
        if not self._find(vfid):
            raise KeyError(vfid)
        return self._vfs[vfid]

    def __contains__(self, vfid) -> bool:
        return self._find(vfid)

    def __iter__(self):
        self._walk(None)
        for i in range(len(self._spans)):
            if i not in self._vfs:
                self._decode(i)
        return iter(sorted(self._vfs))

    def __len__(self) -> int:
        self._walk(None)
        return len(self._spans)

    def stats(self, vfid: int) -> dict:
        return self._stats.get(vfid, {}) if self._find(vfid) else {}

    def raw(self, vfid: int) -> bytes | None:
        """The VF's IFLA_VF_INFO bytes, undecoded."""
        span = self._jump(vfid)
        if span is not None:
            return self._data[span[0]:span[1]]
        pos = vfid if isinstance(vfid, int) and vfid >= 0 and self._walk(vfid) else None
        if pos is None or _vfid_at(self._data, *self._spans[pos]) != vfid:
            if not self._find(vfid):
                return None
            pos = self._index().get(vfid)
            if pos is None:
                return None
        s, e = self._spans[pos]
        return self._data[s:e]


@dataclass
class LinkSnapshot:
    """One `RTM_GETLINK` of the PF with its VFs, in plain values."""
    ifindex: int
    ifname: str
    flags: int
    num_vf: int
    vfs: Mapping                               # vfid -> kernel vocabulary (a VFTable, or a dict)
    stats: dict = field(default_factory=dict)  # IFLA_STATS64
    with_stats: bool = False
    taken: float = 0.0
    gen: int = 0                               # the PF's event count when taken (backend's cache rule)
    vf_stats: dict = field(default_factory=dict)   # only filled by parse_link_nla

    @property
    def lower_up(self) -> bool:
        return bool(self.flags & IFF_LOWER_UP)

    @property
    def up(self) -> bool:
        return bool(self.flags & IFF_UP)

    @property
    def promisc(self) -> bool:
        return bool(self.flags & IFF_PROMISC)

    def vf_stat(self, vfid: int) -> dict:
        if isinstance(self.vfs, VFTable):
            return self.vfs.stats(vfid)
        return self.vf_stats.get(vfid, {})


def _flag(value: Any) -> bool | None:
    if value is None or value == U32_UNSET or value == -1:
        return None
    return bool(value)


def parse_vfinfo(vi) -> tuple[int, dict, dict]:
    mac_attr = vi.get("IFLA_VF_MAC")
    vfid = int(mac_attr["vf"])
    vlan, qos, proto = 0, 0, ETH_P_8021Q
    vlist = vi.get("IFLA_VF_VLAN_LIST")
    infos = vlist.get_attrs("IFLA_VF_VLAN_INFO") if vlist is not None else []
    if infos:
        vlan, qos, proto = int(infos[0]["vlan"]), int(infos[0]["qos"]), int(infos[0]["proto"])
    elif vi.get("IFLA_VF_VLAN") is not None:
        v = vi.get("IFLA_VF_VLAN")
        vlan, qos = int(v["vlan"]), int(v["qos"])
    if proto == 0 or (vlan == 0 and qos == 0):
        proto = ETH_P_8021Q   # netdevsim reports 0 before a VLAN was ever set; no VLAN has no TPID
    rate = vi.get("IFLA_VF_RATE")
    if rate is not None:
        min_rate, max_rate = int(rate["min_tx_rate"]), int(rate["max_tx_rate"])
    else:
        tx = vi.get("IFLA_VF_TX_RATE")
        min_rate, max_rate = 0, int(tx["tx_rate"]) if tx is not None else 0
    spoof = vi.get("IFLA_VF_SPOOFCHK")
    trust = vi.get("IFLA_VF_TRUST")
    link = vi.get("IFLA_VF_LINK_STATE")
    state = {
        "mac": str(mac_attr["mac"]).lower(),
        "vlan": vlan, "qos": qos, "proto": proto,
        "spoofchk": _flag(spoof["spoofchk"]) if spoof is not None else None,
        "trust": _flag(trust["trust"]) if trust is not None else None,
        "min_tx_rate": min_rate, "max_tx_rate": max_rate,
        "link_state": int(link["link_state"]) if link is not None else 0,
    }
    stats = {}
    st = vi.get("IFLA_VF_STATS")
    if st is not None:
        for key in ("RX_PACKETS", "TX_PACKETS", "RX_BYTES", "TX_BYTES", "BROADCAST", "MULTICAST",
                    "RX_DROPPED", "TX_DROPPED"):
            v = st.get(f"IFLA_VF_STATS_{key}")
            stats[key.lower()] = int(v) if v is not None else 0
    return vfid, state, stats


def parse_link_nla(msg, with_stats: bool = False) -> LinkSnapshot:
    """The same as parse_link through pyroute2's own NLA decoding: the reference the fast one is
    tested against (it costs ~8 ms per VF under the lab's emulation, 0.5 s per 64-VF read)."""
    vfs: dict[int, dict] = {}
    vf_stats: dict[int, dict] = {}
    vlist = msg.get("IFLA_VFINFO_LIST")
    if vlist is not None:
        for vi in vlist.get_attrs("IFLA_VF_INFO"):
            vfid, state, stats = parse_vfinfo(vi)
            vfs[vfid] = state
            if stats:
                vf_stats[vfid] = stats
    num = msg.get("IFLA_NUM_VF")
    st64 = msg.get("IFLA_STATS64")
    stats = {k: int(v) for k, v in dict(st64).items() if isinstance(v, int)} if st64 is not None else {}
    return LinkSnapshot(ifindex=int(msg["index"]), ifname=str(msg.get("IFLA_IFNAME") or ""),
                        flags=int(msg["flags"]), num_vf=int(num) if num is not None else len(vfs),
                        vfs=vfs, vf_stats=vf_stats, stats=stats, with_stats=with_stats,
                        taken=time.monotonic())


# Attribute numbers (include/uapi/linux/if_link.h) for the fast decoder below.
IFLA_NUM_VF, IFLA_VFINFO_LIST, IFLA_STATS64 = 21, 22, 23
IFLA_VF_INFO = 1
(IFLA_VF_MAC, IFLA_VF_VLAN, IFLA_VF_TX_RATE, IFLA_VF_SPOOFCHK, IFLA_VF_LINK_STATE, IFLA_VF_RATE,
 IFLA_VF_RSS_QUERY_EN, IFLA_VF_STATS, IFLA_VF_TRUST) = range(1, 10)
IFLA_VF_VLAN_LIST = 12
VF_STATS_NAMES = {0: "rx_packets", 1: "tx_packets", 2: "rx_bytes", 3: "tx_bytes", 4: "broadcast",
                  5: "multicast", 7: "rx_dropped", 8: "tx_dropped"}
STATS64_NAMES = ("rx_packets", "tx_packets", "rx_bytes", "tx_bytes", "rx_errors", "tx_errors", "rx_dropped",
                 "tx_dropped", "multicast", "collisions")
# Compiled once: struct's module functions look the format up in a cache on every call, and the
# attribute walks below make ~100 of these calls per VF change.
_NLA = struct.Struct("=HH").unpack_from
_U32 = struct.Struct("=I").unpack_from
_U32X3 = struct.Struct("=III").unpack_from
_MAC_HEAD = struct.Struct("=HHI").unpack_from     # an attribute's header and a u32 (IFLA_VF_MAC's VF number)


def _attrs(data: bytes, off: int, end: int):
    while off + 4 <= end:
        alen, atype = _NLA(data, off)
        if alen < 4 or off + alen > end:
            return
        yield atype & 0x3FFF, off + 4, off + alen
        off += (alen + 3) & ~3


def _leading_vfid(data: bytes, off: int, end: int) -> int:
    """The VF number of an IFLA_VF_INFO payload whose first attribute is IFLA_VF_MAC (where the
    kernel puts it, rtnl_fill_vfinfo); -1 for one that starts otherwise."""
    if off + 8 <= end:
        alen, atype, vfid = _MAC_HEAD(data, off)
        if atype & 0x3FFF == IFLA_VF_MAC and alen >= 8:
            return vfid
    return -1


def _vfid_at(data: bytes, off: int, end: int) -> int:
    vfid = _leading_vfid(data, off, end)
    if vfid >= 0:
        return vfid
    for t, s, e in _attrs(data, off, end):
        if t == IFLA_VF_MAC and e - s >= 4:
            return _U32(data, s)[0]
    return -1


def _vfinfo(data: bytes, off: int, end: int) -> tuple[int, dict, dict]:
    vfid = -1
    st = {"mac": "00:00:00:00:00:00", "vlan": 0, "qos": 0, "proto": ETH_P_8021Q, "spoofchk": None, "trust": None,
          "min_tx_rate": 0, "max_tx_rate": 0, "link_state": 0}
    stats: dict = {}
    have_list = have_rate = False
    for t, s, e in _attrs(data, off, end):
        if t == IFLA_VF_MAC and e - s >= 10:
            vfid = _U32(data, s)[0]
            st["mac"] = data[s + 4:s + 10].hex(":")
        elif t == IFLA_VF_VLAN and e - s >= 12 and not have_list:
            _, st["vlan"], st["qos"] = _U32X3(data, s)
        elif t == IFLA_VF_VLAN_LIST:
            for t2, s2, e2 in _attrs(data, s, e):
                if t2 == 1 and e2 - s2 >= 14:
                    _, vlan, qos = _U32X3(data, s2)
                    proto = struct.unpack_from(">H", data, s2 + 12)[0]
                    st.update(vlan=vlan, qos=qos, proto=proto)
                    have_list = True
                    break
        elif t == IFLA_VF_RATE and e - s >= 12:
            _, st["min_tx_rate"], st["max_tx_rate"] = _U32X3(data, s)
            have_rate = True
        elif t == IFLA_VF_TX_RATE and e - s >= 8 and not have_rate:
            st["max_tx_rate"] = _U32(data, s + 4)[0]
        elif t in (IFLA_VF_SPOOFCHK, IFLA_VF_TRUST) and e - s >= 8:
            st["spoofchk" if t == IFLA_VF_SPOOFCHK else "trust"] = _flag(_U32(data, s + 4)[0])
        elif t == IFLA_VF_LINK_STATE and e - s >= 8:
            st["link_state"] = _U32(data, s + 4)[0]
        elif t == IFLA_VF_STATS:
            for t2, s2, e2 in _attrs(data, s, e):
                if t2 in VF_STATS_NAMES and e2 - s2 >= 8:
                    stats[VF_STATS_NAMES[t2]] = struct.unpack_from("=Q", data, s2)[0]
    if st["proto"] == 0 or (st["vlan"] == 0 and st["qos"] == 0):
        st["proto"] = ETH_P_8021Q   # netdevsim reports 0 before a VLAN was ever set; no VLAN has no TPID
    return vfid, st, stats


def parse_link(msg, with_stats: bool = False) -> LinkSnapshot:
    """Decode an RTM_NEWLINK answer (bytes, or a pyroute2 message) straight from its bytes.

    pyroute2's generic NLA decoding is ~30x slower, which matters for a PF with 64+ VFs that is
    read twice per VF programmed; VFs are decoded lazily (VFTable)."""
    if isinstance(msg, (bytes, bytearray, memoryview)):
        data, base = bytes(msg), 0
    else:
        data, base = bytes(msg.data), int(getattr(msg, "offset", 0) or 0)
    length = struct.unpack_from("=I", data, base)[0]
    end = base + length
    _fam, _pad, _type, index, flags, _change = struct.unpack_from("=BBHiII", data, base + 16)
    ifname, num = "", None
    vf_list = (0, 0)
    stats: dict = {}
    # The PF's ~40 attributes; the walk stops once the name, IFLA_NUM_VF and the VF list are seen
    # (the kernel puts the link statistics before them, the VF list after the count).
    unpack, off, seen = struct.unpack_from, base + 32, 0
    while off + 4 <= end and seen != 3:
        alen, t = _NLA(data, off)
        if alen < 4 or off + alen > end:
            break
        t &= 0x3FFF
        s, e = off + 4, off + alen
        if t == IFLA_IFNAME:
            ifname = data[s:e].split(b"\0", 1)[0].decode(errors="replace")
            seen |= 1
        elif t == IFLA_NUM_VF and e - s >= 4:
            num = _U32(data, s)[0]
        elif t == IFLA_STATS64 and with_stats:
            n = min(len(STATS64_NAMES), (e - s) // 8)
            stats = dict(zip(STATS64_NAMES, unpack(f"={n}Q", data, s)))
        elif t == IFLA_VFINFO_LIST:
            vf_list = (s, e)
            seen |= 2
        off += (alen + 3) & ~3
    vfs = VFTable(data, *vf_list)
    return LinkSnapshot(ifindex=index, ifname=ifname, flags=flags, num_vf=num if num is not None else len(vfs),
                        vfs=vfs, stats=stats, with_stats=with_stats, taken=time.monotonic())


class Rtnl:
    """Requests on a plain rtnetlink socket, in the caller's thread: RTM_GETLINK and RTM_NEWLINK (set)."""

    def __init__(self, sock: socket.socket | None = None):
        if sock is None:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            sock.bind((0, 0))
            # A kernel-side timeout on a blocking socket: Python's settimeout() would add a poll()
            # before every send and receive (four extra system calls per VF change).
            tv = struct.pack("@ll", ANSWER_TIMEOUT, 0)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, tv)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, tv)
        self.sock = sock
        self.seq = int(time.time()) & 0xFFFFFF
        self.buf = bytearray(1 << 20)
        self.lock = threading.Lock()

    def _next(self) -> int:
        self.seq = (self.seq + 1) & 0x7FFFFFFF
        return self.seq

    def _roundtrip(self, request: bytes, seq: int) -> bytes:
        """Send `request`; return the first answer (RTM_NEWLINK or NLMSG_ERROR) carrying `seq`.

        One receive per answer into a buffer that fits any PF (MSG_TRUNC tells the real size); an
        answer that did not fit is lost, so the buffer grows and a read is asked again."""
        try:
            self.sock.send(request)
            while True:
                n = self.sock.recv_into(self.buf, len(self.buf), socket.MSG_TRUNC)
                if n > len(self.buf):
                    self.buf = bytearray(n + 4096)
                    if struct.unpack_from("=H", request, 4)[0] != RTM_GETLINK:
                        raise OSError(errno.EMSGSIZE, f"rtnetlink answer of {n} bytes truncated")
                    self.sock.send(request)
                    continue
                data = bytes(memoryview(self.buf)[:n])     # one copy (a bytearray slice is a second)
                off = 0
                while off + 16 <= n:
                    length, mtype, _flags, mseq, _pid = struct.unpack_from("=IHHII", data, off)
                    if length < 16:
                        break
                    if mseq == seq and mtype in (NLMSG_ERROR, RTM_NEWLINK):
                        return data[off:off + length]
                    off += (length + 3) & ~3
        except BlockingIOError:
            raise TimeoutError(errno.ETIMEDOUT, f"rtnetlink did not answer within {ANSWER_TIMEOUT} s") from None

    @staticmethod
    def _check(answer: bytes) -> None:
        if struct.unpack_from("=H", answer, 4)[0] == NLMSG_ERROR:
            code = -struct.unpack_from("=i", answer, 16)[0]
            if code:
                raise NetlinkError(code)

    def get_link(self, ifindex: int, ext_mask: int) -> bytes:
        """One RTM_NEWLINK answer for `ifindex` (raw bytes, for parse_link)."""
        with self.lock:
            seq = self._next()
            body = struct.pack("=BBHiII", socket.AF_UNSPEC, 0, 0, ifindex, 0, 0)
            body += struct.pack("=HHI", 8, IFLA_EXT_MASK, ext_mask)
            answer = self._roundtrip(struct.pack("=IHHII", 16 + len(body), RTM_GETLINK, NLM_F_REQUEST, seq, 0)
                                     + body, seq)
            self._check(answer)
            return answer

    def set_link(self, ifindex: int, vf: dict | list | None = None, mtu: int | None = None) -> None:
        """What `IPRoute.link("set", index=ifindex, vf=vf)` sends; waits for the kernel's answer.

        `vf` may be a list: one message whose IFLA_VFINFO_LIST carries one IFLA_VF_INFO per VF;
        the kernel applies them in order and stops at the first refusal (rtnetlink.c do_setlink)."""
        with self.lock:
            seq = self._next()
            self._check(self._roundtrip(encode_setlink(ifindex, seq, vf=vf, mtu=mtu), seq))

    def set_flags(self, ifindex: int, flags: int, change: int) -> None:
        """`ip link set DEV promisc on|off` and the like: ifi_flags under the ifi_change mask."""
        with self.lock:
            seq = self._next()
            body = struct.pack("=BBHiII", socket.AF_UNSPEC, 0, 0, ifindex, flags, change)
            self._check(self._roundtrip(struct.pack("=IHHII", 16 + len(body), RTM_NEWLINK,
                                                    NLM_F_REQUEST | NLM_F_ACK, seq, 0) + body, seq))

    def close(self) -> None:
        self.sock.close()


# IFLA_VF_* attributes with a {u32 vf; u32 value} payload (the `vf=` spec's plain keys).
_VF_U32 = {"spoofchk": IFLA_VF_SPOOFCHK, "link_state": IFLA_VF_LINK_STATE, "trust": IFLA_VF_TRUST}
IFLA_MTU = 4


def _nla(atype: int, payload: bytes) -> bytes:
    return struct.pack("=HH", 4 + len(payload), atype) + payload + b"\0" * (-len(payload) % 4)


def _vfinfo_bytes(spec: dict) -> bytes:
    vfid = int(spec["vf"])
    out = []
    if "vlan" in spec:
        infos = b"".join(_nla(1, struct.pack("=III", vfid, int(v["vlan"]), int(v["qos"]))
                              + struct.pack(">H", int(v["proto"])) + b"\0\0") for v in spec["vlan"])
        out.append(_nla(IFLA_VF_VLAN_LIST, infos))
    if "rate" in spec:
        r = spec["rate"]
        out.append(_nla(IFLA_VF_RATE, struct.pack("=III", vfid, int(r["min_tx_rate"]), int(r["max_tx_rate"]))))
    for key, value in spec.items():
        if key in ("vf", "vlan", "rate"):
            continue
        if key == "mac":
            out.append(_nla(IFLA_VF_MAC, struct.pack("=I", vfid) + bytes.fromhex(value.replace(":", "")).ljust(32, b"\0")))
        elif key in _VF_U32:
            out.append(_nla(_VF_U32[key], struct.pack("=II", vfid, int(value))))
        else:
            raise ValueError(f"VF attribute {key!r} has no encoder")
    return _nla(IFLA_VF_INFO, b"".join(out))


def encode_setlink(ifindex: int, seq: int, vf: dict | list | None = None, mtu: int | None = None) -> bytes:
    """The same bytes as setlink_message (pyroute2), packed directly: pyroute2's generic encoder
    took ~1-2 s for one 64-VF message in the lab guest, most of the start-up batch. Checked
    byte for byte against pyroute2's in the unit tests, as parse_link is against its decoder."""
    attrs = b""
    if vf is not None:
        specs = vf if isinstance(vf, (list, tuple)) else [vf]
        attrs += _nla(IFLA_VFINFO_LIST, b"".join(_vfinfo_bytes(sp) for sp in specs))
    if mtu is not None:
        attrs += _nla(IFLA_MTU, struct.pack("=I", mtu))
    body = struct.pack("=BBHiII", socket.AF_UNSPEC, 0, 0, ifindex, 0, 0) + attrs
    return struct.pack("=IHHII", 16 + len(body), RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, seq, 0) + body


def setlink_message(ifindex: int, seq: int, vf: dict | list | None = None, mtu: int | None = None) -> bytes:
    """RTM_NEWLINK (request, ack) for an existing link, built by pyroute2 from a `vf=` spec: the
    reference encode_setlink is tested against."""
    from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
    from pyroute2.requests.link import LinkIPRouteFilter
    fix_vlan_info_padding()
    m = ifinfmsg()
    m["header"]["type"] = RTM_NEWLINK
    m["header"]["flags"] = NLM_F_REQUEST | NLM_F_ACK
    m["header"]["sequence_number"] = seq
    m["family"] = socket.AF_UNSPEC
    m["index"] = ifindex
    attrs = []
    if vf is not None:
        attrs.append(("IFLA_VFINFO_LIST", LinkIPRouteFilter("set").get_vf(copy.deepcopy(vf))))
    if mtu is not None:
        attrs.append(("IFLA_MTU", mtu))
    m["attrs"] = attrs
    m.encode()
    return bytes(m.data[:m["header"]["length"]])


def vf_spec(vfid: int, target: dict, ops: list[str]) -> dict:
    """The pyroute2 `vf=` dict setting `ops` of one VF to `target`: one IFLA_VF_INFO, one message."""
    spec: dict[str, Any] = {"vf": vfid}
    for op in ops:
        if op == "mac":
            spec["mac"] = target["mac"]
        elif op == "vlan":
            # The list form (IFLA_VF_VLAN_LIST) is the one that carries the TPID; 802.1ad only with a VLAN.
            proto = target["proto"] if target["vlan"] else ETH_P_8021Q
            spec["vlan"] = [{"vlan": target["vlan"], "qos": target["qos"], "proto": proto}]
        elif op == "rate":
            spec["rate"] = {"min_tx_rate": target["min_tx_rate"], "max_tx_rate": target["max_tx_rate"]}
        elif op in ("spoofchk", "trust"):
            spec[op] = int(bool(target[op]))
        elif op == "link_state":
            spec["link_state"] = int(target["link_state"])
        else:
            raise ValueError(op)
    return spec


def ext_mask(with_stats: bool) -> int:
    """RTEXT_FILTER_VF, and skip the per-VF counters unless they are wanted (they cost a driver call per VF)."""
    return RTEXT_FILTER_VF | (0 if with_stats else RTEXT_FILTER_SKIP_STATS)


# ---- events -------------------------------------------------------------------------------------
class Monitor:
    """A plain rtnetlink socket subscribed to link events, read on the daemon's loop (add_reader).

    Only the header is decoded (type, ifindex, flags, name): an event just says "look at this PF
    again"; the look itself is a full read (Rtnl.get_link).
    """

    def __init__(self, sock: socket.socket | None = None):
        if sock is None:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC,
                                 socket.NETLINK_ROUTE)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            sock.bind((0, RTMGRP_LINK))
        self.sock = sock
        self._pending = select.poll()      # read() runs before every read of a PF, mostly with nothing
        self._pending.register(sock.fileno(), select.POLLIN)   # pending: poll(0) costs less than EAGAIN

    def fileno(self) -> int:
        return self.sock.fileno()

    def read(self) -> tuple[list[tuple[int, int, int, str]], bool]:
        """All pending events as (type, ifindex, flags, ifname), and whether some were lost (ENOBUFS,
        which poll reports as an error on the socket)."""
        events: list[tuple[int, int, int, str]] = []
        lost = False
        while self._pending.poll(0):
            try:
                data = self.sock.recv(1 << 16)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    lost = True
                    continue
                raise
            if not data:
                break
            events.extend(parse_link_events(data))
        return events, lost

    def close(self) -> None:
        self.sock.close()


def parse_link_events(data: bytes) -> list[tuple[int, int, int, str]]:
    out = []
    off = 0
    while off + 16 <= len(data):
        length, mtype = struct.unpack_from("=IH", data, off)
        if length < 16 or off + length > len(data):
            break
        if mtype in (RTM_NEWLINK, RTM_DELLINK) and length >= 32:
            _fam, _pad, _type, index, flags, _change = struct.unpack_from("=BBHiII", data, off + 16)
            name = ""
            a = off + 32
            end = off + length
            while a + 4 <= end:
                alen, atype = struct.unpack_from("=HH", data, a)
                if alen < 4:
                    break
                if atype & 0x3FFF == IFLA_IFNAME:
                    name = data[a + 4:a + alen].split(b"\0", 1)[0].decode(errors="replace")
                    break
                a += (alen + 3) & ~3
            out.append((mtype, index, flags, name))
        off += (length + 3) & ~3
    return out


def is_enodev(exc: BaseException) -> bool:
    return isinstance(exc, NetlinkError) and exc.code in (errno.ENODEV, errno.ENOENT)


def strerror(code: int) -> str:
    try:
        return os.strerror(code)
    except ValueError:
        return f"error {code}"
