"""The kernel backend: PFs kept on their Linux driver, VFs programmed through rtnetlink (pyroute2).

What it does per PF (docs/kernel.md has the long form):
- finds the PF by PCI address (its netdev under /sys/bus/pci/devices/<pci>/net) or interface name,
  reports a capability profile for its driver (profiles.py), creates `vfs_count` VFs through
  `sriov_numvfs` (through 0 when the count changes; an equal count is left alone);
- programs a VF with ONE netlink message carrying the ops of the program fields that the one drift
  check (vfd.program.compare, as status and reconcile have it) finds differing from what the NIC
  reports (never re-sending an unchanged one: on some drivers every MAC or trust write resets the
  VF), then reads the VF back and raises BackendError when the same check still finds a difference
  (drivers may ignore a setting silently); when the driver refuses an op (EOPNOTSUPP, EINVAL,
  EPROTONOSUPPORT) the error names the op and the driver, and the attributes the kernel had already
  applied are put back, so the VF is left as it was;
- at start-up (until `attach`), VF changes are staged and sent by `flush` as one batch per PF: one
  read, every original recorded in one durable write, as few RTM_NEWLINK messages as possible
  (a list of IFLA_VF_INFO each), one read to verify them all (`_commit`);
- reads: a programming change starts from the last read of the PF when the rtnetlink event stream
  says nothing touched the PF since (its own change included: its event is drained before the
  read that verifies it); read_vf and the counters take one read per turn of the daemon's loop
  (one per reconcile pass or `show`, whatever the VF count);
- records each VF's original state before the first change and restores it on delete
  (originals.py, persisted under `<config_dir>_live/.kernel/`);
- watches rtnetlink link events for its PFs on the daemon's loop: a VF changed by hand is reported
  as 'drift', VFs that vanished (driver reload, sriov_numvfs reset) are re-created and reported as
  'vfs_gone'; a periodic check every `reconcile_interval` catches what no event reports (netdevsim
  sends none when its VFs vanish).

Concurrency: the daemon runs every request, event and timer on one asyncio loop, so VF operations
never overlap; each still takes its VF's lock (one RLock per VF) so apply, repair and delete stay
ordered if a caller ever drives the backend from another thread. pyroute2 builds the messages;
they travel on a plain rtnetlink socket (netlink.py says why).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from vfd.backends.base import NicBackend, NicEvent, PFInfo, PortStats
from vfd.backends.kernel import netlink as nl
from vfd.backends.kernel.originals import OriginalStore
from vfd.backends.kernel.profiles import driver_row, kernel_profile, switchdev_profile
from vfd.backends.kernel.sysfs import Sysfs
from vfd.capabilities import DriverProfile
from vfd.errors import BackendError
from vfd.macaddr import random_local_mac
from vfd.model.mainconfig import MainConfig, PFConfig
from vfd.program import FieldCheck, VFProgram, canonical, compare

if TYPE_CHECKING:
    from vfd.backends.kernel.switchdev import Switchdev

ZERO_MAC = "00:00:00:00:00:00"      # what a PF reports for a VF whose MAC it never set
log = logging.getLogger("vfd.kernel")

LINK_STATE = {"auto": 0, "on": 1, "off": 2}
LINK_NAME = {v: k for k, v in LINK_STATE.items()}
PROTO = {"802.1q": nl.ETH_P_8021Q, "802.1ad": nl.ETH_P_8021AD}
PROGRAM_KEYS = tuple(f.name for f in dataclasses.fields(VFProgram))
SWITCHDEV_FIELDS = {"max_rate", "min_rate", "mirror"}   # devlink rate and tc in switchdev mode
BLIND_ON = {"uucast", "mac_anti_spoof", "vlan_anti_spoof"}  # trust/spoofchk: sent as "on" when not reported

CACHE_AGE = 0.25        # no event loop yet (start-up, tools): a PF read this recent serves read_vf and
                        # the counters; on the loop a read serves the rest of its turn (_read)
VF_WAIT = 30.0          # seconds to wait for VFs to appear after writing sriov_numvfs
LOOP_VF_WAIT = 3.0      # on the daemon's loop (a request, a check): at most this long, far under iplex's
                        # 30 s; the rest of VF_WAIT is waited off the loop (_watch_vfs), then the PF re-applied
VF_POLL = 0.1           # how often the off-loop wait looks
EVENT_DELAY = 0.05      # events are coalesced: one PF read per burst


def state_dir_for(main: MainConfig) -> Path:
    """Where the original VF states live: next to the live configs they belong to."""
    return Path(main.live_dir) / ".kernel"


@dataclass
class KernelPF:
    cfg: PFConfig
    ifname: str
    ifindex: int | None
    driver: str
    profile: DriverProfile
    want_vfs: int
    speed: int
    pci: str | None = None
    snap: nl.LinkSnapshot | None = None
    link_up: bool | None = None
    check_handle: object = None
    vf_wait_handle: object = None  # the off-loop wait for re-created VFs (_watch_vfs)
    last_drift: dict[int, float] = field(default_factory=dict)
    gen: int = 0                  # rtnetlink events seen for this PF: a read taken at another count is stale
    turn_snap: nl.LinkSnapshot | None = None     # the read serving the rest of this loop turn
    staged: dict[int, "_Change"] = field(default_factory=dict)   # start-up: vfid -> its change, not yet planned
    in_sync: dict[int, tuple] = field(default_factory=dict)  # vfid -> (program, VF bytes) last seen matching
    sw: bool = False           # eswitch_mode switchdev: rates and mirrors through switchdev.py
    vf_pci: dict[int, str] = field(default_factory=dict)   # vfid -> PCI address, until VFs are re-created
    holding: bool = False      # a change is in flight: its events' check is decided after its read-back
    held: bool = False         # events came while holding
    id: str = field(init=False)

    def __post_init__(self) -> None:
        self.id = self.cfg.id


class KernelBackend(NicBackend):
    name = "kernel"

    def __init__(self, main: MainConfig, *, rtnl_factory=None, sysfs_root: str = "/sys",
                 state_dir: str | Path | None = None, monitor_factory=None, batch_startup: bool = True,
                 switchdev: Switchdev | None = None):
        super().__init__(main)
        self.sysfs = Sysfs(sysfs_root)
        self.rtnl = (rtnl_factory or nl.Rtnl)()
        self.originals = OriginalStore(state_dir if state_dir is not None else state_dir_for(main))
        self.pfs: dict[str, KernelPF] = {}
        self._locks: defaultdict[tuple[str, int], threading.RLock] = defaultdict(threading.RLock)
        self._monitor_factory = monitor_factory or nl.Monitor
        self.monitor: nl.Monitor | None = None
        self.loop = None
        self.sink = None
        self._poll_handle = None
        self._turn_end = None
        self.staging = batch_startup   # until attach(): VF changes wait for flush() and go out in batches
        self.startup_errors: dict[tuple[str, int], str] = {}
        self.repairs = 0          # VF re-creations and drift reports, for tests and logs
        self._switchdev = switchdev

    @property
    def switchdev(self) -> "Switchdev":
        """Made on first use: only a PF in switchdev mode needs it, and its generic-netlink imports
        (devlink, dcb, tc: pyroute2's socket layer) would cost every legacy-mode start-up."""
        if self._switchdev is None:
            from vfd.backends.kernel.switchdev import Switchdev
            self._switchdev = Switchdev()
        return self._switchdev

    @switchdev.setter
    def switchdev(self, value: "Switchdev") -> None:
        self._switchdev = value

    # ================================================================================ PF =========
    def open_pf(self, pf: PFConfig) -> PFInfo:
        if pf.enable_loopback:
            raise BackendError(pf.id, "enable_loopback", "rtnetlink has no PF TX loopback (VEB) control")
        ifname = self.sysfs.netdev_of(pf.id)
        if ifname is None:
            raise BackendError(pf.id, "find PF", "no such network interface (a PF id is a PCI address with a "
                                                 "netdev under /sys/bus/pci/devices/<pci>/net, or an interface name)")
        driver = self.sysfs.driver(ifname)
        if not self.sysfs.has_sriov(ifname):
            raise BackendError(pf.id, "find PF", f"{ifname} (driver {driver}) has no sriov_numvfs: not an SR-IOV PF")
        total = self.sysfs.totalvfs(ifname)
        current = self.sysfs.numvfs(ifname) or 0
        want = pf.vfs_count if pf.vfs_count is not None else current
        # netdevsim has no sriov_totalvfs (its limit is in debugfs): the table's default, or what is asked.
        profile = kernel_profile(driver, total or max(want, driver_row(driver).max_vfs))
        if total is not None and want > total:
            raise BackendError(pf.id, "create VFs", f"vfs_count {want} exceeds sriov_totalvfs {total} of {ifname} "
                                                    f"(driver {driver})")
        if (pf.tclasses or pf.bw_grps) and pf.eswitch_mode != "switchdev":
            log.warning("PF %s: tclasses/bw_grps are ignored on the kernel backend (no per-TC QoS in rtnetlink)",
                        pf.id)
        kpf = KernelPF(cfg=pf, ifname=ifname, ifindex=self.sysfs.ifindex(ifname), driver=driver,
                       profile=profile, want_vfs=want, speed=0, pci=self.sysfs.pci_address(ifname))
        if kpf.ifindex is None:
            raise BackendError(pf.id, "find PF", f"{ifname} has no ifindex")
        self.pfs[pf.id] = kpf
        self.originals.open(pf.id)
        if current != want:
            if current and want:
                # A deliberate count change: the VFs are new ones, their old originals mean nothing.
                self.originals.drop_pf(pf.id)
            self._create_vfs(kpf, f"vfs_count {want} configured, {current} present")
        if pf.mtu is not None:
            self._set_mtu(kpf, pf.mtu)
        if pf.promiscuous:
            self._set_promisc(kpf)
        kpf.speed = self.sysfs.speed(ifname) or pf.speed or 0
        if pf.eswitch_mode == "switchdev":                          # --- switchdev hook
            self.switchdev.open(pf, ifname, driver, kpf.speed, want)
            kpf.sw = True
            kpf.profile = profile = switchdev_profile(profile)
        log.info("kernel PF %s: netdev %s (ifindex %s), driver %s, %d VFs, %s Mb/s", pf.id, ifname, kpf.ifindex,
                 driver, want, kpf.speed or "unknown")
        return PFInfo(pf_id=pf.id, driver=driver, profile=profile, vfs_count=want, link_speed=kpf.speed)

    def _pf(self, pf_id: str) -> KernelPF:
        try:
            return self.pfs[pf_id]
        except KeyError:
            raise BackendError(pf_id, "find PF", "not opened by the kernel backend") from None

    def _set_mtu(self, kpf: KernelPF, mtu: int) -> None:
        try:
            current = int((self.sysfs.root / "class" / "net" / kpf.ifname / "mtu").read_text())
        except (OSError, ValueError):
            current = None
        if current == mtu:
            return
        try:
            self.rtnl.set_link(self._ifindex(kpf), mtu=mtu)
        except nl.NetlinkError as exc:
            raise BackendError(kpf.id, f"set mtu {mtu}", self._why(kpf, exc)) from None

    def _set_promisc(self, kpf: KernelPF) -> None:
        """`promiscuous: true`: IFF_PROMISC on the PF (`ip link set PF promisc on`), read back.
        `false` leaves the PF as it is: the host, not vfd, owns a kernel PF's receive mode."""
        if self._read(kpf, fresh=True).promisc:
            return
        try:
            self.rtnl.set_flags(self._ifindex(kpf), nl.IFF_PROMISC, nl.IFF_PROMISC)
        except nl.NetlinkError as exc:
            raise BackendError(kpf.id, "set promiscuous", self._why(kpf, exc)) from None
        if not self._read(kpf, fresh=True).promisc:
            raise BackendError(kpf.id, "verify promiscuous", f"driver {kpf.driver} accepted IFF_PROMISC but "
                                                             f"{kpf.ifname} does not report it")
        log.info("PF %s: promiscuous mode on (%s)", kpf.id, kpf.ifname)

    def _resolve(self, kpf: KernelPF) -> bool:
        """Find the PF's netdev again (after a driver reload its ifindex, even its name, may change)."""
        ifname = self.sysfs.netdev_of(kpf.id)
        ifindex = self.sysfs.ifindex(ifname) if ifname else None
        if ifindex is None:
            kpf.ifindex = None
            return False
        if (ifname, ifindex) != (kpf.ifname, kpf.ifindex):
            log.warning("PF %s is now netdev %s (ifindex %d)", kpf.id, ifname, ifindex)
        kpf.ifname, kpf.ifindex = ifname, ifindex
        kpf.snap = None
        return True

    def _ifindex(self, kpf: KernelPF) -> int:
        if kpf.ifindex is None and not self._resolve(kpf):
            raise BackendError(kpf.id, "find PF", f"netdev {kpf.ifname} is gone (driver unloaded?)")
        return kpf.ifindex

    # ============================================================================= reading =======
    def _events_cover(self, kpf: KernelPF, snap: nl.LinkSnapshot | None) -> bool:
        """Whether `snap` is still what the kernel has: nothing touched the PF since, by its events.

        Only while the event socket is attached and the PF is up: the kernel announces a VF change
        (RTM_NEWLINK for the PF, netdev_state_change) only for a device that is up."""
        return (snap is not None and self.monitor is not None and self.loop is not None and snap.gen == kpf.gen
                and snap.up)

    def _read(self, kpf: KernelPF, fresh: bool = False, stats: bool = False, *,
              program: bool = False) -> nl.LinkSnapshot:
        """The PF's VFs. `fresh`: always a new read. `program` (a change or a check is computed from
        it): the last read while the events cover it, else a new one. Otherwise (read_vf, counters):
        the read already taken in this turn of the loop (no loop: one younger than CACHE_AGE)."""
        self._drain()
        snap = kpf.snap
        if not fresh and snap is not None and (snap.with_stats or not stats) and snap.gen == kpf.gen:
            if program:
                if self._events_cover(kpf, snap):
                    return snap
            elif self.loop is not None:
                if snap is kpf.turn_snap:
                    return snap
            elif time.monotonic() - snap.taken < CACHE_AGE:
                return snap
        for attempt in (0, 1):
            ifindex = self._ifindex(kpf)
            try:
                msg = self.rtnl.get_link(ifindex, nl.ext_mask(stats))
                break
            except (nl.NetlinkError, OSError) as exc:
                if not isinstance(exc, nl.NetlinkError):
                    raise BackendError(kpf.id, "read VFs", f"rtnetlink: {exc}") from None
                if nl.is_enodev(exc) and attempt == 0:
                    kpf.ifindex = None
                    continue
                raise BackendError(kpf.id, "read VFs", self._why(kpf, exc)) from None
        snap = nl.parse_link(msg, with_stats=stats)
        snap.gen = kpf.gen
        kpf.snap = snap
        if self.loop is not None:
            kpf.turn_snap = snap
            if self._turn_end is None:
                self._turn_end = self.loop.call_soon(self._end_turn)
        return snap

    def _end_turn(self) -> None:
        self._turn_end = None
        for kpf in self.pfs.values():
            kpf.turn_snap = None

    def _forget(self, kpf: KernelPF) -> None:
        """A change was sent: no earlier read of the PF may serve again."""
        kpf.snap = kpf.turn_snap = None

    def _ready(self, kpf: KernelPF, vfid: int, fresh: bool = False) -> nl.LinkSnapshot:
        """A read of the PF in which `vfid` exists, re-creating the VFs if they vanished."""
        snap = self._read(kpf, fresh=fresh, program=True)
        if snap.num_vf != kpf.want_vfs:
            self._recreate(kpf, snap.num_vf, notify_later=True)
            snap = self._read(kpf, fresh=True)
        if vfid not in snap.vfs:
            raise BackendError(kpf.id, "find VF", f"VF {vfid} does not exist ({kpf.ifname} has {snap.num_vf} VFs)",
                               vfid)
        return snap

    # ========================================================================== VF creation ======
    def _create_vfs(self, kpf: KernelPF, why: str) -> None:
        want = kpf.want_vfs
        if kpf.vf_wait_handle is not None:      # written already: the off-loop wait says when they are back
            raise BackendError(kpf.id, f"create VFs (sriov_numvfs {want})",
                               f"the VFs are being re-created (driver {kpf.driver}); try again when they are back")
        log.warning("PF %s (%s): %s: setting sriov_numvfs to %d", kpf.id, kpf.ifname, why, want)
        kpf.vf_pci.clear()        # a new VF count may move the VFs' PCI addresses (First VF Offset)
        try:
            current = self.sysfs.numvfs(kpf.ifname) or 0
            if current and current != want:
                self.sysfs.set_numvfs(kpf.ifname, 0)      # N -> M must go through 0 (else EBUSY)
            if want and current != want:
                self.sysfs.set_numvfs(kpf.ifname, want)
        except OSError as exc:
            raise BackendError(kpf.id, f"create VFs (sriov_numvfs {want})",
                               f"{exc.strerror or exc} from driver {kpf.driver}") from None
        self._forget(kpf)
        on_loop = self.loop is not None
        start = time.monotonic()
        budget = LOOP_VF_WAIT if on_loop else VF_WAIT
        while True:             # VF creation may be asynchronous: wait for netlink (and PCI) to show them
            found = self._vfs_found(kpf)
            if found is None:
                return
            if time.monotonic() - start >= budget:
                break
            time.sleep(0.05)
        if not on_loop:
            raise BackendError(kpf.id, f"create VFs (sriov_numvfs {want})",
                               f"only {found} VFs after {VF_WAIT:.0f}s (driver {kpf.driver})")
        self._watch_vfs(kpf, start + VF_WAIT)
        raise BackendError(kpf.id, f"create VFs (sriov_numvfs {want})",
                           f"only {found} VFs after {budget:.0f}s (driver {kpf.driver}); vfd keeps waiting up to "
                           f"{VF_WAIT:.0f}s without holding requests and re-applies the PF's VFs when they appear")

    def _vfs_found(self, kpf: KernelPF) -> int | None:
        """None when all configured VFs are there (netlink and PCI); else how many netlink shows."""
        snap = self._read(kpf, fresh=True)
        pci_ok = kpf.pci is None or self.sysfs.virtfn_links(kpf.ifname) >= kpf.want_vfs
        if snap.num_vf == kpf.want_vfs and len(snap.vfs) == kpf.want_vfs and pci_ok:
            return None
        return snap.num_vf

    def _watch_vfs(self, kpf: KernelPF, deadline: float) -> None:
        """The rest of the wait for re-created VFs, off the loop's requests: a look every VF_POLL."""
        if kpf.vf_wait_handle is None:
            kpf.vf_wait_handle = self.loop.call_later(VF_POLL, self._look_for_vfs, kpf, deadline)

    def _look_for_vfs(self, kpf: KernelPF, deadline: float) -> None:
        kpf.vf_wait_handle = None
        try:
            found = self._vfs_found(kpf)
        except BackendError as exc:
            found = f"unreadable ({exc})"
        if found is None:
            self._vfs_back(kpf, "re-created", notify_later=False)
        elif time.monotonic() >= deadline:
            log.error("PF %s: only %s of %d VFs after %.0fs (driver %s); the next check tries again", kpf.id, found,
                      kpf.want_vfs, VF_WAIT, kpf.driver)
        else:
            self._watch_vfs(kpf, deadline)

    def _recreate(self, kpf: KernelPF, found: int, notify_later: bool) -> None:
        """The VFs vanished (or their count changed behind vfd's back): create them again and say so."""
        self.repairs += 1
        self._create_vfs(kpf, f"found {found} VFs where {kpf.want_vfs} are configured (driver reload or "
                              f"sriov_numvfs reset?)")
        self._vfs_back(kpf, f"{found} of {kpf.want_vfs} VFs found; re-created", notify_later)

    def _vfs_back(self, kpf: KernelPF, detail: str, notify_later: bool) -> None:
        """The VFs are there again: switchdev's representors re-opened, the manager told to re-apply."""
        if kpf.sw:                                                  # --- switchdev hook
            self.switchdev.reopen(kpf.id, kpf.want_vfs)
        log.warning("PF %s: %d VFs re-created; their programs are re-applied", kpf.id, kpf.want_vfs)
        event = NicEvent("vfs_gone", kpf.id, detail=detail)
        if self.sink is not None and self.loop is not None:
            if notify_later:
                self.loop.call_soon(self.sink, event)
            else:
                self.sink(event)

    # ======================================================================== programming ========
    def target_of(self, kpf: KernelPF, program: VFProgram, current: dict | None) -> dict:
        """The kernel attributes that express `program` (the trust mapping is here). What rtnetlink cannot
        express (VLAN filter lists, allow-lists, legacy-mode mirrors) never gets here: the PF's profile
        (profiles.py) lacks those features, so admission refuses the config."""
        vlan = program.vlans[0] if program.vlans else 0
        qos = int(getattr(program, "pcp", 0) or 0) if vlan else 0
        mac = program.mac if program.mac is not None else (current or {}).get("mac")
        return {
            "mac": mac, "vlan": vlan, "qos": qos,
            "proto": PROTO.get(program.vlan_proto, nl.ETH_P_8021Q) if vlan else nl.ETH_P_8021Q,
            "spoofchk": bool(program.mac_anti_spoof),
            # Trust lets the guest go promiscuous / all-multicast: on only when unknown unicast is asked for.
            "trust": bool(program.uucast and program.mcast),
            "min_tx_rate": int(program.min_rate), "max_tx_rate": int(program.max_rate),
            "link_state": LINK_STATE[program.link],
        }

    # What is sent for a program, and checked after, is decided by the one drift check
    # (vfd.program.compare, as status and reconcile have it): the fields it finds differing, mapped to
    # their ops (nl.FIELD_OPS). Restoring an original is not a program: that one attribute-level
    # comparison is _attr_diff.
    def _checks(self, kpf: KernelPF, program: VFProgram, k: dict) -> list[FieldCheck]:
        """The one drift check on one VF's attributes: compare on the VF in program terms (_state),
        with what rtnetlink cannot show as unverifiable: a spoofchk/trust the driver does not report,
        and in switchdev mode the rates and the mirror (devlink's and tc's: switchdev.mismatches).
        Only the fields not "ok": every caller looks for differing or unverifiable ones."""
        skip = self._unreported(kpf, k) | (SWITCHDEV_FIELDS if kpf.sw else set())
        return compare(program, self._state(kpf, k), frozenset(skip), mismatches_only=True)

    def _program_ops(self, kpf: KernelPF, vfid: int, program: VFProgram, previous: VFProgram | None,
                     have: dict) -> list[str]:
        """The ops bringing a VF that reads `have` to `program`: those of the fields the drift check finds
        differing, and a spoofchk/trust the driver does not report that the program turns on anew (its
        change from `previous`, VFProgram.changed_fields: nothing else can say it is needed). Such a
        field is sent blind, and only as "on": "off" is what a driver without the setting does anyway."""
        checks = self._checks(kpf, program, have)
        anew = set(program.changed_fields(previous))
        fields = [c.field for c in checks if c.differs or (c.state == "unverifiable" and c.field in BLIND_ON
                                                           and c.desired and c.field in anew)]
        lacking = [f for f in fields if f not in nl.FIELD_OPS]
        if lacking:
            raise BackendError(kpf.id, f"set {'/'.join(lacking)}",
                               f"rtnetlink has no control for it (driver {kpf.driver}); the VF was left as it was",
                               vfid)
        return self._field_ops(fields)

    @staticmethod
    def _field_ops(fields) -> list[str]:
        """The ops setting program `fields`, in the kernel's order."""
        ops = {nl.FIELD_OPS[f] for f in fields if f in nl.FIELD_OPS}
        return [op for op, _ in nl.OPS if op in ops]

    @staticmethod
    def _attr_ops(attrs) -> list[str]:
        """The ops carrying rtnetlink attributes `attrs`, in the kernel's order."""
        return [op for op, names in nl.OPS if any(a in attrs for a in names)]

    @staticmethod
    def _attr_diff(have: dict, want: dict, verify: bool = False) -> list[str]:
        """The one attribute-level comparison, for what is not a program: a VF given back its recorded
        original (originals.py keeps rtnetlink attributes: a VF vfd never programmed has no program)
        or neutral settings, a refused change put back, and how far the kernel got through a message.

        A `want` of None is not asked for (a MAC left alone, switchdev's rates). An unreported
        spoofchk/trust differs only from an explicit "on" (the only value worth sending blind) and is
        never a mismatch read back (`verify`). Read back, giving back "no administrative MAC" (ZERO_MAC)
        accepts any MAC: the VF's own driver may set one at once (igb/igbvf do)."""
        out = []
        for attr in nl.ATTRS:
            w, h = want.get(attr), have.get(attr)
            if w is None:
                continue
            if h is None and attr in ("spoofchk", "trust"):
                if w and not verify:
                    out.append(attr)
            elif attr == "mac":
                if not (verify and w == ZERO_MAC) and str(h).lower() != str(w).lower():
                    out.append(attr)
            elif h != w:
                out.append(attr)
        return out

    def _unmet(self, kpf: KernelPF, c: "_Change", have: dict) -> list[str]:
        """The ops of a change whose effect the read-back `have` does not show: for an apply, those of the
        fields the drift check finds differing; for a clear, the attribute comparison."""
        if not have:
            return list(c.ops)                 # the VF is gone: nothing sent shows
        if c.kind == "apply":
            return self._field_ops([x.field for x in self._checks(kpf, c.program, have) if x.differs])
        return self._attr_ops(self._attr_diff(have, c.target, verify=True))

    def _plan(self, kpf: KernelPF, c: "_Change", before: dict) -> "_Change":
        """Fill in what the change sends to a VF that reads `before`: target attributes and ops."""
        c.before = dict(before)
        if c.kind == "apply":
            c.target, c.what = self._rtnl_part(kpf, self.target_of(kpf, c.program, before)), "apply"
            c.ops = self._program_ops(kpf, c.vfid, c.program, c.previous, before)
            return c
        original = self.originals.get(kpf.id, c.vfid)
        c.restored = original is not None
        if c.restored:
            target = {a: (original.get(a) if original.get(a) is not None else before.get(a)) for a in nl.ATTRS}
            c.what = "restore original"
        else:                                  # lost state dir: neutral settings and a fresh MAC, as the sim does
            target = {"mac": random_local_mac(), "vlan": 0, "qos": 0, "proto": nl.ETH_P_8021Q,
                      "spoofchk": before.get("spoofchk"), "trust": False, "min_tx_rate": 0, "max_tx_rate": 0,
                      "link_state": 0}
            c.what = "clear"
        c.target = self._rtnl_part(kpf, target)
        c.ops = self._attr_ops(self._attr_diff(before, c.target))
        return c

    def _why(self, kpf: KernelPF, exc: nl.NetlinkError) -> str:
        code = exc.code if isinstance(exc.code, int) else 0
        return f"{nl.errno_name(code)} ({nl.strerror(code)}) from driver {kpf.driver}"

    def _send(self, kpf: KernelPF, vfid: int, before: dict, target: dict, ops: list[str]) -> None:
        """One message with every op; on refusal put back what the kernel applied, then raise."""
        spec = nl.vf_spec(vfid, target, ops)
        try:
            self.rtnl.set_link(self._ifindex(kpf), vf=spec)
        except nl.NetlinkError as exc:
            self._forget(kpf)
            try:
                after = self._read(kpf, fresh=True).vfs.get(vfid, {})
            except BackendError:
                after = {}
            # The kernel applies the ops in order and stops at the refused one: the first not yet in effect.
            failed = next((op for op in self._attr_ops(self._attr_diff(after, target)) if op in ops), None)
            self._put_back(kpf, vfid, before, after)
            what = failed or "/".join(ops)
            values = ", ".join(f"{a} {_show(a, target[a])}" for op, attrs in nl.OPS if op == what for a in attrs)
            raise BackendError(kpf.id, f"set {what}" + (f" ({values})" if values else ""),
                               f"{self._why(kpf, exc)}; the VF was left as it was", vfid) from None
        self._forget(kpf)

    def _put_back(self, kpf: KernelPF, vfid: int, before: dict, after: dict) -> None:
        ops = self._attr_ops(self._attr_diff(after, before)) if after else [op for op, _ in nl.OPS]
        ops = [op for op in ops if all(before.get(a) is not None for a in dict(nl.OPS)[op])]
        if not ops:
            return
        try:
            self.rtnl.set_link(self._ifindex(kpf), vf=nl.vf_spec(vfid, before, ops))
        except (nl.NetlinkError, BackendError) as exc:
            log.error("PF %s VF %d: putting back %s failed: %s", kpf.id, vfid, ", ".join(ops), exc)
        self._forget(kpf)

    def _program(self, kpf: KernelPF, c: "_Change") -> None:
        """Read, diff, record the original, send one message, read back and verify.

        The read before a change is what gets recorded as the original state, what the diff is
        computed against and what a refused op is put back to: a new one unless the event stream
        shows nothing touched the PF since the last (_read, program=True).
        """
        snap = self._ready(kpf, c.vfid)
        self._plan(kpf, c, snap.vfs[c.vfid])
        if not c.ops:
            return
        if self.originals.record(kpf.id, c.vfid, c.before):
            log.debug("PF %s VF %d: original state recorded: %s", kpf.id, c.vfid, _describe(c.before))
        gen, check_pending, verified = kpf.gen, kpf.check_handle is not None, False
        kpf.holding = True
        try:
            self._send(kpf, c.vfid, c.before, c.target, c.ops)
            after = self._read(kpf, fresh=True).vfs.get(c.vfid) or {}
            bad = self._unmet(kpf, c, after)
            verified = not bad
        finally:
            kpf.holding = False
            self._release_check(kpf, gen, check_pending, verified)
        if not bad:
            log.debug("PF %s VF %d: %s: set %s", kpf.id, c.vfid, c.what, ", ".join(c.ops))
            return
        self._put_back(kpf, c.vfid, c.before, after)
        raise self._verify_error(kpf, c.vfid, after, c.target, bad)

    def _verify_error(self, kpf: KernelPF, vfid: int, after: dict, target: dict, ops: list[str]) -> BackendError:
        shown = [a for op, attrs in nl.OPS if op in ops for a in attrs if target.get(a) is not None]
        differ = [a for a in shown if after.get(a) != target[a]] or shown
        detail = ", ".join(f"{a} {_show(a, after.get(a))} instead of {_show(a, target[a])}" for a in differ)
        return BackendError(kpf.id, f"verify {'/'.join(ops)}",
                            f"driver {kpf.driver} accepted the change but reports {detail} (some drivers ignore "
                            f"settings silently); the VF was put back as it was", vfid)

    def _mark_in_sync(self, kpf: KernelPF, vfid: int, program: VFProgram) -> None:
        """Remember the VF's bytes in the last read as matching `program`: checks skip it while they stay."""
        snap = kpf.snap
        raw = snap.vfs.raw(vfid) if snap is not None and isinstance(snap.vfs, nl.VFTable) else None
        if raw is not None:
            kpf.in_sync[vfid] = (program, raw)
        else:
            kpf.in_sync.pop(vfid, None)

    @staticmethod
    def _rtnl_part(kpf: KernelPF, target: dict) -> dict:
        """In switchdev mode the rates are the devlink leaf's (switchdev.py), never IFLA_VF_RATE."""
        if kpf.sw:
            target = {**target, "min_tx_rate": None, "max_tx_rate": None}
        return target

    def apply_vf(self, pf_id: str, vfid: int, program: VFProgram, previous: VFProgram | None) -> None:
        """Send only what the drift check finds differing from what the NIC reports (_program_ops).

        At start-up (staging) the change waits for flush()."""
        kpf = self._pf(pf_id)
        with self._locks[(pf_id, vfid)]:
            if self.staging:
                if kpf.sw:                                          # --- switchdev hook (not batched)
                    self.switchdev.apply_vf(pf_id, vfid, program)
                self._stage(kpf, _Change(vfid, "apply", program, previous))
                kpf.last_drift.pop(vfid, None)
                return
            self._commit(kpf)
            self._program(kpf, _Change(vfid, "apply", program, previous))
            if kpf.sw:                                              # --- switchdev hook
                self.switchdev.apply_vf(pf_id, vfid, program)
            kpf.last_drift.pop(vfid, None)
            self._mark_in_sync(kpf, vfid, program)

    def clear_vf(self, pf_id: str, vfid: int, previous: VFProgram | None) -> None:
        """Put back the VF's original state (recorded before vfd's first change); untouched VFs stay as they
        are. Without a record (the state dir was lost): neutral settings and a fresh MAC."""
        kpf = self._pf(pf_id)
        with self._locks[(pf_id, vfid)]:
            original = self.originals.get(pf_id, vfid)
            if original is None and previous is None and vfid not in kpf.staged:
                return                        # vfd never changed this VF: not ours to touch
            if kpf.sw:                                              # --- switchdev hook: rates, mirror off
                self.switchdev.apply_vf(pf_id, vfid, None)
            if self.staging:
                self._stage(kpf, _Change(vfid, "clear"))
                return
            self._commit(kpf)
            c = _Change(vfid, "clear")
            self._program(kpf, c)             # raises with the VF left as it was
            self._cleared(kpf, [vfid], c.restored)

    def _cleared(self, kpf: KernelPF, vfids: list[int], restored: bool) -> None:
        for vfid in vfids:
            kpf.in_sync.pop(vfid, None)
            if restored:
                log.info("PF %s VF %d: original state restored: %s", kpf.id, vfid,
                         _describe(self.originals.get(kpf.id, vfid) or {}))
        self.originals.drop_many(kpf.id, vfids)

    # ====================================================================== start-up batches =====
    def _stage(self, kpf: KernelPF, c: "_Change") -> None:
        if c.vfid in kpf.staged:
            self._commit(kpf)              # a second change of one VF: the first one goes out first
        kpf.staged[c.vfid] = c

    def _commit(self, kpf: KernelPF) -> None:
        """Send the PF's staged changes: one read, the originals in one write, batched messages, one read back.

        A VF whose change the kernel refuses inside a batch is put back and programmed alone, which
        names the VF, the op and the driver exactly; the other VFs of the batch end as asked. Errors
        are logged (there is no caller to raise to) and kept in `startup_errors`; a failed apply keeps
        its program, so the first check after attach() reports it as drift and the manager retries
        it, recording the error where `iplex status` shows it."""
        if not kpf.staged:
            return
        staged, kpf.staged = kpf.staged, {}
        t0 = time.monotonic()
        failed: dict[int, BackendError] = {}
        try:
            snap = self._read(kpf, fresh=True)
            if snap.num_vf != kpf.want_vfs:
                self._recreate(kpf, snap.num_vf, notify_later=True)
                snap = self._read(kpf, fresh=True)
        except BackendError as exc:
            for vfid in staged:
                failed[vfid] = exc
            self._report(kpf, staged, failed)
            return
        plan: list[_Change] = []
        for vfid in sorted(staged):
            if vfid not in snap.vfs:
                failed[vfid] = BackendError(kpf.id, "find VF", f"VF {vfid} does not exist ({kpf.ifname} has "
                                                               f"{snap.num_vf} VFs)", vfid)
                continue
            try:
                plan.append(self._plan(kpf, staged[vfid], snap.vfs[vfid]))
            except BackendError as exc:
                failed[vfid] = exc
        changes = [c for c in plan if c.ops]
        recorded = self.originals.record_many(kpf.id, {c.vfid: c.before for c in changes})
        if recorded:
            log.info("PF %s: original state of %d VFs recorded (VFs %s)", kpf.id, len(recorded), _ranges(recorded))
        for vfid in recorded:
            log.debug("PF %s VF %d: original state recorded: %s", kpf.id, vfid, _describe(snap.vfs[vfid]))
        sent, alone, messages = self._send_batches(kpf, changes)
        if sent:
            after = self._read(kpf, fresh=True).vfs
            for c in sent:
                have = after.get(c.vfid) or {}
                bad = self._unmet(kpf, c, have)
                if bad:
                    self._put_back(kpf, c.vfid, c.before, have)
                    failed[c.vfid] = self._verify_error(kpf, c.vfid, have, c.target, bad)
        for c in alone:
            try:
                self._program(kpf, c)
            except BackendError as exc:
                failed[c.vfid] = exc
        done = [c for c in plan if c.vfid not in failed]
        for c in done:
            if c.kind == "apply":
                self._mark_in_sync(kpf, c.vfid, c.program)
        self._cleared(kpf, [c.vfid for c in done if c.kind == "clear" and c.restored], True)
        self._cleared(kpf, [c.vfid for c in done if c.kind == "clear" and not c.restored], False)
        log.info("PF %s: %d staged VF changes, %d sent in %d messages, %d refused, in %.3fs", kpf.id, len(staged),
                 len(changes), messages, len(failed), time.monotonic() - t0)
        self._report(kpf, staged, failed)

    def _send_batches(self, kpf: KernelPF, changes: list["_Change"]):
        """As few messages as possible; returns (sent as a batch, to program alone, messages sent)."""
        pending, sent, alone, messages = list(changes), [], [], 0
        while pending:
            chunk = pending[:nl.MAX_VFS_PER_MESSAGE]
            messages += 1
            try:
                self.rtnl.set_link(self._ifindex(kpf), vf=[nl.vf_spec(c.vfid, c.target, c.ops) for c in chunk])
                sent += chunk
                pending = pending[len(chunk):]
                continue
            except (nl.NetlinkError, BackendError) as exc:
                self._forget(kpf)
                try:
                    after = self._read(kpf, fresh=True).vfs
                except BackendError:
                    after = {}
                log.info("PF %s: a batch of %d VF changes was refused (%s); finding the VF", kpf.id, len(chunk), exc)
            # The kernel applies the list in order and stops at the refused VF: the VFs before it are done.
            k = next((i for i, c in enumerate(chunk) if self._unmet(kpf, c, after.get(c.vfid) or {})), None)
            if k is None:
                k = len(chunk) - 1
            sent += chunk[:k]
            bad = chunk[k]
            if after.get(bad.vfid):
                self._put_back(kpf, bad.vfid, bad.before, after[bad.vfid])
            alone.append(bad)
            pending = chunk[k + 1:] + pending[len(chunk):]
        self._forget(kpf)
        return sent, alone, messages

    def _report(self, kpf: KernelPF, staged: dict, failed: dict[int, BackendError]) -> None:
        for vfid in staged:
            self.startup_errors.pop((kpf.id, vfid), None)
        for vfid, exc in sorted(failed.items()):
            self.startup_errors[(kpf.id, vfid)] = str(exc)
            log.error("PF %s VF %d: %s at start-up failed: %s", kpf.id, vfid, staged[vfid].kind, exc)

    def _commit_all(self) -> None:
        for kpf in list(self.pfs.values()):
            self._commit(kpf)

    def read_vf(self, pf_id: str, vfid: int) -> dict:
        """The VF as the NIC reports it, in VFProgram.to_state() terms (plus `pcp` and `present`).

        A VF that does not exist (VFs vanished) reads as all None: it differs from every program,
        so the manager's reconcile re-applies it, and apply_vf re-creates the VFs.
        """
        kpf = self._pf(pf_id)
        self._commit(kpf)
        snap = self._read(kpf)
        k = snap.vfs.get(vfid)
        if k is None or snap.num_vf != kpf.want_vfs:
            return {**{key: None for key in PROGRAM_KEYS}, "pcp": None, "present": False}
        state = self._state(kpf, k)
        if kpf.sw:                                                  # --- switchdev hook
            sw = self.switchdev.read_vf(pf_id, vfid)
            state.update(max_rate=sw["max_rate"], min_rate=sw["min_rate"], mirror=sw["mirror"])
        return state

    @staticmethod
    def _state(kpf: KernelPF, k: dict) -> dict:
        """A VF's rtnetlink attributes in VFProgram.to_state() terms (read_vf and the drift check)."""
        row = driver_row(kpf.driver)
        vlan = k["vlan"]
        return {
            "mac": k["mac"], "macs": [], "vlans": [vlan] if vlan else [], "strip": bool(vlan), "insert": vlan,
            "vlan_proto": "802.1ad" if (vlan and k["proto"] == nl.ETH_P_8021AD) else "802.1q",
            "mac_anti_spoof": k["spoofchk"],
            "vlan_anti_spoof": k["spoofchk"] if row.spoofchk_is_vlan_too else True,
            "bcast": True, "mcast": True, "uucast": k["trust"], "untagged": False,
            "max_rate": k["max_tx_rate"], "min_rate": k["min_tx_rate"],
            "link": LINK_NAME.get(k["link_state"], str(k["link_state"])), "mirror": None,
            "pcp": k["qos"], "strip_ctag": False, "present": True,
        }

    @staticmethod
    def _unreported(kpf: KernelPF, k: dict | None) -> set[str]:
        """Program fields a VF's attributes do not report: a driver without trust or spoofchk in its
        IFLA_VF_INFO (then vfd sends only an explicit "on" and cannot read the setting back)."""
        out = set()
        if k is not None and k.get("trust") is None:
            out.add("uucast")
        if k is not None and k.get("spoofchk") is None:
            out.add("mac_anti_spoof")
            if driver_row(kpf.driver).spoofchk_is_vlan_too:
                out.add("vlan_anti_spoof")
        return out

    def unverifiable_fields(self, pf_id: str) -> frozenset[str]:
        kpf = self._pf(pf_id)
        snap = kpf.snap
        if snap is None:
            return frozenset()
        out: set[str] = set()
        for vfid in range(snap.num_vf):
            out |= self._unreported(kpf, snap.vfs.get(vfid))
        return frozenset(out)

    def read_kernel_vf(self, pf_id: str, vfid: int) -> dict | None:
        """The VF in rtnetlink terms (mac, vlan, qos, proto, spoofchk, trust, rates, link_state)."""
        kpf = self._pf(pf_id)
        self._commit(kpf)
        return self._read(kpf, fresh=True).vfs.get(vfid)

    def apply_qos(self, pf_id: str, tclasses: list[dict], shares: dict[int, dict[int, int]]) -> None:
        """Only in switchdev mode (dcbnl + devlink rate tc-bw, switchdev.py); legacy mode refuses."""
        kpf = self._pf(pf_id)
        if not kpf.sw:
            return super().apply_qos(pf_id, tclasses, shares)
        self.switchdev.apply_qos(pf_id, tclasses, shares,
                                 self.desired(pf_id))

    # ========================================================================== counters =========
    def pf_stats(self, pf_id: str) -> PortStats:
        kpf = self._pf(pf_id)
        self._commit(kpf)
        snap = self._read(kpf, stats=True)
        s = snap.stats
        return PortStats(link="UP" if snap.lower_up else "DOWN", speed=kpf.speed,
                         duplex=self.sysfs.duplex(kpf.ifname),
                         rx_pkts=s.get("rx_packets", 0), rx_bytes=s.get("rx_bytes", 0),
                         rx_errors=s.get("rx_errors", 0), rx_dropped=s.get("rx_dropped", 0),
                         tx_pkts=s.get("tx_packets", 0), tx_bytes=s.get("tx_bytes", 0),
                         tx_errors=s.get("tx_errors", 0))

    def vf_stats(self, pf_id: str, vfid: int) -> PortStats:
        """IFLA_VF_STATS (netdevsim and drivers without ndo_get_vf_stats report zeros)."""
        kpf = self._pf(pf_id)
        self._commit(kpf)
        snap = self._read(kpf, stats=True)
        s = snap.vf_stat(vfid)
        k = snap.vfs.get(vfid)
        if k is None:
            link = "-UNK-"
        else:
            link = {1: "UP", 2: "DOWN"}.get(k["link_state"], "UP" if snap.lower_up else "DOWN")
        return PortStats(link=link, rx_pkts=s.get("rx_packets", 0), rx_bytes=s.get("rx_bytes", 0),
                         rx_dropped=s.get("rx_dropped", 0), tx_pkts=s.get("tx_packets", 0),
                         tx_bytes=s.get("tx_bytes", 0))

    def vf_pci_address(self, pf_id: str, vfid: int) -> str | None:
        """From sysfs once per VF (every add's reply carries it), again after the VFs are re-created."""
        kpf = self.pfs.get(pf_id)
        if kpf is None or kpf.pci is None:         # not a PCI PF (netdevsim): its VFs have no address
            return None
        pci = kpf.vf_pci.get(vfid)
        if pci is None:
            pci = self.sysfs.vf_pci_address(kpf.ifname, vfid)
            if pci is not None:
                kpf.vf_pci[vfid] = pci
        return pci

    # ============================================================================ events ==========
    def attach(self, loop, sink) -> None:
        self._commit_all()
        self.staging = False
        self.loop, self.sink = loop, sink
        for kpf in self.pfs.values():
            kpf.gen += 1                    # nothing watched the PFs until now: no earlier read serves
        try:
            self.monitor = self._monitor_factory()
            loop.add_reader(self.monitor.fileno(), self._on_events)
        except OSError as exc:
            self.monitor = None
            log.error("kernel backend: no rtnetlink event socket (%s); relying on the periodic check", exc)
        for kpf in self.pfs.values():
            self._schedule_check(kpf)       # anything that happened before the loop ran
        self._poll_handle = loop.call_later(self.main.reconcile_interval, self._poll)

    def _on_events(self) -> None:
        self._drain()

    def _drain(self) -> None:
        """Take every pending link event: each one for a PF makes its earlier reads stale and schedules
        a check. Also called before every read, so a read always covers the events taken before it
        (a change's own event is taken before the read that verifies it)."""
        if self.monitor is None:
            return
        try:
            events, lost = self.monitor.read()
        except OSError as exc:
            log.error("rtnetlink event socket: %s", exc)
            return
        if not events and not lost:
            return
        touched: dict[str, int] = {}         # PF -> events for it (lost ones count as two: never "only ours")
        if lost:
            log.warning("rtnetlink events were lost (ENOBUFS): checking every PF")
            touched.update((pf_id, 2) for pf_id in self.pfs)
        for mtype, ifindex, _flags, _name in events:
            for kpf in self.pfs.values():
                if kpf.ifindex == ifindex:
                    if mtype == nl.RTM_DELLINK:
                        log.warning("PF %s: netdev %s removed (driver unload?)", kpf.id, kpf.ifname)
                        kpf.ifindex = None
                    touched[kpf.id] = touched.get(kpf.id, 0) + 1
                elif kpf.ifindex is None and mtype == nl.RTM_NEWLINK:
                    touched[kpf.id] = touched.get(kpf.id, 0) + 2   # a reloaded driver's netdev may be this PF
        for pf_id, count in touched.items():
            kpf = self.pfs[pf_id]
            kpf.gen += count
            if kpf.holding:
                kpf.held = True
            else:
                self._schedule_check(kpf)

    def _release_check(self, kpf: KernelPF, gen_before: int, check_was_pending: bool, verified: bool) -> None:
        """After a change's message and read-back: the check its events call for is scheduled now,
        unless the change was verified and the PF saw exactly one event since just before the
        message. That event is the message's own (the kernel announces each RTM_NEWLINK that changes
        VFs with one RTM_NEWLINK of the PF, netdev_state_change) and nobody else changed the PF in
        between, so the read-back already shows everything the check would read. Any other count
        (another writer, a link flap, lost events, a PF that is down and announces nothing) gets the
        check, as does switchdev mode (its devlink and tc state is not in the read). Held rather than
        scheduled and then cancelled: a timer per change costs the loop's heap more than the test."""
        held, kpf.held = kpf.held, False
        if held and not (verified and not check_was_pending and not kpf.sw and kpf.gen == gen_before + 1):
            self._schedule_check(kpf)

    def _schedule_check(self, kpf: KernelPF, delay: float = EVENT_DELAY) -> None:
        if self.loop is not None and kpf.check_handle is None:
            kpf.check_handle = self.loop.call_later(delay, self._check, kpf)

    def _emit(self, event: NicEvent) -> None:
        if self.sink is None:
            return
        try:
            self.sink(event)
        except Exception:  # noqa: BLE001 - an event handler must not stop the checks
            log.exception("handling %s on PF %s failed", event.kind, event.pf_id)

    def check_pf(self, pf_id: str, fresh: bool = True) -> list[NicEvent]:
        """Compare one PF with what vfd programmed; re-create vanished VFs. Returns the events raised."""
        return self._check(self.pfs[pf_id], fresh)

    def _check(self, kpf: KernelPF, fresh: bool = False) -> list[NicEvent]:
        """One read of the PF (none when the events show the last one is current); only VFs whose
        bytes changed since they last matched their program are compared."""
        kpf.check_handle = None
        raised: list[NicEvent] = []
        try:
            if kpf.ifindex is None and not self._resolve(kpf):
                return raised             # still gone: the next event or poll looks again
            self._commit(kpf)
            snap = self._read(kpf, fresh=fresh, program=True)
            if snap.ifname and snap.ifname != kpf.ifname:
                log.warning("PF %s: netdev %s renamed to %s", kpf.id, kpf.ifname, snap.ifname)
                kpf.ifname = snap.ifname
            up = snap.lower_up
            if kpf.link_up is not None and up != kpf.link_up:
                raised.append(NicEvent("link_up" if up else "link_down", kpf.id, detail=f"netdev {kpf.ifname}"))
            kpf.link_up = up
            if snap.num_vf != kpf.want_vfs:
                self._recreate(kpf, snap.num_vf, notify_later=True)
                return raised
            if kpf.cfg.promiscuous and not snap.promisc:
                log.warning("PF %s: promiscuous mode was turned off behind vfd's back; turning it on", kpf.id)
                self._set_promisc(kpf)
                snap = kpf.snap
            now = time.monotonic()
            raw_of = snap.vfs.raw if isinstance(snap.vfs, nl.VFTable) else (lambda _vfid: None)
            for vfid, program in self.desired(kpf.id).items():
                raw = raw_of(vfid)
                seen = kpf.in_sync.get(vfid)
                if raw is not None and seen is not None and seen[0] is program and seen[1] == raw and not kpf.sw:
                    continue                  # the same bytes that matched this program last time
                                              # (switchdev: devlink and tc state is not in those bytes)
                have = snap.vfs.get(vfid)
                # The one drift check, as status and apply_vf have it (switchdev's part: switchdev.mismatches).
                bad = [c for c in self._checks(kpf, program, have) if c.differs] \
                    if have is not None else [FieldCheck("present", True, False, "differs")]
                sw_bad = self.switchdev.mismatches(kpf.id, vfid, program) if kpf.sw else []
                if not bad and not sw_bad:
                    if raw is not None:
                        kpf.in_sync[vfid] = (program, raw)
                    continue
                # A repair that keeps failing must not loop on its own events: once per interval.
                if now - kpf.last_drift.get(vfid, -1e9) < self.main.reconcile_interval:
                    continue
                kpf.last_drift[vfid] = now
                self.repairs += 1
                detail = ", ".join([f"{c.field} {canonical(c.programmed)} (want {canonical(c.desired)})"
                                    for c in bad] + sw_bad)
                log.warning("drift on PF %s VF %d: %s; re-applying", kpf.id, vfid, detail)
                raised.append(NicEvent("drift", kpf.id, vfid, detail=detail))
        except BackendError as exc:
            log.warning("checking PF %s failed: %s", kpf.id, exc)
        for ev in raised:
            self._emit(ev)
        return raised

    def _poll(self) -> None:
        """Every reconcile_interval: what no event reports (netdevsim's VFs vanishing, a missed event)."""
        self._poll_handle = None
        for kpf in list(self.pfs.values()):
            try:
                present = self.sysfs.numvfs(kpf.ifname) if kpf.ifindex is not None else None
            except OSError:
                present = None
            if present != kpf.want_vfs:
                self._check(kpf, fresh=True)      # no event says so: read anew
        if self.loop is not None:
            self._poll_handle = self.loop.call_later(self.main.reconcile_interval, self._poll)

    # ============================================================================ life ============
    def flush(self) -> None:
        """Send the changes staged at start-up (batched per PF); afterwards nothing is buffered."""
        self._commit_all()

    def close(self) -> None:
        if self.loop is not None:
            if self.monitor is not None:
                try:
                    self.loop.remove_reader(self.monitor.fileno())
                except (ValueError, OSError, RuntimeError):
                    pass
            for kpf in self.pfs.values():
                for handle in (kpf.check_handle, kpf.vf_wait_handle):
                    if handle is not None:
                        handle.cancel()
                kpf.check_handle = kpf.vf_wait_handle = None
            if self._poll_handle is not None:
                self._poll_handle.cancel()
                self._poll_handle = None
            if self._turn_end is not None:
                self._turn_end.cancel()
                self._turn_end = None
        for kpf in self.pfs.values():
            if kpf.staged:
                log.warning("PF %s: %d staged VF changes dropped at close", kpf.id, len(kpf.staged))
                kpf.staged = {}
        if self.monitor is not None:
            self.monitor.close()
            self.monitor = None
        if self._switchdev is not None:
            self._switchdev.close()
        self.originals.close()
        try:
            self.rtnl.close()
        except Exception:  # noqa: BLE001
            pass


@dataclass
class _Change:
    """One VF change: an apply (a program: the drift check says what to send and whether it took) or a
    clear (attributes: the VF's recorded original, or neutral ones). `_plan` fills in the rest from a read."""
    vfid: int
    kind: str                              # apply | clear
    program: VFProgram | None = None
    previous: VFProgram | None = None      # the program `program` replaces (None: not known)
    before: dict = field(default_factory=dict)
    target: dict = field(default_factory=dict)
    ops: list[str] = field(default_factory=list)
    what: str = ""
    restored: bool = False                 # a clear back to a recorded original


def _show(attr: str, value) -> str:
    if value is None:
        return "?"
    if attr == "proto":
        return {nl.ETH_P_8021Q: "802.1Q", nl.ETH_P_8021AD: "802.1ad"}.get(value, hex(value))
    if attr == "link_state":
        return {0: "auto", 1: "enable", 2: "disable"}.get(value, str(value))
    if attr in ("spoofchk", "trust"):
        return "on" if value else "off"
    return str(value)


def _ranges(vfids: list[int]) -> str:
    """[0, 1, 2, 5] -> '0-2, 5'."""
    out: list[str] = []
    for vfid in sorted(vfids):
        if out and out[-1][1] == vfid - 1:
            out[-1] = (out[-1][0], vfid)
        else:
            out.append((vfid, vfid))
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in out)


class _describe:
    """A VF's attributes for a log line, formatted only if the line is written (most are debug)."""
    __slots__ = ("state",)

    def __init__(self, state: dict):
        self.state = state

    def __str__(self) -> str:
        return ", ".join(f"{a} {_show(a, self.state.get(a))}" for a in nl.ATTRS)
