"""The PF's traffic classes through dcbnl (what `dcb ets` and `dcb maxrate` set), IEEE 802.1Qaz mode.

The main config's `tclasses` become one `struct ieee_ets` and one `struct ieee_maxrate`
(include/uapi/linux/dcbnl.h), sent as RTM_SETDCB / DCB_CMD_IEEE_SET on a plain rtnetlink socket:

- TC count: 8 when some `pri` is above 3, else 4 (the original VFd's rule); a TC in that range
  without a `tclasses` entry gets the defaults (`min_bw` 1, not strict).
- `lsp: true` -> the TC's TSA is strict priority (`tc_tsa` 0) with 0 % ETS share; otherwise ETS
  (`tc_tsa` 2) with `min_bw` as its share, the ETS shares scaled to total exactly 100 with the
  same rule the per-VF shares use (vfd.policy.qos: scale, truncate, add 1 in order) because
  drivers refuse ETS shares that do not add up to 100 (mlx5: "BW sum is illegal").
- `max_bw` below 100 -> `tc_maxrate` = link speed x max_bw / 100, in Kb/s (the unit of
  ieee_maxrate), as the original's mlx5 path did with mlnx_qos.
- PCP -> TC (`prio_tc`; in 802.1Qaz a tagged frame's priority is its PCP): 8 TCs map PCP p to TC p;
  4 TCs map PCP pairs {0,1}->0, {2,3}->1, {4,5}->2, {6,7}->3 (the original's QoS design).
- `bsp` and `llatency` have no dcbnl counterpart and are not sent (docs/qos.md).

The DCBX mode is set to host-managed IEEE first (DCB_CMD_SDCBX, `dcb dcbx set host ieee`).
dcbnl answers a driver's refusal in a status attribute of the reply, not as a netlink error: that
becomes `DcbError`. A driver without dcbnl ops (netdevsim, igb, ...) gets a netlink EOPNOTSUPP.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

from pyroute2.netlink import NLA_F_NESTED, nla, nlmsg

from vfd.backends.kernel.nlsock import NlSocket
from vfd.policy.qos import normalise_shares

RTM_GETDCB = 78
RTM_SETDCB = 79
DCB_CMD_IEEE_SET = 20
DCB_CMD_IEEE_GET = 21
DCB_CMD_SDCBX = 23
DCB_ATTR_IFNAME = 1
DCB_ATTR_IEEE = 13
DCB_ATTR_DCBX = 14
DCB_ATTR_IEEE_ETS = 1
DCB_ATTR_IEEE_MAXRATE = 7
DCB_CAP_DCBX_HOST = 0x01
DCB_CAP_DCBX_VER_IEEE = 0x08
TSA_STRICT = 0
TSA_ETS = 2
MAX_TCS = 8
ETS_SIZE = 59          # sizeof(struct ieee_ets)
MAXRATE_SIZE = 64      # sizeof(struct ieee_maxrate)


class DcbError(Exception):
    def __init__(self, op: str, code: int):
        self.op, self.code = op, code
        super().__init__(f"{op}: status {code}")


@dataclass(frozen=True)
class Ets:
    """struct ieee_ets, the fields vfd sets (the rest are zero)."""
    tc_tx_bw: tuple[int, ...]
    tc_tsa: tuple[int, ...]
    prio_tc: tuple[int, ...]

    def pack(self) -> bytes:
        zero = bytes(MAX_TCS)
        return struct.pack("=BBB", 0, 0, 0) + bytes(self.tc_tx_bw) + bytes(self.tc_tx_bw) + bytes(self.tc_tsa) \
            + bytes(self.prio_tc) + zero + zero + zero

    @classmethod
    def unpack(cls, raw: bytes) -> "Ets":
        b = raw[3:]
        return cls(tc_tx_bw=tuple(b[0:8]), tc_tsa=tuple(b[16:24]), prio_tc=tuple(b[24:32]))


@dataclass(frozen=True)
class DcbPlan:
    ets: Ets
    maxrate_kbps: tuple[int, ...]

    def describe(self) -> str:
        tcs = []
        for tc in range(MAX_TCS):
            if self.ets.tc_tsa[tc] == TSA_STRICT and tc in self.ets.prio_tc:
                tcs.append(f"tc{tc} strict")
            elif self.ets.tc_tx_bw[tc]:
                tcs.append(f"tc{tc} ets {self.ets.tc_tx_bw[tc]}%")
        return ", ".join(tcs) + "; prio-tc " + " ".join(f"{p}:{tc}" for p, tc in enumerate(self.ets.prio_tc))


def tc_count(tclasses: list[dict]) -> int:
    return 8 if any(t["pri"] > 3 for t in tclasses) else 4


def plan(tclasses: list[dict], link_speed_mbps: int) -> DcbPlan:
    """The ETS and max-rate structures for the PF's traffic classes (dicts as the manager passes them)."""
    n = tc_count(tclasses)
    by_tc = {t["pri"]: t for t in tclasses}
    classes = [by_tc.get(tc, {"pri": tc, "min_bw": 1, "max_bw": 100, "lsp": False}) for tc in range(n)]
    ets_tcs = [t["pri"] for t in classes if not t.get("lsp")]
    shares = normalise_shares({tc: {0: by_tc.get(tc, {"min_bw": 1})["min_bw"]} for tc in ets_tcs}, [0])
    bw = [0] * MAX_TCS
    tsa = [TSA_ETS] * MAX_TCS
    for t in classes:
        if t.get("lsp"):
            tsa[t["pri"]] = TSA_STRICT
        else:
            bw[t["pri"]] = shares[t["pri"]][0]
    prio_tc = tuple(range(8)) if n == 8 else tuple(p // 2 for p in range(8))
    maxrate = [0] * MAX_TCS
    for t in classes:
        if t.get("max_bw", 100) < 100 and link_speed_mbps:
            maxrate[t["pri"]] = link_speed_mbps * 1000 * t["max_bw"] // 100
    return DcbPlan(Ets(tuple(bw), tuple(tsa), prio_tc), tuple(maxrate))


class dcbmsg(nlmsg):
    """struct dcbmsg + the dcbnl attributes vfd uses (kernel numbers, net/dcb/dcbnl.c)."""
    fields = (("family", "B"), ("cmd", "B"), ("pad", "H"))
    nla_map = (
        (DCB_ATTR_IFNAME, "DCB_ATTR_IFNAME", "asciiz"),
        (DCB_ATTR_IEEE, "DCB_ATTR_IEEE", "ieee"),
        (DCB_ATTR_DCBX, "DCB_ATTR_DCBX", "uint8"),
    )

    class ieee(nla):
        nla_flags = NLA_F_NESTED
        nla_map = (
            (DCB_ATTR_IEEE_ETS, "DCB_ATTR_IEEE_ETS", "cdata"),
            (DCB_ATTR_IEEE_MAXRATE, "DCB_ATTR_IEEE_MAXRATE", "cdata"),
        )


class Dcb:
    """dcbnl requests for one PF netdev at a time."""

    def __init__(self, sock: NlSocket | None = None):
        self.nl = sock or NlSocket(socket.NETLINK_ROUTE)

    def _request(self, mtype: int, cmd: int, attrs: list) -> list[bytes]:
        def build(seq: int, flags: int) -> bytes:
            m = dcbmsg()
            m["header"]["type"] = mtype
            m["header"]["flags"] = flags
            m["header"]["sequence_number"] = seq
            m["family"] = socket.AF_UNSPEC
            m["cmd"] = cmd
            m["attrs"] = attrs
            m.encode()
            return bytes(m.data[:m["header"]["length"]])
        return self.nl.request(build, 0)

    def _status(self, op: str, answers: list[bytes], attr: int) -> None:
        """dcbnl's SET replies carry the driver's result as a u8 attribute ((u8)-errno)."""
        for raw in answers:
            off = 20
            while off + 4 <= len(raw):
                length, atype = struct.unpack_from("=HH", raw, off)
                if length < 4:
                    break
                if atype & 0x3FFF == attr and length == 5 and raw[off + 4]:
                    code = raw[off + 4]
                    raise DcbError(op, 256 - code if code > 127 else code)
                off += (length + 3) & ~3

    def apply(self, ifname: str, p: DcbPlan) -> None:
        """`dcb dcbx set dev IF host ieee`, then ETS and max-rate in one DCB_CMD_IEEE_SET."""
        # setdcbx returns 0 on success, 1 when the mode is refused (not an errno)
        self._status("set DCBX mode host/IEEE", self._request(
            RTM_SETDCB, DCB_CMD_SDCBX, [("DCB_ATTR_IFNAME", ifname),
                                        ("DCB_ATTR_DCBX", DCB_CAP_DCBX_HOST | DCB_CAP_DCBX_VER_IEEE)]), DCB_ATTR_DCBX)
        ieee = {"attrs": [("DCB_ATTR_IEEE_ETS", p.ets.pack()),
                          ("DCB_ATTR_IEEE_MAXRATE", struct.pack("=8Q", *p.maxrate_kbps))]}
        self._status("set IEEE ETS/maxrate", self._request(
            RTM_SETDCB, DCB_CMD_IEEE_SET, [("DCB_ATTR_IFNAME", ifname), ("DCB_ATTR_IEEE", ieee)]), DCB_ATTR_IEEE)

    def read_ets(self, ifname: str) -> Ets | None:
        """The ETS the driver reports (DCB_CMD_IEEE_GET); None when it reports none."""
        for raw in self._request(RTM_GETDCB, DCB_CMD_IEEE_GET, [("DCB_ATTR_IFNAME", ifname)]):
            m = dcbmsg(raw)
            m.decode()
            ieee = m.get_attr("DCB_ATTR_IEEE")
            if ieee is not None and not isinstance(ieee, int):
                raw = ieee.get_attr("DCB_ATTR_IEEE_ETS")
                if raw:
                    return Ets.unpack(bytes(raw))
        return None

    def close(self) -> None:
        self.nl.close()


__all__ = ["Dcb", "DcbError", "DcbPlan", "Ets", "plan", "tc_count"]
