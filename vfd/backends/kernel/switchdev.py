"""A kernel PF in switchdev mode (main-config `eswitch_mode: "switchdev"`): rates, groups, QoS, mirrors.

In switchdev mode the VF's rates and mirrors no longer go through `ip link set PF vf N` (drivers
refuse IFLA_VF_RATE there: "Please use devlink API"); this module does them through the
switchdev interfaces and the kernel backend calls it from small hooks (backend.py):

- start-up (`open`): the eswitch is put in switchdev mode through devlink (left so at shutdown:
  VFs keep forwarding), each VF's representor is found (devlink port flavour `pcivf`, `vfnum`),
  and the PF's bandwidth groups (`bw_grps`) become devlink rate nodes `vfd_bwgN`;
- a VF's `rate` / `min_rate` (Mb/s) become its rate leaf's `tx_max` / `tx_share`, and its parent is
  the node of the bandwidth group holding the VF's traffic class (the TC its frames' PCP maps to:
  `program.pcp` through the PF's PCP->TC map, dcb.py); a VF whose TC is in no group has no parent;
- a VF's `mirror` becomes tc matchall + mirred filters on its representor (tcmirror.py);
- `enable_qos`: the PF's TCs through dcbnl (dcb.py) and each VF's normalised per-TC shares as its
  leaf's `tc-bw`, which needs Linux 6.17; older kernels are refused naming the kernel and the
  feature (Debian 12's 6.1 has no tc-bw);
- read-back and drift: `read_vf` reports the leaf's rates and the representor's mirror, and
  `mismatches` names what differs from the program (the backend's drift check repairs it).

Node rates: a group's `tx_share` is the link speed x the sum of its TCs' `min_bw` %, its `tx_max`
the link speed x the largest `max_bw` % of its TCs (0, unlimited, when that is 100); the share is
capped at the link speed and at `tx_max`.
"""

from __future__ import annotations

import errno
import logging
import time
from dataclasses import dataclass, field

from vfd.backends.kernel import dcb as dcbmod
from vfd.backends.kernel.devlink import TC_BW_KERNEL, Devlink, Handle, Port, Rate, kernel_release
from vfd.backends.kernel.netlink import NetlinkError, errno_name, strerror
from vfd.errors import BackendError
from vfd.model.mainconfig import PFConfig
from vfd.program import VFProgram

log = logging.getLogger("vfd.kernel")

NODE_PREFIX = "vfd_"
REP_WAIT = 10.0           # seconds to wait for the representors after the mode change


def node_name(group: str) -> str:
    return NODE_PREFIX + group


@dataclass
class SwitchdevPF:
    pf_id: str
    ifname: str
    driver: str
    cfg: PFConfig
    speed: int
    handle: Handle
    reps: dict[int, Port] = field(default_factory=dict)
    nodes: dict[str, Rate] = field(default_factory=dict)      # desired vfd nodes
    tc_bw: dict[int, dict[int, int]] = field(default_factory=dict)   # vfid -> tc -> share (enable_qos)

    def group_of(self, pcp: int) -> str | None:
        """The bandwidth-group node of a VF whose frames carry priority `pcp`."""
        if not self.cfg.bw_grps:
            return None
        tcs = [{"pri": t.pri} for t in self.cfg.tclasses]
        prio_tc = tuple(range(8)) if dcbmod.tc_count(tcs) == 8 else tuple(p // 2 for p in range(8))
        tc = prio_tc[pcp]
        for group, members in sorted(self.cfg.bw_grps.items()):
            if tc in members:
                return node_name(group)
        return None


def group_rates(cfg: PFConfig, speed: int) -> dict[str, Rate]:
    """The rate node of each bandwidth group (see the module docstring for the rule)."""
    by_tc = {t.pri: t for t in cfg.tclasses}
    out = {}
    for group, tcs in sorted(cfg.bw_grps.items()):
        share = sum(by_tc[tc].min_bw if tc in by_tc else 1 for tc in tcs)
        top = max((by_tc[tc].max_bw if tc in by_tc else 100 for tc in tcs), default=100)
        cap = 0 if top >= 100 else speed * top // 100
        # a guarantee above the cap is meaningless (and refused: tx_share <= tx_max)
        out[node_name(group)] = Rate(tx_share=min(speed, speed * share // 100, cap or speed), tx_max=cap)
    return out


class Switchdev:
    """The switchdev side of the kernel backend (devlink, tc, dcbnl sockets opened on first use)."""

    def __init__(self, devlink: Devlink | None = None, tc=None, dcb: dcbmod.Dcb | None = None):
        self._devlink, self._tc, self._dcb = devlink, tc, dcb
        self.pfs: dict[str, SwitchdevPF] = {}

    @property
    def devlink(self) -> Devlink:
        if self._devlink is None:
            self._devlink = Devlink()
        return self._devlink

    @property
    def tc(self):
        """tcmirror.TcMirror, imported on first use: pyroute2's tc classes pull in its rtnl package."""
        if self._tc is None:
            from vfd.backends.kernel.tcmirror import TcMirror
            self._tc = TcMirror()
        return self._tc

    @property
    def dcb(self) -> dcbmod.Dcb:
        if self._dcb is None:
            self._dcb = dcbmod.Dcb()
        return self._dcb

    @staticmethod
    def _fail(spf_or_id, driver: str, op: str, exc: Exception, vfid: int | None = None) -> BackendError:
        pf_id = spf_or_id if isinstance(spf_or_id, str) else spf_or_id.pf_id
        if isinstance(exc, NetlinkError):
            code = exc.code if isinstance(exc.code, int) else 0
            why = f"{errno_name(code)} ({strerror(code)}) from driver {driver}"
        elif isinstance(exc, dcbmod.DcbError):
            why = f"driver {driver} refused it (dcbnl status {exc.code})"
        else:
            why = f"{exc}"
        return BackendError(pf_id, op, why, vfid)

    # ---- start-up ----------------------------------------------------------------------------
    def open(self, pf: PFConfig, ifname: str, driver: str, speed: int, vfs: int) -> SwitchdevPF:
        """Switchdev mode on, representors found, vfd's rate nodes made to match `bw_grps`."""
        try:
            handle = self.devlink.handle_of(ifname)
        except (NetlinkError, OSError) as exc:
            raise self._fail(pf.id, driver, "find devlink instance", exc) from None
        if handle is None:
            raise BackendError(pf.id, "eswitch_mode switchdev", f"no devlink port has netdev {ifname} "
                                                                f"(driver {driver} has no devlink eswitch)")
        spf = SwitchdevPF(pf_id=pf.id, ifname=ifname, driver=driver, cfg=pf, speed=speed, handle=handle)
        try:
            if self.devlink.eswitch_mode(handle) != "switchdev":
                log.warning("PF %s: putting eswitch %s in switchdev mode", pf.id, handle)
                self.devlink.set_eswitch_mode(handle, "switchdev")
        except NetlinkError as exc:
            raise self._fail(pf.id, driver, f"devlink dev eswitch set {handle} mode switchdev", exc) from None
        self.refresh(spf, vfs)
        self.pfs[pf.id] = spf
        self._sync_nodes(spf)
        log.info("PF %s: switchdev mode on %s, representors %s", pf.id, handle,
                 ", ".join(f"vf{v}={p.netdev}" for v, p in sorted(spf.reps.items())) or "none")
        return spf

    def refresh(self, spf: SwitchdevPF, vfs: int | None = None) -> None:
        """Read the representor ports again (after VFs were re-created their ifindexes change)."""
        want = len(spf.reps) if vfs is None else vfs
        deadline = time.monotonic() + REP_WAIT
        while True:
            try:
                spf.reps = self.devlink.representors(spf.handle)
            except NetlinkError as exc:
                raise self._fail(spf, spf.driver, "devlink port show", exc) from None
            if len(spf.reps) >= want and all(p.ifindex for p in spf.reps.values()):
                return
            if time.monotonic() > deadline:
                raise BackendError(spf.pf_id, "find VF representors",
                                   f"{len(spf.reps)} pcivf ports where {want} VFs exist (driver {spf.driver})")
            time.sleep(0.05)

    def reopen(self, pf_id: str, vfs: int) -> None:
        """After the VFs were re-created: mode, representors and nodes again."""
        spf = self.pfs[pf_id]
        self.open(spf.cfg, spf.ifname, spf.driver, spf.speed, vfs)

    def _sync_nodes(self, spf: SwitchdevPF) -> None:
        spf.nodes = group_rates(spf.cfg, spf.speed)
        try:
            leaves, nodes = self.devlink.rates(spf.handle)
            for name in sorted(n for n in nodes if n.startswith(NODE_PREFIX) and n not in spf.nodes):
                for port, leaf in leaves.items():       # a group no longer configured: unparent, delete
                    if leaf.parent == name:
                        self.devlink.set_leaf(spf.handle, port, Rate(leaf.tx_share, leaf.tx_max, None), name)
                self.devlink.del_node(spf.handle, name)
            for name, rate in spf.nodes.items():
                have = nodes.get(name)
                if have is None:
                    self.devlink.new_node(spf.handle, name, rate)
                elif (have.tx_share, have.tx_max) != (rate.tx_share, rate.tx_max):
                    self.devlink.set_node(spf.handle, name, rate)
        except NetlinkError as exc:
            raise self._fail(spf, spf.driver, "devlink port function rate (bandwidth group nodes)", exc) from None

    # ---- VFs ---------------------------------------------------------------------------------
    def _rep(self, spf: SwitchdevPF, vfid: int) -> Port:
        rep = spf.reps.get(vfid)
        if rep is None:
            self.refresh(spf, 0)
            rep = spf.reps.get(vfid)
        if rep is None:
            raise BackendError(spf.pf_id, "find VF representor", f"VF {vfid} has no representor port "
                                                                 f"(driver {spf.driver})", vfid)
        return rep

    def want_leaf(self, spf: SwitchdevPF, vfid: int, program: VFProgram | None) -> Rate:
        if program is None:
            return Rate()
        return Rate(tx_share=program.min_rate, tx_max=program.max_rate, parent=spf.group_of(program.pcp),
                    tc_bw=dict(spf.tc_bw.get(vfid, {})))

    def apply_vf(self, pf_id: str, vfid: int, program: VFProgram | None) -> None:
        """The VF's leaf rate (and group) and its mirror; only what differs is sent. None clears both."""
        spf = self.pfs[pf_id]
        rep = self._rep(spf, vfid)
        want = self.want_leaf(spf, vfid, program)
        try:
            have = self.devlink.rates(spf.handle)[0].get(rep.index, Rate())
            if (have.tx_share, have.tx_max, have.parent) != (want.tx_share, want.tx_max, want.parent) \
                    or (want.tc_bw and have.tc_bw != {tc: want.tc_bw.get(tc, 0) for tc in range(8)}):
                self.devlink.set_leaf(spf.handle, rep.index, want, have.parent)
        except NetlinkError as exc:
            raise self._fail(spf, spf.driver, f"devlink port function rate set {spf.handle}/{rep.index} "
                                              f"tx_share {want.tx_share}mbit tx_max {want.tx_max}mbit "
                                              f"{'parent ' + want.parent if want.parent else 'noparent'}",
                             exc, vfid) from None
        mirror = program.mirror if program is not None else None
        target = self._rep(spf, mirror[0]).ifindex if mirror else None
        try:
            self.tc.set(rep.ifindex, mirror[1] if mirror else None, target)
        except NetlinkError as exc:
            what = f"mirror {mirror[1]} to VF {mirror[0]}" if mirror else "remove mirror"
            raise self._fail(spf, spf.driver, f"{what} (tc matchall/mirred on {rep.netdev})", exc, vfid) from None

    def read_vf(self, pf_id: str, vfid: int) -> dict:
        """max_rate, min_rate (Mb/s), mirror (as VFProgram.to_state) and rate_parent of the VF."""
        spf = self.pfs[pf_id]
        rep = self._rep(spf, vfid)
        try:
            leaf = self.devlink.rates(spf.handle)[0].get(rep.index, Rate())
            rules = self.tc.rules(rep.ifindex)
        except NetlinkError as exc:
            raise self._fail(spf, spf.driver, "read rates and mirrors", exc, vfid) from None
        mirror = None
        if rules:
            hooks = {r.hook for r in rules}
            by_ifindex = {p.ifindex: v for v, p in spf.reps.items()}
            target = by_ifindex.get(rules[0].target_ifindex, -1)
            direction = "all" if hooks == {"ingress", "egress"} else ("out" if hooks == {"ingress"} else "in")
            mirror = {"target": target, "direction": direction}
        return {"max_rate": leaf.tx_max, "min_rate": leaf.tx_share, "mirror": mirror, "rate_parent": leaf.parent}

    def mismatches(self, pf_id: str, vfid: int, program: VFProgram) -> list[str]:
        """What of the VF's switchdev state differs from `program`, as 'attr have (want w)' texts."""
        have = self.read_vf(pf_id, vfid)
        want = program.to_state()
        want["rate_parent"] = self.pfs[pf_id].group_of(program.pcp)
        return [f"{k} {have[k]} (want {want[k]})" for k in ("max_rate", "min_rate", "rate_parent", "mirror")
                if have[k] != want[k]]

    # ---- QoS ---------------------------------------------------------------------------------
    def apply_qos(self, pf_id: str, tclasses: list[dict], shares: dict[int, dict[int, int]],
                  programs: dict[int, VFProgram]) -> None:
        """enable_qos: the PF's TCs through dcbnl, each VF's normalised per-TC shares as its leaf's tc-bw."""
        spf = self.pfs[pf_id]
        if not self.devlink.tc_bw_supported():
            raise BackendError(pf_id, "enable_qos", f"per-VF per-TC shares need per-TC bandwidth in devlink rate "
                                                    f"(tc-bw, Linux {TC_BW_KERNEL}); this kernel is "
                                                    f"{kernel_release()}")
        try:
            self.dcb.apply(spf.ifname, dcbmod.plan(tclasses, spf.speed))
        except NetlinkError as exc:
            code = exc.code if isinstance(exc.code, int) else 0
            if code == errno.EOPNOTSUPP:
                raise BackendError(pf_id, "enable_qos", f"driver {spf.driver} has no DCB (dcbnl) ops for the PF's "
                                                        f"traffic classes") from None
            raise self._fail(spf, spf.driver, "dcb ets set", exc) from None
        except dcbmod.DcbError as exc:
            raise self._fail(spf, spf.driver, "dcb ets set", exc) from None
        spf.tc_bw = {vfid: dict(s) for vfid, s in shares.items()}
        for vfid, program in programs.items():
            self.apply_vf(pf_id, vfid, program)

    def close(self) -> None:
        for s in (self._devlink, self._tc, self._dcb):
            if s is not None:
                s.close()
