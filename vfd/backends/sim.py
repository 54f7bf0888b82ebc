"""The sim NIC: a software PF with VFs, standing in for ixgbe / i40e / bnxt / mlx5 hardware.

Its "registers" are a JSON file per PF (`<sim_state_dir>/<pf id>.json`, the id percent-encoded
where it is not a plain file name character, see `state_file_name`) that users and tests read to see exactly what vfd programmed. Two optional files let tests play the world outside:
`<pf id>.stats.json` (counters the NIC would report) and `<pf id>.faults.json`
(`{"fail": ["max_rate", ...]}`: those operations fail as a driver would, to exercise rollback).
The capability profile of each family is `vfd.capabilities.PROFILES`.
"""

from __future__ import annotations

import copy
import json
import logging
import random
import urllib.parse
from pathlib import Path

from vfd.backends.base import COUNTERS, NicBackend, NicEvent, PFInfo, PortStats, pci_vf_address
from vfd.backends.fswatch import DirWatch
from vfd.capabilities import Feature, check_pf_settings, profile_for
from vfd.errors import BackendError
from vfd.macaddr import random_local_mac
from vfd.model.mainconfig import PFConfig, SimNic
from vfd.program import APPLY_ORDER, VFProgram, cleared_state, compare
from vfd.store import atomic_write, remove_stale_temps

log = logging.getLogger("vfd.sim")

# 82599-style SR-IOV layout unless the PF's sim object says otherwise (reference: VF 1 of
# 0000:07:00.0 is 0000:07:10.2).
DEFAULT_VF_OFFSET = 128
DEFAULT_VF_STRIDE = 2
# What the families can do but the model has no part for: VFs here send no mailbox messages.
NOT_MODELLED = frozenset({Feature.MAILBOX})


def state_file_name(pf_id: str) -> str:
    """One file name per PF id, never shared: every byte outside [A-Za-z0-9_.~:-] is percent-encoded
    ("%" included), so `pf/a` is `pf%2Fa.json` and `pf_a` stays `pf_a.json`. PCI ids are unchanged."""
    name = urllib.parse.quote(pf_id, safe=":")
    return {".": "%2E", "..": "%2E%2E"}.get(name, name) + ".json"


def sim_pf_info(main, pf: PFConfig) -> PFInfo:
    """What a sim PF is, from the main config alone (no state file touched): start-up and
    `vfd --check` both use it, so both refuse the same configs with the same message."""
    nic = pf.sim or SimNic()
    family = profile_for(nic.driver)
    profile = family.narrowed(family.features - NOT_MODELLED)
    vfs_count = pf.vfs_count if pf.vfs_count is not None else min(8, profile.max_vfs)
    if vfs_count > profile.max_vfs:
        raise BackendError(pf.id, "create VFs", f"vfs_count {vfs_count} exceeds the {nic.driver} maximum "
                                                f"of {profile.max_vfs}")
    check_pf_settings(pf.id, "sim", profile, enable_loopback=pf.enable_loopback, enable_qos=main.enable_qos)
    return PFInfo(pf_id=pf.id, driver=nic.driver, profile=profile, vfs_count=vfs_count,
                  link_speed=pf.speed or nic.speed)


class SimPF:
    def __init__(self, cfg: PFConfig, nic: SimNic, vfs_count: int, mtu: int, path: Path, rng: random.Random):
        self.cfg = cfg
        self.nic = nic
        self.path = path
        self.rng = rng
        self.dirty = False
        self.mtime_ns = 0
        self._stats: dict = {}
        self._stats_mtime = -1
        self.stats_path = path.with_suffix(".stats.json")
        self.state = self._load_or_power_on(vfs_count, mtu)
        self.ops: list[tuple] = []   # (vfid, op, value) in the order applied: lets tests check order

    def _load_or_power_on(self, vfs_count: int, mtu: int) -> dict:
        try:
            state = json.loads(self.path.read_text())
            if state.get("vfs_count") == vfs_count and len(state.get("vfs", {})) == vfs_count:
                state["mtu"] = mtu
                self.dirty = True
                return state
            log.info("sim PF %s: VF count changed, powering on afresh", self.cfg.id)
        except (OSError, ValueError):
            pass
        self.dirty = True
        return {"vfs_count": vfs_count, "mtu": mtu, "loopback": False, "promiscuous": False,
                "driver": self.nic.driver, "speed": self.nic.speed, "link": "up",
                "vfs": {str(i): cleared_state(random_local_mac(self.rng)) for i in range(vfs_count)}}

    def vf(self, vfid: int) -> dict:
        return self.state["vfs"][str(vfid)]

    def refresh(self) -> bool:
        """The state file is the NIC's registers: an edit by hand is drift that vfd must see.
        Returns True when the registers were re-read (someone else wrote them)."""
        try:
            mtime = self.path.stat().st_mtime_ns
        except OSError:
            return False
        if mtime == self.mtime_ns or self.dirty:
            return False
        self.mtime_ns = mtime
        try:
            state = json.loads(self.path.read_text())
            if len(state.get("vfs", {})) == self.state["vfs_count"]:
                self.state = state
                return True
        except ValueError:
            pass
        log.warning("sim PF %s: state file unreadable; keeping the last programmed state", self.cfg.id)
        return False

    def faults(self) -> set[str]:
        try:
            return set(json.loads(self.path.with_suffix(".faults.json").read_text()).get("fail", []))
        except (OSError, ValueError, AttributeError):
            return set()

    def stats(self) -> dict:
        """Injected counters, re-read only when the file changes (show reads them once per VF)."""
        path = self.stats_path
        try:
            mtime = path.stat().st_mtime_ns
        except OSError:
            return {}
        if mtime != self._stats_mtime:
            try:
                self._stats = json.loads(path.read_text())
            except (OSError, ValueError):
                self._stats = {}
            self._stats_mtime = mtime
        return self._stats

    def flush(self) -> None:
        if self.dirty:
            # Registers, not desired state: the daemon reprograms the sim at every start, so the
            # file need not survive a power cut (no fsync), only never be seen torn (rename).
            atomic_write(self.path, json.dumps(self.state, indent=1, sort_keys=True).encode(), durable=False)
            self.dirty = False
            self.mtime_ns = self.path.stat().st_mtime_ns


class SimBackend(NicBackend):
    name = "sim"

    def __init__(self, main):
        super().__init__(main)
        self.dir = Path(main.sim_state_dir)
        self.pfs: dict[str, SimPF] = {}
        self.rng = random.Random()
        self.watch: DirWatch | None = None
        self.loop = self.sink = None

    # ---- PF ---------------------------------------------------------------------------------
    def open_pf(self, pf: PFConfig) -> PFInfo:
        """Every family the sim models (ixgbe, i40e, bnxt, mlx5) has PF flow control and can keep or
        strip the CRC: both are programmed and shown in the state file ("flow_control", "strip_crc")."""
        info = sim_pf_info(self.main, pf)
        nic = pf.sim or SimNic()
        path = self.dir / state_file_name(pf.id)
        clash = next((other for other in self.pfs.values() if other.path == path), None)
        if clash is not None:
            raise BackendError(pf.id, "open", f"state file {path} is already PF {clash.cfg.id}'s")
        self.dir.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(self.dir)
        spf = SimPF(pf, nic, info.vfs_count, self.main.mtu_of(pf), path, self.rng)
        spf.state["loopback"] = pf.enable_loopback
        spf.state["promiscuous"] = pf.promiscuous
        spf.state["flow_control"] = self.main.enable_flowcontrol
        spf.state["strip_crc"] = pf.hw_strip_crc
        self.pfs[pf.id] = spf
        spf.flush()
        return info

    def _pf(self, pf_id: str) -> SimPF:
        spf = self.pfs[pf_id]
        spf.refresh()
        return spf

    # ---- VF ---------------------------------------------------------------------------------
    def _set(self, spf: SimPF, vfid: int, op: str, value, faults: set[str]) -> None:
        if op in faults:
            raise BackendError(spf.cfg.id, f"set {op}", "operation refused by the NIC (sim fault injection)", vfid)
        spf.vf(vfid)[op] = copy.deepcopy(value)
        spf.ops.append((vfid, op, value))
        spf.dirty = True

    def apply_vf(self, pf_id: str, vfid: int, program: VFProgram, previous: VFProgram | None) -> None:
        """Set what the registers do not already hold (the one drift check says which), in the one
        apply order; a program without a default MAC leaves the VF's own MAC alone."""
        spf = self._pf(pf_id)
        target = program.to_state()
        faults = spf.faults()
        differs = {c.field for c in compare(program, spf.vf(vfid)) if c.differs}
        for op in APPLY_ORDER:
            if op in differs:
                self._set(spf, vfid, op, target[op], faults)

    def clear_vf(self, pf_id: str, vfid: int, previous: VFProgram | None) -> None:
        spf = self._pf(pf_id)
        cur = spf.vf(vfid)
        configured = bool(cur["vlans"] or cur["macs"]) or previous is not None
        mac = random_local_mac(self.rng) if configured else cur["mac"]
        target = cleared_state(mac)
        for op, value in target.items():
            if cur.get(op) != value:
                self._set(spf, vfid, op, value, set())

    def apply_qos(self, pf_id: str, tclasses: list[dict], shares: dict[int, dict[int, int]]) -> None:
        spf = self._pf(pf_id)
        if "qos" in spf.faults():
            raise BackendError(pf_id, "set qos", "operation refused by the NIC (sim fault injection)")
        qos = {"tclasses": tclasses,
               "shares": {str(v): {str(tc): pct for tc, pct in s.items()} for v, s in sorted(shares.items())}}
        if spf.state.get("qos") != qos:
            spf.state["qos"] = qos
            spf.dirty = True

    def read_vf(self, pf_id: str, vfid: int) -> dict:
        return copy.deepcopy(self._pf(pf_id).vf(vfid))

    # ---- counters ---------------------------------------------------------------------------
    def pf_stats(self, pf_id: str) -> PortStats:
        spf = self._pf(pf_id)      # refreshed: the link state lives in the registers
        counters = spf.stats().get("pf", {})
        link = "UP" if spf.state.get("link", "up") == "up" else "DOWN"
        return PortStats(link=link, speed=spf.cfg.speed or spf.nic.speed, duplex=1, **_counters(counters))

    def vf_stats(self, pf_id: str, vfid: int) -> PortStats:
        spf = self.pfs[pf_id]      # show reads every VF right after pf_stats refreshed the registers
        counters = spf.stats().get("vfs", {}).get(str(vfid), {})
        link = {"on": "UP", "off": "DOWN"}.get(spf.vf(vfid)["link"], "UP" if spf.state.get("link") == "up" else "DOWN")
        return PortStats(link=link, **_counters(counters))

    def vf_pci_address(self, pf_id: str, vfid: int) -> str | None:
        spf = self.pfs[pf_id]
        offset = spf.nic.vf_offset if spf.nic.vf_offset is not None else DEFAULT_VF_OFFSET
        stride = spf.nic.vf_stride if spf.nic.vf_stride is not None else DEFAULT_VF_STRIDE
        return pci_vf_address(pf_id, offset, stride, vfid)

    def flush(self) -> None:
        for spf in self.pfs.values():
            spf.flush()

    # ---- events -----------------------------------------------------------------------------
    def attach(self, loop, sink) -> None:
        """Edits of a state file become events at once: a link going up re-applies the PF (as a
        real NIC's link-state interrupt does), changed VF registers are drift."""
        try:
            self.watch = DirWatch(str(self.dir))
        except OSError as exc:
            log.info("sim: no file events (%s); the periodic reconcile catches drift", exc)
            return
        self.loop, self.sink = loop, sink
        loop.add_reader(self.watch.fd, self._on_files)

    def _on_files(self) -> None:
        names = self.watch.read()
        for spf in self.pfs.values():
            if spf.path.name not in names:
                continue
            link_before, vfs_before = spf.state.get("link"), copy.deepcopy(spf.state["vfs"])
            if not spf.refresh():
                continue
            link = spf.state.get("link")
            if link != link_before:
                self.sink(NicEvent("link_up" if link == "up" else "link_down", spf.cfg.id, detail="sim link"))
                if link == "up":
                    continue                    # the PF is re-applied whole
            for vfid, regs in spf.state["vfs"].items():
                if regs != vfs_before.get(vfid):
                    self.sink(NicEvent("drift", spf.cfg.id, int(vfid), detail="sim registers changed"))

    def close(self) -> None:
        self.flush()
        if self.watch is not None:
            if self.loop is not None:
                try:
                    self.loop.remove_reader(self.watch.fd)
                except (RuntimeError, ValueError):
                    pass
            self.watch.close()
            self.watch = None


def _counters(d: dict) -> dict:
    return {k: int(d.get(k, 0)) for k in COUNTERS if isinstance(d.get(k, 0), int)}
