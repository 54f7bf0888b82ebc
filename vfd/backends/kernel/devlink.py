"""devlink over generic netlink: eswitch mode, VF representor ports, rate leaves and nodes.

What `devlink dev eswitch`, `devlink port show` and `devlink port function rate` do, as messages
built and decoded by pyroute2's genetlink classes (`genlmsg`) and sent on a plain socket
(nlsock.py). pyroute2 0.9's own devlink class stops at DEVLINK_ATTR_PORT_SPLITTABLE and has no
rate commands, so `devlinkmsg` names the attributes vfd uses with the kernel's numbers
(include/uapi/linux/devlink.h; checked against Debian's 6.1 headers).

Rates: devlink counts bytes per second (u64); vfd counts Mb/s, so 1 Mb/s = 125000 B/s
(`devlink ... tx_max 100mbit` sends 12500000).

Per-TC bandwidth on a rate object (`tc-bw`, DEVLINK_ATTR_RATE_TC_BWS) arrived in Linux 6.17
(commit 566e8f108fc7 "devlink: Extend devlink rate API with traffic classes bandwidth
management", with the nested index/bw set of 1bbdb81a9836). `tc_bw_supported()` reads the
devlink family's maxattr: a kernel whose policy stops before attribute 180 does not have it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from pyroute2.netlink import NLA_F_NESTED, genlmsg, nla
from pyroute2.netlink.generic import ctrlmsg

from vfd.backends.kernel.nlsock import NETLINK_GENERIC, NLM_F_DUMP, NlSocket

GENL_ID_CTRL = 0x10
CTRL_CMD_GETFAMILY = 3

CMD_PORT_GET = 5
CMD_ESWITCH_GET = 29
CMD_ESWITCH_SET = 30
CMD_RATE_GET = 74
CMD_RATE_SET = 75
CMD_RATE_NEW = 76
CMD_RATE_DEL = 77

ATTR_BUS_NAME = 1
ATTR_DEV_NAME = 2
ATTR_PORT_INDEX = 3
ATTR_ESWITCH_MODE = 25
ATTR_RATE_TC_BWS = 180           # Linux 6.17
ESWITCH_MODES = {0: "legacy", 1: "switchdev"}
ESWITCH_MODE_ID = {v: k for k, v in ESWITCH_MODES.items()}
FLAVOUR_PHYSICAL = 0
FLAVOUR_PCI_PF = 3
FLAVOUR_PCI_VF = 4
RATE_TYPE_LEAF = 0
RATE_TYPE_NODE = 1
BYTES_PER_MBIT = 125000
TC_BW_KERNEL = "6.17"
MAX_TCS = 8


class devlinkmsg(genlmsg):
    """The devlink attributes vfd sends and reads, with the kernel's attribute numbers."""
    prefix = "DEVLINK_ATTR_"
    nla_map = (
        (1, "DEVLINK_ATTR_BUS_NAME", "asciiz"),
        (2, "DEVLINK_ATTR_DEV_NAME", "asciiz"),
        (3, "DEVLINK_ATTR_PORT_INDEX", "uint32"),
        (4, "DEVLINK_ATTR_PORT_TYPE", "uint16"),
        (6, "DEVLINK_ATTR_PORT_NETDEV_IFINDEX", "uint32"),
        (7, "DEVLINK_ATTR_PORT_NETDEV_NAME", "asciiz"),
        (25, "DEVLINK_ATTR_ESWITCH_MODE", "uint16"),
        (77, "DEVLINK_ATTR_PORT_FLAVOUR", "uint16"),
        (78, "DEVLINK_ATTR_PORT_NUMBER", "uint32"),
        (127, "DEVLINK_ATTR_PORT_PCI_PF_NUMBER", "uint16"),
        (128, "DEVLINK_ATTR_PORT_PCI_VF_NUMBER", "uint16"),
        (165, "DEVLINK_ATTR_RATE_TYPE", "uint16"),
        (166, "DEVLINK_ATTR_RATE_TX_SHARE", "uint64"),
        (167, "DEVLINK_ATTR_RATE_TX_MAX", "uint64"),
        (168, "DEVLINK_ATTR_RATE_NODE_NAME", "asciiz"),
        (169, "DEVLINK_ATTR_RATE_PARENT_NODE_NAME", "asciiz"),
        (180, "DEVLINK_ATTR_RATE_TC_BWS", "tc_bw"),
    )

    class tc_bw(nla):
        """One `index:share` pair of tc-bw (enum devlink_rate_tc_attr)."""
        nla_flags = NLA_F_NESTED
        prefix = "DEVLINK_RATE_TC_ATTR_"
        nla_map = (
            (1, "DEVLINK_RATE_TC_ATTR_INDEX", "uint8"),
            (2, "DEVLINK_RATE_TC_ATTR_BW", "uint32"),
        )


@dataclass(frozen=True)
class Handle:
    """A devlink instance: `bus/dev` (pci/0000:3b:00.0, netdevsim/netdevsim1)."""
    bus: str
    dev: str

    def __str__(self) -> str:
        return f"{self.bus}/{self.dev}"


@dataclass
class Port:
    handle: Handle
    index: int
    flavour: int | None
    netdev: str | None
    ifindex: int | None
    pfnum: int | None = None
    vfnum: int | None = None


@dataclass
class Rate:
    """A rate leaf (port index) or node (name): tx_share / tx_max in Mb/s, its parent node."""
    tx_share: int = 0
    tx_max: int = 0
    parent: str | None = None
    tc_bw: dict[int, int] = field(default_factory=dict)


def mbit_to_bytes(mbps: int) -> int:
    return int(mbps) * BYTES_PER_MBIT


def bytes_to_mbit(bps: int) -> int:
    return int(bps) // BYTES_PER_MBIT


class Devlink:
    """devlink requests for the kernel backend (one generic netlink socket)."""

    def __init__(self, sock: NlSocket | None = None):
        self.nl = sock or NlSocket(NETLINK_GENERIC)
        self._family: tuple[int, int] | None = None

    # ---- family ------------------------------------------------------------------------------
    def family(self) -> tuple[int, int]:
        """(generic netlink id, maxattr) of the devlink family."""
        if self._family is None:
            def build(seq: int, flags: int) -> bytes:
                m = ctrlmsg()
                m["cmd"] = CTRL_CMD_GETFAMILY
                m["version"] = 1
                m["attrs"] = [("CTRL_ATTR_FAMILY_NAME", "devlink")]
                return _encode(m, GENL_ID_CTRL, seq, flags)
            answer = self.nl.request(build, 0)
            m = ctrlmsg(answer[0])
            m.decode()
            self._family = (m.get_attr("CTRL_ATTR_FAMILY_ID"), m.get_attr("CTRL_ATTR_MAXATTR"))
        return self._family

    def tc_bw_supported(self) -> bool:
        """Does this kernel's devlink know per-TC bandwidth on rate objects (Linux 6.17)?"""
        return self.family()[1] >= ATTR_RATE_TC_BWS

    def _do(self, cmd: int, attrs: list, flags: int = 0) -> list[devlinkmsg]:
        family = self.family()[0]

        def build(seq: int, fl: int) -> bytes:
            m = devlinkmsg()
            m["cmd"] = cmd
            m["version"] = 1
            m["attrs"] = attrs
            return _encode(m, family, seq, fl)
        out = []
        for raw in self.nl.request(build, flags):
            m = devlinkmsg(raw)
            m.decode()
            out.append(m)
        return out

    # ---- eswitch -----------------------------------------------------------------------------
    def eswitch_mode(self, h: Handle) -> str:
        (m,) = self._do(CMD_ESWITCH_GET, _dev(h))
        mode = m.get_attr("DEVLINK_ATTR_ESWITCH_MODE")
        return ESWITCH_MODES.get(mode, str(mode))

    def set_eswitch_mode(self, h: Handle, mode: str) -> None:
        self._do(CMD_ESWITCH_SET, _dev(h) + [("DEVLINK_ATTR_ESWITCH_MODE", ESWITCH_MODE_ID[mode])])

    # ---- ports -------------------------------------------------------------------------------
    def ports(self, h: Handle | None = None) -> list[Port]:
        out = []
        for m in self._do(CMD_PORT_GET, [], NLM_F_DUMP):
            ph = Handle(m.get_attr("DEVLINK_ATTR_BUS_NAME"), m.get_attr("DEVLINK_ATTR_DEV_NAME"))
            if h is not None and ph != h:
                continue
            out.append(Port(handle=ph, index=m.get_attr("DEVLINK_ATTR_PORT_INDEX"),
                            flavour=m.get_attr("DEVLINK_ATTR_PORT_FLAVOUR"),
                            netdev=m.get_attr("DEVLINK_ATTR_PORT_NETDEV_NAME"),
                            ifindex=m.get_attr("DEVLINK_ATTR_PORT_NETDEV_IFINDEX"),
                            pfnum=m.get_attr("DEVLINK_ATTR_PORT_PCI_PF_NUMBER"),
                            vfnum=m.get_attr("DEVLINK_ATTR_PORT_PCI_VF_NUMBER")))
        return out

    def handle_of(self, ifname: str) -> Handle | None:
        """The devlink instance whose port carries netdev `ifname` (the PF's uplink port)."""
        for p in self.ports():
            if p.netdev == ifname:
                return p.handle
        return None

    def representors(self, h: Handle) -> dict[int, Port]:
        """VF number -> its representor port (flavour pcivf)."""
        return {p.vfnum: p for p in self.ports(h) if p.flavour == FLAVOUR_PCI_VF and p.vfnum is not None}

    # ---- rates -------------------------------------------------------------------------------
    def rates(self, h: Handle) -> tuple[dict[int, Rate], dict[str, Rate]]:
        """(leaves by port index, nodes by name), as `devlink port function rate show` lists them."""
        leaves: dict[int, Rate] = {}
        nodes: dict[str, Rate] = {}
        for m in self._do(CMD_RATE_GET, [], NLM_F_DUMP):
            if Handle(m.get_attr("DEVLINK_ATTR_BUS_NAME"), m.get_attr("DEVLINK_ATTR_DEV_NAME")) != h:
                continue
            r = Rate(tx_share=bytes_to_mbit(m.get_attr("DEVLINK_ATTR_RATE_TX_SHARE") or 0),
                     tx_max=bytes_to_mbit(m.get_attr("DEVLINK_ATTR_RATE_TX_MAX") or 0),
                     parent=m.get_attr("DEVLINK_ATTR_RATE_PARENT_NODE_NAME") or None,
                     tc_bw={e.get_attr("DEVLINK_RATE_TC_ATTR_INDEX"): e.get_attr("DEVLINK_RATE_TC_ATTR_BW")
                            for e in m.get_attrs("DEVLINK_ATTR_RATE_TC_BWS")})
            if m.get_attr("DEVLINK_ATTR_RATE_TYPE") == RATE_TYPE_NODE:
                nodes[m.get_attr("DEVLINK_ATTR_RATE_NODE_NAME")] = r
            else:
                leaves[m.get_attr("DEVLINK_ATTR_PORT_INDEX")] = r
        return leaves, nodes

    @staticmethod
    def _rate_attrs(rate: Rate, with_parent: bool = False) -> list:
        attrs = [("DEVLINK_ATTR_RATE_TX_SHARE", mbit_to_bytes(rate.tx_share)),
                 ("DEVLINK_ATTR_RATE_TX_MAX", mbit_to_bytes(rate.tx_max))]
        if with_parent:
            # An empty parent name is "noparent" (what `devlink ... noparent` sends).
            attrs.append(("DEVLINK_ATTR_RATE_PARENT_NODE_NAME", rate.parent or ""))
        if rate.tc_bw:
            attrs += [("DEVLINK_ATTR_RATE_TC_BWS", {"attrs": [("DEVLINK_RATE_TC_ATTR_INDEX", tc),
                                                              ("DEVLINK_RATE_TC_ATTR_BW", rate.tc_bw.get(tc, 0))]})
                      for tc in range(MAX_TCS)]
        return attrs

    def set_leaf(self, h: Handle, port_index: int, rate: Rate, current_parent: str | None = None) -> None:
        """`devlink port function rate set DEV/PORT tx_share S tx_max M [parent P|noparent]`.

        The parent is sent only when it changes: the kernel answers EBUSY ("Rate object already has
        parent") to a parent for an object that has one, even the same one, so moving a leaf from
        one node to another is `noparent` first, then the new parent.
        """
        port = _dev(h) + [("DEVLINK_ATTR_PORT_INDEX", port_index)]
        if rate.parent == current_parent:
            self._do(CMD_RATE_SET, port + self._rate_attrs(rate))
            return
        if current_parent and rate.parent:
            self._do(CMD_RATE_SET, port + [("DEVLINK_ATTR_RATE_PARENT_NODE_NAME", "")])
        self._do(CMD_RATE_SET, port + self._rate_attrs(rate, with_parent=True))

    def new_node(self, h: Handle, name: str, rate: Rate) -> None:
        """`devlink port function rate add DEV/NAME tx_share S tx_max M` (nodes have no parent here)."""
        self._do(CMD_RATE_NEW, _dev(h) + [("DEVLINK_ATTR_RATE_NODE_NAME", name)] + self._rate_attrs(rate))

    def set_node(self, h: Handle, name: str, rate: Rate) -> None:
        self._do(CMD_RATE_SET, _dev(h) + [("DEVLINK_ATTR_RATE_NODE_NAME", name)] + self._rate_attrs(rate))

    def del_node(self, h: Handle, name: str) -> None:
        self._do(CMD_RATE_DEL, _dev(h) + [("DEVLINK_ATTR_RATE_NODE_NAME", name)])

    def close(self) -> None:
        self.nl.close()


def _dev(h: Handle) -> list:
    return [("DEVLINK_ATTR_BUS_NAME", h.bus), ("DEVLINK_ATTR_DEV_NAME", h.dev)]


def _encode(m, mtype: int, seq: int, flags: int) -> bytes:
    m["header"]["type"] = mtype
    m["header"]["flags"] = flags
    m["header"]["sequence_number"] = seq
    m["header"]["pid"] = 0
    m.encode()
    return bytes(m.data[:m["header"]["length"]])


def kernel_release() -> str:
    return os.uname().release

