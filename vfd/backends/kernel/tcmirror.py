"""VF mirroring in switchdev mode: tc matchall + mirred on VF representors.

A representor is the switch port of its VF, seen from the host: what the VF **sends** enters the
switch through the representor's **ingress**, what the switch delivers **to** the VF leaves
through its **egress**. vfd's mirror directions are the guest's (as in the original VFd: "in" =
frames the VF receives), so:

| direction | filter on the source VF's representor | action |
|---|---|---|
| `out` (the VF sends) | clsact ingress (`tc filter add dev REP ingress`) | `mirred egress mirror dev TARGET_REP` |
| `in` (the VF receives) | clsact egress (`tc filter add dev REP egress`) | the same |
| `all` | both | the same |

`mirred egress mirror dev TARGET_REP` transmits a copy out of the target's representor, i.e. to
the target VF. vfd's filters are `matchall` at preference `PREF` (4048) and handle 1, so they can
be told from an operator's own filters and read back with `tc filter show dev REP ingress`.
Messages are built and decoded by pyroute2's `tcmsg` (with its matchall and mirred plugins) and
sent on a plain rtnetlink socket (nlsock.py).
"""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass

from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl.tcmsg import plugins, tcmsg

from vfd.backends.kernel.nlsock import NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NlSocket

RTM_NEWQDISC = 36
RTM_GETQDISC = 38
RTM_NEWTFILTER = 44
RTM_DELTFILTER = 45
RTM_GETTFILTER = 46
TC_H_CLSACT = 0xFFFFFFF1
CLSACT_HANDLE = 0xFFFF0000
PARENT = {"ingress": 0xFFFFFFF2, "egress": 0xFFFFFFF3}     # TC_H_MIN_INGRESS / TC_H_MIN_EGRESS under clsact
ETH_P_ALL = 0x0003
PREF = 4048
HANDLE = 1
MIRRED_EGRESS_MIRROR = 2
TC_ACT_PIPE = 3

# vfd direction -> the representor hooks that carry it.
HOOKS = {"out": ("ingress",), "in": ("egress",), "all": ("ingress", "egress")}


@dataclass(frozen=True)
class MirrorRule:
    hook: str              # ingress | egress of the source representor
    target_ifindex: int


def hooks_for(direction: str | None) -> tuple[str, ...]:
    return HOOKS.get(direction or "off", ())


class TcMirror:
    """Add, remove and read vfd's mirror filters on representor netdevs (by ifindex)."""

    def __init__(self, sock: NlSocket | None = None):
        self.nl = sock or NlSocket(socket.NETLINK_ROUTE)

    @staticmethod
    def _build(mtype: int, ifindex: int, parent: int, handle: int, info: int, attrs: list):
        def build(seq: int, flags: int) -> bytes:
            m = tcmsg()
            m["header"]["type"] = mtype
            m["header"]["flags"] = flags
            m["header"]["sequence_number"] = seq
            m["family"] = socket.AF_UNSPEC
            m["index"] = ifindex
            m["handle"] = handle
            m["parent"] = parent
            m["info"] = info
            m["attrs"] = attrs
            m.encode()
            return bytes(m.data[:m["header"]["length"]])
        return build

    def ensure_clsact(self, ifindex: int) -> None:
        """`tc qdisc add dev REP clsact` unless it is there (EEXIST is fine)."""
        try:
            self.nl.request(self._build(RTM_NEWQDISC, ifindex, TC_H_CLSACT, CLSACT_HANDLE, 0,
                                        [("TCA_KIND", "clsact")]), NLM_F_CREATE | NLM_F_EXCL)
        except NetlinkError as exc:
            if exc.code != errno.EEXIST:
                raise

    def add(self, ifindex: int, hook: str, target_ifindex: int) -> None:
        """`tc filter add dev REP HOOK pref 4048 handle 1 matchall action mirred egress mirror dev T`."""
        self.ensure_clsact(ifindex)
        opts = plugins["matchall"].get_parameters(
            {"action": {"kind": "mirred", "direction": "egress", "action": "mirror", "ifindex": target_ifindex}})
        info = (PREF << 16) | socket.htons(ETH_P_ALL)
        self.nl.request(self._build(RTM_NEWTFILTER, ifindex, PARENT[hook], HANDLE, info,
                                    [("TCA_KIND", "matchall"), ("TCA_OPTIONS", opts)]), NLM_F_CREATE | NLM_F_EXCL)

    def remove(self, ifindex: int, hook: str) -> None:
        """`tc filter del dev REP HOOK pref 4048` (absent filter or qdisc: nothing to do)."""
        info = (PREF << 16) | socket.htons(ETH_P_ALL)
        try:
            self.nl.request(self._build(RTM_DELTFILTER, ifindex, PARENT[hook], 0, info, []), 0)
        except NetlinkError as exc:
            if exc.code not in (errno.ENOENT, errno.EINVAL, errno.ENODEV):
                raise

    def rules(self, ifindex: int) -> list[MirrorRule]:
        """vfd's mirror filters on one representor, as `tc filter show dev REP ingress|egress` lists them."""
        out = []
        for hook, parent in PARENT.items():
            try:
                answers = self.nl.request(self._build(RTM_GETTFILTER, ifindex, parent, 0, 0, []), NLM_F_DUMP)
            except NetlinkError as exc:
                if exc.code in (errno.EINVAL, errno.ENOENT, errno.ENODEV):
                    continue                 # no clsact qdisc: no filters
                raise
            for raw in answers:
                m = tcmsg(raw)
                m.decode()
                if (m["info"] >> 16) != PREF or m.get_attr("TCA_KIND") != "matchall":
                    continue
                target = _mirred_target(m)
                if target is not None:
                    out.append(MirrorRule(hook, target))
        return out

    def set(self, ifindex: int, direction: str | None, target_ifindex: int | None) -> None:
        """Make the representor's vfd filters exactly `direction` towards `target_ifindex` (None/off: none)."""
        want = {MirrorRule(h, target_ifindex) for h in hooks_for(direction)} if target_ifindex else set()
        have = set(self.rules(ifindex))
        for rule in have - want:
            self.remove(ifindex, rule.hook)
        for rule in want - have:
            self.add(ifindex, rule.hook, rule.target_ifindex)

    def close(self) -> None:
        self.nl.close()


def _mirred_target(m) -> int | None:
    opts = m.get_attr("TCA_OPTIONS")
    if not opts:
        return None
    acts = opts.get_attr("TCA_MATCHALL_ACT")
    if not acts:
        return None
    for _name, act in acts["attrs"]:
        if not hasattr(act, "get_attr") or act.get_attr("TCA_ACT_KIND") != "mirred":
            continue
        parms = act.get_attr("TCA_ACT_OPTIONS").get_attr("TCA_MIRRED_PARMS")
        if parms and parms["eaction"] == MIRRED_EGRESS_MIRROR:
            return parms["ifindex"]
    return None
