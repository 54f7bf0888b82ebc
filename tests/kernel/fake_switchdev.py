"""Fakes of the kernel's end of the switchdev sockets (generic netlink devlink; rtnetlink tc).

They stand where `vfd.backends.kernel.nlsock.NlSocket` stands (`request(build, flags)`): the
request bytes are parsed here with `struct`, not with pyroute2, against the kernel's attribute
numbers and payload sizes (include/uapi/linux/devlink.h, net/devlink policy: strings NUL
terminated, u16/u32/u64 of exactly their size, nested tc-bw entries flagged NLA_F_NESTED), and
the answers are encoded here too, so vfd's encoder and decoder are checked against the layout,
not against themselves.
"""

from __future__ import annotations

import errno
import struct

from pyroute2.netlink.exceptions import NetlinkError

DEVLINK_FAMILY = 0x1A
NLA_F_NESTED = 0x8000
NLM_F_DUMP = 0x300
NLM_F_MULTI = 2

# devlink attribute -> (name, kind) as the kernel's policy checks them.
DL_POLICY = {1: ("bus", "str"), 2: ("dev", "str"), 3: ("port", "u32"), 25: ("eswitch_mode", "u16"),
             165: ("rate_type", "u16"), 166: ("tx_share", "u64"), 167: ("tx_max", "u64"),
             168: ("node", "str"), 169: ("parent", "str"), 180: ("tc_bws", "nest")}
SIZES = {"u8": 1, "u16": 2, "u32": 4, "u64": 8}
FMT = {"u8": "=B", "u16": "=H", "u32": "=I", "u64": "=Q"}


def walk(data: bytes, off: int = 0):
    while off + 4 <= len(data):
        length, typ = struct.unpack_from("=HH", data, off)
        assert length >= 4, "attribute shorter than its header"
        yield typ, data[off + 4:off + length]
        off += (length + 3) & ~3


def attr(typ: int, payload: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(payload), typ) + payload
    return raw + b"\0" * (-len(raw) & 3)


def s(typ: int, text: str) -> bytes:
    return attr(typ, text.encode() + b"\0")


def u(typ: int, kind: str, value: int) -> bytes:
    return attr(typ, struct.pack(FMT[kind], value))


def decode_checked(payload: bytes, policy: dict) -> dict:
    """Attributes by name, each checked against the kernel's size rules; multi-attrs as lists."""
    out: dict = {}
    for typ, val in walk(payload):
        nested = bool(typ & NLA_F_NESTED)
        typ &= 0x3FFF
        assert typ in policy, f"attribute {typ} is not one the kernel expects here"
        name, kind = policy[typ]
        if kind == "str":
            assert val.endswith(b"\0"), f"{name}: string not NUL terminated"
            out[name] = val[:-1].decode()
        elif kind == "nest":
            assert nested, f"{name}: nested attribute without NLA_F_NESTED"
            entry = {}
            for t2, v2 in walk(val):
                if t2 == 1:
                    assert len(v2) == 1, "tc index must be u8"
                    entry["index"] = v2[0]
                elif t2 == 2:
                    assert len(v2) == 4, "tc bw must be u32"
                    entry["bw"] = struct.unpack("=I", v2)[0]
                else:
                    raise AssertionError(f"unknown tc-bw attribute {t2}")
            out.setdefault(name, []).append(entry)
        else:
            assert len(val) == SIZES[kind], f"{name}: {len(val)} bytes where the kernel wants {SIZES[kind]}"
            out[name] = struct.unpack(FMT[kind], val)[0]
    return out


class FakeDevlink:
    """One devlink instance with a physical port and `vfs` VF representor ports (netdevsim-like)."""

    def __init__(self, bus="netdevsim", dev="netdevsim1", pf="eth0", vfs=4, maxattr=176, mode="legacy"):
        self.bus, self.dev, self.pf, self.vfs = bus, dev, pf, vfs
        self.maxattr = maxattr
        self.mode = mode
        self.leaves: dict[int, dict] = {}
        self.nodes: dict[str, dict] = {}
        self.requests: list[dict] = []      # decoded requests, for assertions
        self.fail: dict[int, int] = {}      # cmd -> errno

    def ports(self):
        yield {"port": 0, "flavour": 0, "netdev": self.pf, "ifindex": 2}
        if self.mode == "switchdev":
            for vf in range(self.vfs):
                yield {"port": 128 + vf, "flavour": 4, "netdev": f"{self.pf}_{vf}", "ifindex": 10 + vf, "vf": vf}

    # ---- the socket interface ----------------------------------------------------------------
    def request(self, build, flags):
        raw = build(1, flags)
        length, mtype, mflags, seq, _ = struct.unpack_from("=IHHII", raw, 0)
        assert length == len(raw), "nlmsg_len does not match the message"
        cmd, version, _ = struct.unpack_from("=BBH", raw, 16)
        if mtype == 0x10:                      # nlctrl GETFAMILY
            req = {t: v for t, v in walk(raw[20:])}
            assert req[2] == b"devlink\0", "family name attribute (CTRL_ATTR_FAMILY_NAME = 2)"
            return [self._msg(cmd, u(1, "u16", DEVLINK_FAMILY) + s(2, "devlink") + u(5, "u32", self.maxattr))]
        assert mtype == DEVLINK_FAMILY, f"message type {mtype} is not the devlink family"
        req = decode_checked(raw[20:], DL_POLICY)
        req["cmd"] = cmd
        self.requests.append(req)
        if cmd in self.fail:
            raise NetlinkError(self.fail[cmd])
        dump = (mflags & NLM_F_DUMP) == NLM_F_DUMP
        handler = getattr(self, f"cmd_{cmd}")
        return handler(req, dump)

    def _msg(self, cmd: int, attrs: bytes, multi=False) -> bytes:
        body = struct.pack("=BBH", cmd, 1, 0) + attrs
        return struct.pack("=IHHII", 16 + len(body), DEVLINK_FAMILY, NLM_F_MULTI if multi else 0, 1, 0) + body

    def _dev(self) -> bytes:
        return s(1, self.bus) + s(2, self.dev)

    def _check_dev(self, req):
        if (req.get("bus"), req.get("dev")) != (self.bus, self.dev):
            raise NetlinkError(errno.ENODEV)

    def cmd_5(self, req, dump):              # PORT_GET
        out = []
        for p in self.ports():
            a = self._dev() + u(3, "u32", p["port"]) + u(77, "u16", p["flavour"]) + s(7, p["netdev"]) \
                + u(6, "u32", p["ifindex"]) + u(127, "u16", 0)
            if "vf" in p:
                a += u(128, "u16", p["vf"])
            out.append(self._msg(3, a, multi=True))
        return out

    def cmd_29(self, req, dump):             # ESWITCH_GET
        self._check_dev(req)
        return [self._msg(29, self._dev() + u(25, "u16", {"legacy": 0, "switchdev": 1}[self.mode]))]

    def cmd_30(self, req, dump):             # ESWITCH_SET
        self._check_dev(req)
        self.mode = {0: "legacy", 1: "switchdev"}[req["eswitch_mode"]]
        if self.mode == "legacy":
            self.leaves.clear()
        return []

    def _apply_rate(self, obj: dict, req):
        for k in ("tx_share", "tx_max"):
            if k in req:
                obj[k] = req[k]
        if "parent" in req:
            if req["parent"] and req["parent"] not in self.nodes:
                raise NetlinkError(errno.ENODEV)
            if req["parent"] and obj.get("parent"):
                raise NetlinkError(errno.EBUSY)     # "Rate object already has parent." (even the same one)
            obj["parent"] = req["parent"] or None
        if "tc_bws" in req:
            if self.maxattr < 180:
                raise NetlinkError(errno.EINVAL)
            obj["tc_bw"] = {e["index"]: e["bw"] for e in req["tc_bws"]}

    def cmd_75(self, req, dump):             # RATE_SET
        self._check_dev(req)
        if "port" in req:
            if self.mode != "switchdev" or not 128 <= req["port"] < 128 + self.vfs:
                raise NetlinkError(errno.ENODEV)
            self._apply_rate(self.leaves.setdefault(req["port"], {}), req)
        else:
            if req["node"] not in self.nodes:
                raise NetlinkError(errno.ENODEV)
            self._apply_rate(self.nodes[req["node"]], req)
        return []

    def cmd_76(self, req, dump):             # RATE_NEW
        self._check_dev(req)
        if req["node"] in self.nodes:
            raise NetlinkError(errno.EEXIST)
        self.nodes[req["node"]] = {}
        self._apply_rate(self.nodes[req["node"]], req)
        return []

    def cmd_77(self, req, dump):             # RATE_DEL
        self._check_dev(req)
        if req["node"] not in self.nodes:
            raise NetlinkError(errno.ENODEV)
        if any(r.get("parent") == req["node"] for r in list(self.leaves.values()) + list(self.nodes.values())):
            raise NetlinkError(errno.EBUSY)
        del self.nodes[req["node"]]
        return []

    def cmd_74(self, req, dump):             # RATE_GET
        out = []
        if self.mode != "switchdev":
            return out
        for vf in range(self.vfs):
            r = self.leaves.get(128 + vf, {})
            out.append(self._msg(74, self._dev() + u(3, "u32", 128 + vf) + self._rate(r, 0), multi=True))
        for name, r in self.nodes.items():
            out.append(self._msg(74, self._dev() + s(168, name) + self._rate(r, 1), multi=True))
        return out

    @staticmethod
    def _rate(r: dict, typ: int) -> bytes:
        a = u(165, "u16", typ) + u(166, "u64", r.get("tx_share", 0)) + u(167, "u64", r.get("tx_max", 0))
        if r.get("parent"):
            a += s(169, r["parent"])
        return a

    def close(self):
        pass


# ================================================================================ tc ==========
TC_PARENTS = {0xFFFFFFF2: "ingress", 0xFFFFFFF3: "egress"}
TC_MIRRED_SIZE = 28          # sizeof(struct tc_mirred)


class FakeTc:
    """The kernel's tc side for clsact qdiscs and matchall/mirred filters on a few netdevs."""

    def __init__(self, ifindexes=(10, 11, 12, 13)):
        self.devs = set(ifindexes)
        self.clsact: set[int] = set()
        # (ifindex, hook, pref) -> {"kind", "handle", "actions": [(kind, eaction, action, ifindex)]}
        self.filters: dict[tuple[int, str, int], dict] = {}
        self.requests: list[dict] = []

    def request(self, build, flags):
        raw = build(1, flags)
        length, mtype, mflags, _seq, _ = struct.unpack_from("=IHHII", raw, 0)
        assert length == len(raw)
        family, _p1, _p2, ifindex, handle, parent, info = struct.unpack_from("=BBHiIII", raw, 16)
        attrs = {t & 0x3FFF: v for t, v in walk(raw[36:])}
        kind = attrs[1][:-1].decode() if 1 in attrs else None
        if 1 in attrs:
            assert attrs[1].endswith(b"\0"), "TCA_KIND not NUL terminated"
        req = {"type": mtype, "ifindex": ifindex, "handle": handle, "parent": parent,
               "pref": info >> 16, "proto": struct.unpack(">H", struct.pack("=H", info & 0xFFFF))[0],
               "kind": kind, "flags": mflags}
        self.requests.append(req)
        if ifindex not in self.devs:
            raise NetlinkError(errno.ENODEV)
        if mtype == 36:                                   # RTM_NEWQDISC
            assert (kind, parent, handle) == ("clsact", 0xFFFFFFF1, 0xFFFF0000), "clsact qdisc layout"
            if ifindex in self.clsact:
                raise NetlinkError(errno.EEXIST)
            self.clsact.add(ifindex)
            return []
        if mtype in (44, 45, 46) and ifindex not in self.clsact:
            raise NetlinkError(errno.EINVAL)              # no clsact: no such block
        hook = TC_PARENTS.get(parent)
        assert hook, f"parent {parent:#x} is not clsact ingress/egress"
        if mtype == 44:                                   # RTM_NEWTFILTER
            assert kind == "matchall" and req["proto"] == 0x0003, "matchall, protocol all"
            key = (ifindex, hook, req["pref"])
            if key in self.filters:
                raise NetlinkError(errno.EEXIST)
            self.filters[key] = {"kind": kind, "handle": handle, "actions": self._actions(attrs[2])}
            req["actions"] = self.filters[key]["actions"]
            return []
        if mtype == 45:                                   # RTM_DELTFILTER
            key = (ifindex, hook, req["pref"])
            if key not in self.filters:
                raise NetlinkError(errno.ENOENT)
            del self.filters[key]
            return []
        if mtype == 46:                                   # RTM_GETTFILTER dump
            return [self._answer(ifindex, parent, pref, f) for (ix, h, pref), f in self.filters.items()
                    if ix == ifindex and h == hook]
        raise AssertionError(f"unexpected message type {mtype}")

    @staticmethod
    def _actions(options: bytes) -> list:
        acts = []
        for t, v in walk(options):
            assert t & 0x3FFF == 2, "matchall: only TCA_MATCHALL_ACT expected"
            for prio, act in walk(v):
                a = {t2 & 0x3FFF: v2 for t2, v2 in walk(act)}
                akind = a[1][:-1].decode()
                for t3, v3 in walk(a[2]):
                    if t3 & 0x3FFF == 2:
                        assert len(v3) == TC_MIRRED_SIZE, f"tc_mirred is {len(v3)} bytes, the kernel wants 28"
                        _i, _c, action, _r, _b, eaction, target = struct.unpack("=IIiiiiI", v3)
                        acts.append((akind, eaction, action, target))
        return acts

    @staticmethod
    def _answer(ifindex, parent, pref, f) -> bytes:
        acts = b""
        for n, (akind, eaction, action, target) in enumerate(f["actions"], start=1):
            parms = attr(2, struct.pack("=IIiiiiI", 0, 0, action, 1, 1, eaction, target))
            acts += attr(n | NLA_F_NESTED, s(1, akind) + attr(2 | NLA_F_NESTED, parms))
        body = struct.pack("=BBHiIII", 0, 0, 0, ifindex, f["handle"], parent, (pref << 16) | 0x0300)
        body += s(1, f["kind"]) + attr(2 | NLA_F_NESTED, attr(2 | NLA_F_NESTED, acts))
        return struct.pack("=IHHII", 16 + len(body), 44, NLM_F_MULTI, 1, 0) + body

    def close(self):
        pass


# ================================================================================ dcbnl =======
class FakeDcb:
    """The kernel's dcbnl (net/dcb/dcbnl.c) for one netdev whose driver has IEEE DCB ops, or none."""

    def __init__(self, ifname="eth0", has_ops=True, refuse_ets: int = 0):
        self.ifname, self.has_ops, self.refuse_ets = ifname, has_ops, refuse_ets
        self.dcbx = 0
        self.ets: bytes | None = None
        self.maxrate: bytes | None = None
        self.requests: list[dict] = []

    def request(self, build, flags):
        raw = build(1, flags)
        length, mtype, _f, _s, _p = struct.unpack_from("=IHHII", raw, 0)
        assert length == len(raw)
        family, cmd, _pad = struct.unpack_from("=BBH", raw, 16)
        assert family == 0
        attrs = {t & 0x3FFF: v for t, v in walk(raw[20:])}
        assert attrs[1].endswith(b"\0") and attrs[1][:-1].decode() == self.ifname, "DCB_ATTR_IFNAME"
        self.requests.append({"type": mtype, "cmd": cmd, "attrs": attrs})
        if not self.has_ops:
            raise NetlinkError(errno.EOPNOTSUPP)
        if cmd == 23:                                      # DCB_CMD_SDCBX
            assert mtype == 79 and len(attrs[14]) == 1, "DCB_ATTR_DCBX is a u8"
            self.dcbx = attrs[14][0]
            return [self._reply(79, cmd, attr(14, b"\0"))]
        if cmd == 20:                                      # DCB_CMD_IEEE_SET
            assert mtype == 79
            ieee = {t & 0x3FFF: v for t, v in walk(attrs[13])}
            assert len(ieee[1]) >= 59, "DCB_ATTR_IEEE_ETS shorter than struct ieee_ets"
            if 7 in ieee:
                assert len(ieee[7]) >= 64, "DCB_ATTR_IEEE_MAXRATE shorter than struct ieee_maxrate"
            status = 0
            if self.refuse_ets:
                status = (-self.refuse_ets) & 0xFF
            else:
                self.ets, self.maxrate = ieee[1][:59], ieee.get(7)
            return [self._reply(79, cmd, attr(13, bytes([status])))]
        if cmd == 21:                                      # DCB_CMD_IEEE_GET
            inner = attr(1, self.ets) if self.ets else b""
            return [self._reply(78, cmd, s(1, self.ifname) + attr(13 | NLA_F_NESTED, inner))]
        raise AssertionError(f"unexpected dcb cmd {cmd}")

    @staticmethod
    def _reply(mtype, cmd, attrs: bytes) -> bytes:
        body = struct.pack("=BBH", 0, cmd, 0) + attrs
        return struct.pack("=IHHII", 16 + len(body), mtype, 0, 1, 0) + body

    def close(self):
        pass
