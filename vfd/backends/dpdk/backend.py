"""The dpdk backend: the PF under a DPDK 22.11 PMD (ixgbe, i40e, bnxt), as the original VFd ran it.

One `DpdkBackend` per daemon process.  It initialises EAL once (the original's settings, an allow-list of
the configured PFs, `--vdev` for a non-PCI id), brings each PF port up as reference 5.1 says, programs VFs
through a per-PMD adapter (`pmd_ixgbe`, `pmd_i40e`, `pmd_bnxt`; every other driver gets `NoVfApiAdapter`,
whose empty profile makes admission refuse every VF naming the driver), polices guest mailbox requests
with `vfd.policy.mailbox`, turns link and VF-reset events into `NicEvent`s on the daemon's loop, and
closes ports and EAL on every exit path.

Threads: DPDK runs LSC and mailbox callbacks on its interrupt thread.  A mailbox verdict must be written
before the callback returns, so the policy runs there, under `self.lock` (which also guards the VF
records the loop thread updates while applying).  Everything else is handed to the asyncio loop with
`call_soon_threadsafe`; the refresh queue is a timer on that loop (200 ms, only while something waits).

The adapters reach DPDK only through the module object they are given (`vfd.backends.dpdk.ffi` in
production, a recording stand-in in tests), by function name.
"""

from __future__ import annotations

import atexit
import ctypes
import errno as _errno
import logging
import os
import re
import shutil
import threading
import time
from dataclasses import dataclass, field

from vfd.backends.base import NicBackend, NicEvent, PFInfo, PortStats, pci_vf_address
from vfd.capabilities import PROFILES, DriverProfile, Feature
from vfd.errors import BackendError
from vfd.macaddr import random_local_mac
from vfd.model.mainconfig import MainConfig, PFConfig
from vfd.policy import mailbox as mbx
from vfd.program import VFProgram, cleared_state

from . import ffi as real_ffi

log = logging.getLogger("vfd.dpdk")

DEFAULT_FILE_PREFIX = "vfd"
PREFIX_ENV = "VFD_DPDK_FILE_PREFIX"        # tests run their own daemon next to a real one
RX_DESC = 128                               # reference 5.1: 1 RX ring of 128, 1 TX ring of 64
TX_DESC = 64
POOL_MBUFS = 511                            # per PF port: enough for the RX ring plus slack
NO_HUGE_MEM_MB = 64
REFRESH_INTERVAL = 0.2                      # reference 7.2: the vfd-rq thread woke every 200 ms
REFRESH_SETTLE = 0.5                        # no queue probe: ready once the mailbox was quiet this long
REFRESH_GIVE_UP = 300.0                     # a VF that never comes up leaves the queue (next reset re-queues)
PCI_RE = re.compile(r"^(?:([0-9a-fA-F]{4}):)?([0-9a-fA-F]{2}):([0-9a-fA-F]{2})\.([0-7])$")
SYSFS_PCI = "/sys/bus/pci/devices"
RX_OFFLOAD_KEEP_CRC = 1 << 16               # RTE_ETH_RX_OFFLOAD_KEEP_CRC (rte_ethdev.h); hw_strip_crc false


# ---------------------------------------------------------------------------------------------------
# EAL arguments (pure)
# ---------------------------------------------------------------------------------------------------


def is_pci(pf_id: str) -> bool:
    return PCI_RE.match(pf_id) is not None


def pci_name(pf_id: str) -> str:
    """DPDK's spelling of a PCI address: lowercase with a domain ('0000:07:00.0')."""
    m = PCI_RE.match(pf_id)
    if not m:
        return pf_id
    dom, bus, dev, fn = m.groups()
    return f"{dom or '0000'}:{bus}:{dev}.{fn}".lower()


def port_name(pf_id: str) -> str:
    """The ethdev name a PF id yields: the PCI address, or the vdev name before its ',args'."""
    return pci_name(pf_id) if is_pci(pf_id) else pf_id.split(",", 1)[0]


def cpu_core(cpu_mask: str, allowed: set[int] | None = None) -> int:
    """The one core of `cpu_mask` ("0x04" -> 2).  When the process may not run there (cgroups, small VMs)
    the lowest allowed core is used instead, with a warning: EAL would refuse to start otherwise."""
    value = int(cpu_mask, 16) if cpu_mask.lower().startswith("0x") else int(cpu_mask)
    core = max(value.bit_length() - 1, 0)
    if allowed and core not in allowed:
        fallback = min(allowed)
        log.warning("cpu_mask %s names core %d, which this process may not use; using core %d",
                    cpu_mask, core, fallback)
        return fallback
    return core


def eal_args(main: MainConfig, pf_ids: list[str], prefix: str = DEFAULT_FILE_PREFIX,
             allowed_cores: set[int] | None = None) -> list[str]:
    """The original's EAL command line (reference 1.4 step 6), for DPDK 22.11.

    -c <one core> -n 4 --file-prefix vfd --log-level <dpdk_init_log_level>, then --socket-mem <numa_mem>
    or (huge_pages false) --no-huge -m 64 --no-shconf, --no-telemetry, and the allow-list: -a <pci> per PCI
    PF, --vdev <id> per other PF, --no-pci when no PF is a PCI device.
    """
    core = cpu_core(main.cpu_mask, allowed_cores)
    args = ["vfd", "-c", f"0x{1 << core:x}", "-n", "4", "--file-prefix", prefix,
            "--log-level", str(max(1, main.dpdk_init_log_level))]   # DPDK levels are 1 (EMERG) .. 8 (DEBUG)
    if main.huge_pages:
        args += ["--socket-mem", main.numa_mem]
    else:
        args += ["--no-huge", "-m", str(NO_HUGE_MEM_MB), "--no-shconf"]
    args.append("--no-telemetry")     # the telemetry socket would keep /var/run/dpdk/<prefix> until exit
    pci = False
    for pf_id in pf_ids:
        if is_pci(pf_id):
            args += ["-a", pci_name(pf_id)]
            pci = True
        else:
            args += ["--vdev", pf_id]
    if not pci:
        args.append("--no-pci")
    return args


def runtime_dir(prefix: str) -> str:
    base = "/var/run" if os.geteuid() == 0 else os.environ.get("XDG_RUNTIME_DIR", "/tmp")
    return os.path.join(base, "dpdk", prefix)


# ---------------------------------------------------------------------------------------------------
# Functions vfd needs that ffi.py does not bind (looked up by name after ffi's own)
# ---------------------------------------------------------------------------------------------------


class _ExtraBindings:
    """ctypes bindings for the few 22.11 calls ffi.py lacks, prototypes from /usr/include/dpdk:
    int rte_eth_dev_uc_all_hash_table_set(uint16_t port_id, uint8_t on)   (rte_ethdev.h)
    void rte_log_set_global_level(uint32_t level)                          (rte_log.h)
    """

    PROTOS = {
        "uc_all_hash_table_set": ("ethdev", "rte_eth_dev_uc_all_hash_table_set", ctypes.c_int,
                                  [ctypes.c_uint16, ctypes.c_uint8]),
        "log_set_global_level": ("eal", "rte_log_set_global_level", None, [ctypes.c_uint32]),
    }

    def __init__(self) -> None:
        self._funcs: dict[str, object] = {}

    def names(self) -> set[str]:
        return set(self.PROTOS)

    def get(self, name: str):
        if name not in self.PROTOS:
            return None
        if name not in self._funcs:
            real_ffi.load()
            lib_key, sym, restype, argtypes = self.PROTOS[name]
            f = getattr(ctypes.CDLL(real_ffi.library_path(lib_key), mode=ctypes.RTLD_GLOBAL), sym)
            f.restype, f.argtypes = restype, argtypes

            def call(*args, check: bool = True, _f=f, _sym=sym):
                if _sym == "rte_eth_dev_uc_all_hash_table_set" and not real_ffi.eth_dev_is_valid_port(args[0]):
                    rc = -_errno.ENODEV
                else:
                    rc = _f(*args)
                rc = 0 if rc is None else int(rc)
                if check and rc < 0:
                    raise real_ffi.DpdkError(_sym, rc)
                return rc
            self._funcs[name] = call
        return self._funcs[name]


EXTRA = _ExtraBindings()


def ffi_function(ffi, name: str):
    """`name` from the given ffi module (or stand-in), else from the extra bindings."""
    fn = getattr(ffi, name, None)
    if fn is None:
        fn = EXTRA.get(name)
    if fn is None:
        raise AttributeError(f"no DPDK binding named {name}")
    return fn


# ---------------------------------------------------------------------------------------------------
# Per-VF record: what vfd has put in the NIC, and what the guest was allowed to add
# ---------------------------------------------------------------------------------------------------

GATE_FIELDS = ("bcast", "mcast", "uucast", "untagged")


@dataclass
class VFRecord:
    program: VFProgram | None = None       # last program applied in full or in part (None: not managed)
    vlans: set[int] = field(default_factory=set)    # VLAN filters vfd set on the NIC
    allow: list[str] = field(default_factory=list)  # allow-list MACs vfd added on the NIC
    default: str | None = None             # default MAC vfd set
    guest_mac: str | None = None           # default MAC the guest set through the mailbox (approved)
    guest_macs: list[str] = field(default_factory=list)  # allow-list MACs the guest added (approved)
    queues_ready: bool | None = None       # i40e: from ENABLE/DISABLE_QUEUES messages
    last_mbox: float = 0.0                 # monotonic time of the VF's last mailbox message
    mbox_count: int = 0

    def all_macs(self) -> set[str]:
        macs = set(self.allow) | set(self.guest_macs)
        if self.program is not None and self.program.mac:
            macs.add(self.program.mac)
        if self.guest_mac:
            macs.add(self.guest_mac)
        return macs

    def effective_default(self) -> str | None:
        """The guest's approved default wins over the config's (reference 6.1: stored at index 0 and used on
        every later apply); a config change of the default MAC clears the guest's choice."""
        if self.guest_mac:
            return self.guest_mac
        return self.program.mac if self.program is not None else None


# ---------------------------------------------------------------------------------------------------
# PMD adapters
# ---------------------------------------------------------------------------------------------------


class PmdAdapter:
    """The operations every PMD module implements (the original's vfd_ixgbe.c / vfd_i40e.c / vfd_bnxt.c).

    `apply` and `teardown` are shared: they run the operations in the order of reference 5.2 and keep the
    VF record in step with what reached the NIC.  A PMD module overrides the operations with its calls.
    """

    family = "none"              # policy family: ixgbe / i40e / bnxt
    driver = ""                  # DPDK driver name, e.g. net_ixgbe
    has_vf_api = True
    has_mailbox = True
    pf_allmulti = True           # reference 5.1: all-multicast on the PF (off for bnxt)
    profile: DriverProfile

    def __init__(self, ffi, port: int, pf_id: str, driver: str | None = None):
        self.ffi = ffi
        self.port = port
        self.pf_id = pf_id
        if driver:
            self.driver = driver

    # ---- helpers -----------------------------------------------------------------------------
    def call(self, op: str, vfid: int | None, name: str, *args):
        """One DPDK call; a refusal becomes BackendError naming the operation, the C function and the errno."""
        fn = ffi_function(self.ffi, name)
        try:
            return fn(*args)
        except real_ffi.DpdkError as e:
            raise BackendError(self.pf_id, f"{op} ({e.func})", f"{e.code} {e.errname}", vfid) from None

    def unsupported(self, op: str, vfid: int | None, what: str):
        raise BackendError(self.pf_id, op, f"driver {self.driver} has no {what} in the DPDK 22.11 API", vfid)

    # ---- PF ----------------------------------------------------------------------------------
    def pf_init(self, pf: PFConfig, vfs_count: int) -> None:
        """PF settings after the port started (reference 5.1): loopback, drop enables, PMD-specific."""
        self.set_loopback(pf.enable_loopback)

    def pf_update(self) -> None:
        """Re-asserted on every update pass (reference 5.1 / 5.2 step 14), after the generic PF rx modes."""

    def set_loopback(self, on: bool) -> None:
        if on:
            self.unsupported("enable_loopback", None, "PF TX loopback (VEB) control")

    def ping_vfs(self, vfids: list[int]) -> None:
        """Tell the VFs the link changed (reference 7.1)."""

    # ---- VF operations (reference 5.2) -----------------------------------------------------------
    def set_mirror(self, vfid: int, mirror) -> None:
        self.unsupported("mirror", vfid, "port mirroring (the ethdev mirror API was removed in DPDK 21.11)")

    def set_vlan_filter(self, vfid: int, add: list[int], remove: list[int]) -> None:
        if add or remove:
            self.unsupported("vlans", vfid, "VF VLAN filter")

    def set_macs(self, vfid: int, default: str | None, allow: list[str], added: list[str], removed: list[str],
                 set_default: bool, default_changed: bool = True) -> None:
        """Allow-list MACs `added` (pushed in reverse order), `removed`, then the default MAC last when
        `set_default`.  `allow` is the whole desired allow-list; `default_changed` says the default differs
        from the one vfd set before (a full re-apply sets an unchanged default again)."""
        if added or removed or set_default:
            self.unsupported("macs", vfid, "VF MAC control")

    def set_rates(self, vfid: int, max_rate: int, min_rate: int) -> None:
        if max_rate:
            self.unsupported("max_rate", vfid, "VF TX rate limit")
        if min_rate:
            self.unsupported("min_rate", vfid, "VF guaranteed TX rate")

    def persist_stats(self, vfid: int) -> None:
        """bnxt: keep VF counters across VF driver reloads (reference 5.2 step 5)."""

    def set_anti_spoof(self, vfid: int, vlan: bool | None = None, mac: bool | None = None) -> None:
        if vlan or mac:
            self.unsupported("anti_spoof", vfid, "VF anti-spoof control")

    def set_strip_insert(self, vfid: int, strip: bool | None = None, insert: int | None = None) -> None:
        if strip or insert:
            self.unsupported("strip_insert", vfid, "VF VLAN strip/insert")

    def set_rxmode(self, vfid: int, bcast: bool | None = None, mcast: bool | None = None,
                   uucast: bool | None = None, untagged: bool | None = None, insert: int = 0) -> None:
        if any(v is not None for v in (bcast, mcast, uucast, untagged)):
            self.unsupported("rxmode", vfid, "VF receive-mode control")

    def set_link(self, vfid: int, link: str) -> None:
        if link != "auto":
            self.unsupported("link_status", vfid, "forced VF link state")

    def drop_enable(self, vfid: int, on: bool) -> None:
        """Reset window (reference 7.2): drop rather than stall the VF's RX queues.  No PMD exposes the
        per-VF queue drop enable (PFQDE) in 22.11; ixgbe sets split-RX drop for every VF at init instead."""

    # ---- probes and counters ---------------------------------------------------------------------
    def queue_ready(self, vfid: int, rec: VFRecord) -> bool | None:
        """True/False when the PMD can tell whether the VF's queues are up, None when it cannot."""
        return None

    def vf_stats(self, vfid: int) -> dict | None:
        return None

    def spoof_count(self, vfids: list[int]) -> int:
        return 0

    # ---- mailbox --------------------------------------------------------------------------------
    def decode_mbox(self, ret_param: int) -> tuple[int, int, dict, int | None, int]:
        """-> (vfid, message type, payload, message address, message length)."""
        raise NotImplementedError

    def answer_mbox(self, ret_param: int, msg_addr: int | None, msg_len: int, decision: mbx.Decision) -> None:
        if decision.patch is not None and msg_addr:
            off, data = decision.patch
            if off + len(data) <= msg_len:
                ctypes.memmove(msg_addr + off, data, len(data))
        self._set_retval(ret_param, decision.verdict)

    def _set_retval(self, ret_param: int, verdict: int) -> None:
        raise NotImplementedError

    def msg_name(self, msg_type: int) -> str:
        return f"0x{msg_type:x}"

    # ---- the shared sequences ------------------------------------------------------------------
    def apply(self, vfid: int, rec: VFRecord, program: VFProgram, previous: VFProgram | None) -> None:
        """Reference 5.2 steps 1-12.  With `previous`, only what differs; without, everything (the NIC may
        have lost it).  `rec` follows each step that succeeded, so a later teardown or re-apply knows what
        is in the NIC even after a failure half-way."""
        full = previous is None

        def changed(*names: str) -> bool:
            return full or any(getattr(program, n) != getattr(previous, n) for n in names)

        if previous is not None and previous.mac != program.mac:
            rec.guest_mac = None            # the operator changed the default: the guest's choice goes
        rec.program = program
        # 1. mirror
        if changed("mirror") and (program.mirror is not None or (previous is not None and previous.mirror)):
            self.set_mirror(vfid, program.mirror)
        # 2. VLAN filter
        if changed("vlans") or rec.vlans != set(program.vlans):
            remove = sorted(v for v in rec.vlans if v not in program.vlans)
            add = list(program.vlans) if full else [v for v in program.vlans if v not in rec.vlans]
            for vlan in remove:                     # one at a time: the record stays exact on a failure
                self.set_vlan_filter(vfid, add=[], remove=[vlan])
                rec.vlans.discard(vlan)
            for vlan in add:
                self.set_vlan_filter(vfid, add=[vlan], remove=[])
                rec.vlans.add(vlan)
        # 3. MACs: allow-list first (reverse order), default last
        default = rec.effective_default()
        allow = list(program.macs)
        if full or allow != rec.allow or default != rec.default:
            added = allow if full else [m for m in allow if m not in rec.allow]
            removed = [m for m in rec.allow if m not in allow]
            set_default = default is not None and (full or default != rec.default)
            rec.allow = rec.allow + [m for m in added if m not in rec.allow]   # a superset until it succeeds
            self.set_macs(vfid, default, allow, added, removed, set_default,
                          default_changed=default is not None and default != rec.default)
            rec.allow = allow
            if default is not None:
                rec.default = default
        # 4. rates
        if changed("max_rate", "min_rate"):
            self.set_rates(vfid, program.max_rate, program.min_rate)
        # 5. persistent VF counters (bnxt)
        if full:
            self.persist_stats(vfid)
        # 6-7. VLAN anti-spoof, MAC anti-spoof
        if changed("vlan_anti_spoof", "mac_anti_spoof"):
            self.set_anti_spoof(vfid, vlan=program.vlan_anti_spoof if changed("vlan_anti_spoof") else None,
                                mac=program.mac_anti_spoof if changed("mac_anti_spoof") else None)
        # 8. strip / insert
        if changed("strip", "insert"):
            self.set_strip_insert(vfid, strip=program.strip if changed("strip") else None,
                                  insert=program.insert if changed("insert") else None)
        # 9-11 (+ untagged). broadcast, multicast, unknown unicast
        gates = {g: getattr(program, g) for g in GATE_FIELDS if changed(g)}
        if gates:
            self.set_rxmode(vfid, insert=program.insert, **gates)
        # 12. link state
        if changed("link") and (program.link != "auto" or previous is not None):
            self.set_link(vfid, program.link)

    def teardown(self, vfid: int, rec: VFRecord, random_mac: str) -> None:
        """Reference 5.2 delete, fixed where the original left settings behind: VLAN filters off, MAC
        anti-spoof off, allow-list removed and a random default MAC, rate 0, insert and strip off, link auto,
        unicast and multicast promiscuity off, then (not reset by the original) broadcast back on, untagged
        back to the NIC default and VLAN anti-spoof off."""
        prog = rec.program
        known = prog is not None
        if rec.vlans:
            self.set_vlan_filter(vfid, add=[], remove=sorted(rec.vlans))
            rec.vlans = set()
        if not known or prog.mac_anti_spoof:
            self.set_anti_spoof(vfid, mac=False)
        if rec.allow or rec.default or rec.guest_mac:
            self.set_macs(vfid, random_mac, [], [], list(rec.allow), True)
            rec.allow, rec.default = [], random_mac
        if (not known or prog.max_rate or prog.min_rate) and self.profile.has(Feature.MAX_RATE):
            self.set_rates(vfid, 0, 0)
        if not known or prog.insert or prog.strip:
            self.set_strip_insert(vfid, strip=False, insert=0)
        if known and prog.link != "auto":
            self.set_link(vfid, "auto")
        if not known or prog.uucast:
            self.set_rxmode(vfid, uucast=False)
        if not known or prog.mcast:
            self.set_rxmode(vfid, mcast=False)
        if self.profile.has(Feature.BCAST_GATE) and (not known or not prog.bcast):
            self.set_rxmode(vfid, bcast=True)
        if self.profile.has(Feature.UNTAGGED_GATE) and (not known or prog.untagged):
            self.set_rxmode(vfid, untagged=False)
        if not known or prog.vlan_anti_spoof:
            self.set_anti_spoof(vfid, vlan=False)
        rec.program = None
        rec.guest_mac, rec.guest_macs = None, []


class NoVfApiAdapter(PmdAdapter):
    """A PMD with no PF-side VF API in 22.11 (net_null, iavf, ice, mlx5, ...): a profile with no VF
    feature, so admission refuses every VF on it, naming the driver and the first feature the config
    needs.  Nothing is ever silently skipped: every VF operation raises."""

    has_vf_api = False
    has_mailbox = False

    def __init__(self, ffi, port: int, pf_id: str, driver: str | None = None):
        super().__init__(ffi, port, pf_id, driver)
        self.driver = driver or "unknown"
        self.profile = DriverProfile(driver=self.driver, features=frozenset(), max_vfs=0, mac_table_size=0,
                                     vlan_filter_size=0)

    def apply(self, vfid, rec, program, previous):
        raise BackendError(self.pf_id, "apply", f"driver {self.driver} has no VF API in DPDK 22.11", vfid)

    def teardown(self, vfid, rec, random_mac):
        """Nothing can have been programmed."""


ADAPTER_MODULES = {"net_ixgbe": "pmd_ixgbe", "net_i40e": "pmd_i40e", "net_bnxt": "pmd_bnxt"}


def adapter_class(driver: str):
    """The adapter class for a DPDK driver name; NoVfApiAdapter for any driver without a VF API."""
    mod = ADAPTER_MODULES.get(driver)
    if mod is None:
        return NoVfApiAdapter
    import importlib
    return importlib.import_module(f"vfd.backends.dpdk.{mod}").ADAPTER


def make_adapter(ffi, port: int, pf_id: str, driver: str) -> PmdAdapter:
    return adapter_class(driver)(ffi, port, pf_id, driver)


def narrowed_profile(family: str, driver: str, keep: set[Feature], **changes) -> DriverProfile:
    return PROFILES[family].narrowed(frozenset(keep), driver=driver, **changes)


# ---------------------------------------------------------------------------------------------------
# The backend
# ---------------------------------------------------------------------------------------------------


@dataclass
class PortState:
    cfg: PFConfig
    port: int
    name: str
    driver: str
    adapter: PmdAdapter
    vfs_count: int
    mtu: int
    pool: int | None = None
    started: bool = False
    lsc: bool = False
    callbacks: list = field(default_factory=list)
    vfs: dict[int, VFRecord] = field(default_factory=dict)
    warned: set = field(default_factory=set)

    def rec(self, vfid: int) -> VFRecord:
        r = self.vfs.get(vfid)
        if r is None:
            r = self.vfs[vfid] = VFRecord()
        return r

    def managed(self) -> list[int]:
        return sorted(v for v, r in self.vfs.items() if r.program is not None)


class DpdkBackend(NicBackend):
    name = "dpdk"

    def __init__(self, main: MainConfig, ffi=None):
        super().__init__(main)
        self.ffi = ffi if ffi is not None else real_ffi
        self.prefix = os.environ.get(PREFIX_ENV) or main.dpdk_file_prefix
        self.pf_ids = [pf.id for pf in main.pciids if main.backend_of(pf) == "dpdk"]
        self.ports: dict[str, PortState] = {}
        self.lock = threading.RLock()
        self.loop = None
        self.sink = None
        self.pending: list = []           # loop work raised before attach()
        self.refresh: dict[tuple[str, int], float] = {}
        self._tick_handle = None
        self._eal = False
        self._closed = False
        self.eal_argv: list[str] = []

    # ---- EAL ------------------------------------------------------------------------------------
    def _ensure_eal(self) -> None:
        if self._eal:
            return
        if self._closed:
            raise BackendError(",".join(self.pf_ids), "EAL init", "the backend is closed")
        try:
            allowed = set(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            allowed = None
        self.eal_argv = eal_args(self.main, self.pf_ids, self.prefix, allowed)
        log.info("%s: EAL %s", self._version(), " ".join(self.eal_argv))
        t0 = time.monotonic()
        existed = os.path.exists(runtime_dir(self.prefix))
        try:
            self.ffi.eal_init(self.eal_argv)   # DpdkError (an OSError) aborts start-up with its reason
        except real_ffi.DpdkError:
            if not existed:
                shutil.rmtree(runtime_dir(self.prefix), ignore_errors=True)
            raise
        self._eal = True
        atexit.register(self.close)        # the daemon's start-up failure path does not call close()
        try:
            ffi_function(self.ffi, "log_set_global_level")(max(1, self.main.dpdk_log_level))
        except (AttributeError, OSError) as e:
            log.debug("DPDK running log level not set: %s", e)
        log.info("EAL up in %.3fs; ports: %s", time.monotonic() - t0,
                 ", ".join(f"{p}={self.ffi.get_name_by_port(p)}" for p in self.ffi.list_ports()) or "none")

    def _version(self) -> str:
        try:
            return self.ffi.version()
        except Exception:  # noqa: BLE001 - only for the log line
            return "?"

    def _find_port(self, pf: PFConfig) -> int:
        want = port_name(pf.id).lower()
        names = {}
        for p in self.ffi.list_ports():
            name = self.ffi.get_name_by_port(p)
            names[p] = name
            if name.lower() == want:
                return p
        raise BackendError(pf.id, "open", f"no DPDK port named {want} (ports: "
                           f"{', '.join(f'{p}={n}' for p, n in names.items()) or 'none'}); is the PF bound to a "
                           "DPDK-capable driver (vfio-pci / igb_uio) or the vdev name right?")

    # ---- PF -------------------------------------------------------------------------------------
    def open_pf(self, pf: PFConfig) -> PFInfo:
        if self.main.enable_qos:
            raise BackendError(pf.id, "enable_qos", "per-TC QoS (DCB) is not implemented by the dpdk backend")
        with self.lock:
            self._ensure_eal()
            port = self._find_port(pf)
            info = self.ffi.port_info(port)
            adapter = make_adapter(self.ffi, port, pf.id, info.driver_name)
            vfs_count = self._vfs_count(pf, info, adapter)
            st = PortState(cfg=pf, port=port, name=info.name, driver=info.driver_name, adapter=adapter,
                           vfs_count=vfs_count, mtu=self.main.mtu_of(pf))
            self.ports[pf.id] = st
            self._port_init(st)
            speed = pf.speed or self._link_speed(st)
            log.info("PF %s: DPDK port %d, driver %s, %d VFs (max_vfs %d), mtu %d, link %d Mb/s%s", pf.id, port,
                     info.driver_name, vfs_count, info.max_vfs, st.mtu, speed,
                     "" if adapter.has_vf_api else " -- this PMD has no VF API: every VF will be refused")
            return PFInfo(pf_id=pf.id, driver=info.driver_name, profile=adapter.profile, vfs_count=vfs_count,
                          link_speed=speed)

    @staticmethod
    def _vfs_count(pf: PFConfig, info, adapter: PmdAdapter) -> int:
        if pf.vfs_count is None:
            return info.max_vfs
        if adapter.has_vf_api and pf.vfs_count > info.max_vfs:
            log.warning("PF %s: vfs_count %d but the PF has %d VFs; using %d", pf.id, pf.vfs_count, info.max_vfs,
                        info.max_vfs)
            return info.max_vfs
        # A PMD without a VF API: report the configured count so admission reaches the capability rule.
        return pf.vfs_count

    def _port_init(self, st: PortState) -> None:
        """Reference 5.1: 1 RX (128) + 1 TX (64) ring, MTU, RX checksum + VLAN strip where offered, LSC
        interrupt where supported, LSC and mailbox callbacks, start, PF promiscuous per config and
        all-multicast on, stats cleared, flow control, then the PMD's PF settings (loopback, drop enables)."""
        f, port, pf = self.ffi, st.port, st.cfg
        info = f.dev_info(port)
        if not info.min_mtu <= st.mtu <= info.max_mtu:
            raise BackendError(pf.id, "mtu", f"mtu {st.mtu} is outside what {st.driver} accepts "
                               f"({info.min_mtu}..{info.max_mtu})")
        flags = ctypes.c_uint32.from_address(info.dev_flags).value if info.dev_flags else 0
        st.lsc = bool(flags & 0x2)   # RTE_ETH_DEV_INTR_LSC
        want = f.RTE_ETH_RX_OFFLOAD_VLAN_STRIP | f.RTE_ETH_RX_OFFLOAD_CHECKSUM
        if not pf.hw_strip_crc:
            if info.rx_offload_capa & RX_OFFLOAD_KEEP_CRC:
                want |= RX_OFFLOAD_KEEP_CRC
            else:
                log.warning("PF %s: hw_strip_crc false, but %s cannot keep the CRC; it is stripped", pf.id, st.driver)
        conf = f.make_eth_conf(mtu=st.mtu, rx_offloads=want & info.rx_offload_capa, lsc_intr=st.lsc)
        self._pf_call(pf, "configure", f.dev_configure, port, 1, 1, conf)
        st.pool = self._pf_call(pf, "mempool", f.pktmbuf_pool_create, f"vfd_rx_{port}", POOL_MBUFS)
        rxconf = f.RteEthRxconf()
        ctypes.memmove(ctypes.addressof(rxconf), ctypes.addressof(info.default_rxconf), ctypes.sizeof(rxconf))
        rxconf.rx_drop_en = 1        # an unread PF queue must never stall the NIC (reference 5.1)
        self._pf_call(pf, "rx queue", f.rx_queue_setup, port, 0, _ring(RX_DESC, info.rx_desc_lim), st.pool,
                      None, rxconf)
        self._pf_call(pf, "tx queue", f.tx_queue_setup, port, 0, _ring(TX_DESC, info.tx_desc_lim))
        st.callbacks.append(f.callback_register(port, f.RTE_ETH_EVENT_INTR_LSC, self._lsc_callback))
        st.callbacks.append(f.callback_register(port, f.RTE_ETH_EVENT_VF_MBOX, self._mbox_callback))
        self._pf_call(pf, "start", f.dev_start, port)
        st.started = True
        self._pf_rx_modes(st)
        f.stats_reset(port, check=False)
        self._flow_control(st)
        st.adapter.pf_init(pf, st.vfs_count)
        st.adapter.pf_update()

    def _pf_call(self, pf: PFConfig, op: str, fn, *args):
        try:
            return fn(*args)
        except real_ffi.DpdkError as e:
            raise BackendError(pf.id, f"{op} ({e.func})", f"{e.code} {e.errname}") from None

    def _pf_rx_modes(self, st: PortState) -> None:
        """PF promiscuous per config, all-multicast on (not on bnxt).  A PMD that cannot change them (net_null
        is always promiscuous) only earns a warning: VF policy does not depend on the PF's own rx mode."""
        f = self.ffi
        want = [(f.promiscuous_enable if st.cfg.promiscuous else f.promiscuous_disable, "promiscuous")]
        if st.adapter.pf_allmulti:
            want.append((f.allmulticast_enable, "all-multicast"))
        for fn, what in want:
            rc = fn(st.port, check=False)
            if rc < 0 and (fn.__name__, rc) not in st.warned:
                st.warned.add((fn.__name__, rc))       # once per PF: this runs after every VF change
                log.warning("PF %s: %s %s: %s (%s)", st.cfg.id, fn.__name__, what, real_ffi.errno_name(rc), st.driver)

    def _flow_control(self, st: PortState) -> None:
        if not self.main.enable_flowcontrol:
            return
        f = self.ffi
        try:
            fc = f.flow_ctrl_get(st.port)
            fc.mode = f.RTE_ETH_FC_FULL
            f.flow_ctrl_set(st.port, fc)
        except real_ffi.DpdkError as e:
            log.warning("PF %s: flow control not set: %s", st.cfg.id, e)

    def _reassert_pf(self, pf_id: str) -> None:
        """Mailbox SET_LPE / API_NEGOTIATE: re-assert flow control and loopback (reference 6.1)."""
        st = self.ports.get(pf_id)
        if st is None or self._closed:
            return
        with self.lock:
            self._flow_control(st)
            try:
                st.adapter.set_loopback(st.cfg.enable_loopback)
            except BackendError as e:
                log.warning("%s", e)

    def _link_speed(self, st: PortState) -> int:
        try:
            link = self.ffi.link_get_nowait(st.port)
        except real_ffi.DpdkError:
            return 0
        return link.speed if link.up and 0 < link.speed < real_ffi.RTE_ETH_SPEED_NUM_UNKNOWN else 0

    def _st(self, pf_id: str) -> PortState:
        st = self.ports.get(pf_id)
        if st is None:
            raise BackendError(pf_id, "lookup", "PF not opened by the dpdk backend")
        return st

    # ---- VF -------------------------------------------------------------------------------------
    def apply_vf(self, pf_id: str, vfid: int, program: VFProgram, previous: VFProgram | None) -> None:
        with self.lock:
            st = self._st(pf_id)
            st.adapter.apply(vfid, st.rec(vfid), program, previous)
            self._pf_update(st)

    def clear_vf(self, pf_id: str, vfid: int, previous: VFProgram | None) -> None:
        with self.lock:
            st = self._st(pf_id)
            rec = st.rec(vfid)
            if rec.program is None and previous is not None:
                # vfd lost track (a failed apply): assume the previous program's filters are there
                rec.program, rec.vlans, rec.allow = previous, set(previous.vlans), list(previous.macs)
                rec.default = previous.mac
            st.adapter.teardown(vfid, rec, random_local_mac())
            self.refresh.pop((pf_id, vfid), None)
            if st.adapter.has_vf_api:
                self._pf_update(st)

    def _pf_update(self, st: PortState) -> None:
        """Reference 5.2 step 14: PF promiscuous / all-multicast re-assert after any VF change."""
        if st.adapter.has_vf_api:
            self._pf_rx_modes(st)
            st.adapter.pf_update()

    def read_vf(self, pf_id: str, vfid: int) -> dict:
        """What vfd programmed (DPDK 22.11 has no VF read-back), plus what the guest added through the
        mailbox (`guest_mac`, `guest_macs`; outside the program vocabulary, so not drift)."""
        with self.lock:
            st = self._st(pf_id)
            rec = st.vfs.get(vfid)
            if rec is None or rec.program is None:
                state = cleared_state(rec.default if rec else None)
            else:
                state = rec.program.to_state()
                state["mac"] = rec.program.mac if rec.program.mac else rec.default
            if rec is not None:
                state["guest_mac"] = rec.guest_mac
                state["guest_macs"] = list(rec.guest_macs)
            return state

    # ---- counters -------------------------------------------------------------------------------
    def pf_stats(self, pf_id: str) -> PortStats:
        st = self._st(pf_id)
        f = self.ffi
        try:
            link = f.link_get_nowait(st.port)
            s = f.stats_get(st.port)
        except real_ffi.DpdkError as e:
            log.warning("PF %s: counters unavailable: %s", pf_id, e)
            return PortStats()
        unknown = link.speed in (0, real_ffi.RTE_ETH_SPEED_NUM_UNKNOWN)
        status = "DOWN" if not link.up else ("-UNK-" if unknown else "UP")
        try:
            spoofed = st.adapter.spoof_count(st.managed())
        except (BackendError, real_ffi.DpdkError) as e:
            log.debug("PF %s: spoof count: %s", pf_id, e)
            spoofed = 0
        return PortStats(link=status, speed=0 if unknown else link.speed, duplex=int(link.full_duplex),
                         rx_pkts=s["ipackets"], rx_bytes=s["ibytes"], rx_errors=s["ierrors"],
                         rx_dropped=s["imissed"], tx_pkts=s["opackets"], tx_bytes=s["obytes"],
                         tx_errors=s["oerrors"], spoofed=spoofed)

    def vf_stats(self, pf_id: str, vfid: int) -> PortStats:
        st = self._st(pf_id)
        rec = st.vfs.get(vfid) or VFRecord()
        try:
            ready = st.adapter.queue_ready(vfid, rec)
            counters = st.adapter.vf_stats(vfid) or {}
        except (BackendError, real_ffi.DpdkError) as e:
            log.debug("PF %s VF %d: counters unavailable: %s", pf_id, vfid, e)
            ready, counters = None, {}
        link = "-UNK-" if ready is None else ("UP" if ready else "DOWN")
        return PortStats(link=link, **{k: int(v) for k, v in counters.items()})

    def vf_pci_address(self, pf_id: str, vfid: int) -> str | None:
        if not is_pci(pf_id):
            return None
        dev = os.path.join(SYSFS_PCI, pci_name(pf_id))
        try:
            return os.path.basename(os.readlink(os.path.join(dev, f"virtfn{vfid}")))
        except OSError:
            pass
        try:
            with open(os.path.join(dev, "sriov_offset")) as fo, open(os.path.join(dev, "sriov_stride")) as fs:
                return pci_vf_address(pci_name(pf_id), int(fo.read()), int(fs.read()), vfid)
        except (OSError, ValueError):
            return None

    # ---- events ---------------------------------------------------------------------------------
    def attach(self, loop, sink) -> None:
        with self.lock:
            self.loop, self.sink = loop, sink
            pending, self.pending = self.pending, []
        for fn, args in pending:
            loop.call_soon(fn, *args)
        self._ensure_tick()

    def _to_loop(self, fn, *args) -> None:
        """From any thread: run fn(*args) on the daemon's loop (queued until attach())."""
        with self.lock:
            loop = self.loop
            if loop is None:
                self.pending.append((fn, args))
                return
        try:
            loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:      # loop closed: shutting down
            pass

    def _emit(self, ev: NicEvent) -> None:
        if self.sink is not None and not self._closed:
            try:
                self.sink(ev)
            except Exception:  # noqa: BLE001 - an event must not kill the loop
                log.exception("event %s failed", ev)

    def _pf_of_port(self, port: int) -> PortState | None:
        for st in self.ports.values():
            if st.port == port:
                return st
        return None

    def _lsc_callback(self, port: int, event: int, ret_param) -> int:
        """EAL interrupt thread: hand the link change to the loop."""
        st = self._pf_of_port(port)
        if st is not None:
            self._to_loop(self._on_lsc, st.cfg.id)
        return 0

    def _on_lsc(self, pf_id: str) -> None:
        """Reference 7.1: link up re-applies every managed VF of the PF; up or down, the VFs are pinged."""
        st = self.ports.get(pf_id)
        if st is None or self._closed:
            return
        try:
            link = self.ffi.link_get_nowait(st.port)
        except real_ffi.DpdkError as e:
            log.warning("PF %s: link state unreadable after LSC: %s", pf_id, e)
            return
        kind = "link_up" if link.up else "link_down"
        log.info("PF %s: %s (%d Mb/s)", pf_id, kind, link.speed if link.up else 0)
        self._emit(NicEvent(kind, pf_id, detail=f"{link.speed if link.up else 0} Mb/s"))
        with self.lock:
            try:
                st.adapter.ping_vfs(st.managed())
            except BackendError as e:
                log.warning("%s", e)

    def _mbox_callback(self, port: int, event: int, ret_param) -> int:
        """EAL interrupt thread: decide now (the PMD reads the verdict when this returns)."""
        st = self._pf_of_port(port)
        if st is None or not ret_param or not st.adapter.has_mailbox:
            return 0
        try:
            self.handle_mailbox(st, ret_param)
        except Exception:  # noqa: BLE001 - fail closed: a request vfd could not judge is refused
            log.exception("PF %s: mailbox request could not be judged; refused", st.cfg.id)
            st.adapter._set_retval(ret_param, mbx.NOOP_NACK)
        return 0

    def guest_macs(self, pf_id: str) -> dict[str, int]:
        st = self.ports.get(pf_id)
        out: dict[str, int] = {}
        if st is None:
            return out
        with self.lock:
            for vfid, rec in st.vfs.items():
                for mac in ([rec.guest_mac] if rec.guest_mac else []) + list(rec.guest_macs):
                    out.setdefault(mac, vfid)
        return out

    def vf_view(self, st: PortState, vfid: int) -> mbx.VFView:
        rec = st.vfs.get(vfid)
        owners: dict[str, int] = {}
        for v, r in st.vfs.items():
            for m in r.all_macs():
                owners.setdefault(m, v)
        prog = rec.program if rec else None
        if prog is None:
            return mbx.VFView(vfid=vfid, managed=False, mac_owners=owners, pf_mtu=st.mtu)
        macs = ((prog.mac,) if prog.mac else ()) + tuple(prog.macs)
        return mbx.VFView(vfid=vfid, managed=True, vlans=frozenset(prog.vlans), macs=macs,
                          guest_mac=rec.guest_mac, guest_macs=tuple(rec.guest_macs), mac_owners=owners,
                          pf_mtu=st.mtu, bcast=prog.bcast, mcast=prog.mcast, uucast=prog.uucast)

    def handle_mailbox(self, st: PortState, ret_param: int) -> mbx.Decision:
        adapter = st.adapter
        vfid, msg_type, payload, msg_addr, msg_len = adapter.decode_mbox(ret_param)
        with self.lock:
            view = self.vf_view(st, vfid)
            decision = mbx.POLICIES[adapter.family](msg_type, payload, view)
            rec = st.rec(vfid)
            rec.last_mbox = time.monotonic()
            rec.mbox_count += 1
            if decision.verdict != mbx.NOOP_NACK:
                self._registry_effects(rec, decision)
            if mbx.QUEUES_READY in decision.actions:
                rec.queues_ready = True
            if mbx.QUEUES_DOWN in decision.actions:
                rec.queues_ready = False
            if mbx.DROP_ENABLE in decision.actions and view.managed:
                adapter.drop_enable(vfid, True)
            queue = mbx.REFRESH in decision.actions and view.managed
            if queue:
                self.refresh.setdefault((st.cfg.id, vfid), time.monotonic())
        adapter.answer_mbox(ret_param, msg_addr, msg_len, decision)
        log.log(logging.INFO if decision.verdict == mbx.NOOP_NACK else logging.DEBUG,
                "PF %s VF %d mailbox %s -> %s", st.cfg.id, vfid, adapter.msg_name(msg_type), decision)
        if view.managed:
            if mbx.REAPPLY in decision.actions:
                self._to_loop(self._emit, NicEvent("drift", st.cfg.id, vfid,
                                                   detail=f"mailbox {adapter.msg_name(msg_type)}"))
            if mbx.REASSERT_PF in decision.actions:
                self._to_loop(self._reassert_pf, st.cfg.id)
            if queue:
                self._to_loop(self._ensure_tick)
        return decision

    @staticmethod
    def _registry_effects(rec: VFRecord, d: mbx.Decision) -> None:
        if mbx.CLEAR_MACVLAN in d.actions:
            rec.guest_macs = []
        if mbx.REGISTER_MAC in d.actions and d.macs:
            rec.guest_mac = d.macs[0]
        if mbx.REGISTER_MACVLAN in d.actions:
            own = rec.all_macs()
            rec.guest_macs += [m for m in d.macs if m not in own]
        if mbx.UNREGISTER_MACVLAN in d.actions:
            rec.guest_macs = [m for m in rec.guest_macs if m not in d.macs]

    # ---- refresh queue (reference 7.2) ----------------------------------------------------------------
    def _ensure_tick(self) -> None:
        if self.loop is None or self._tick_handle is not None or not self.refresh or self._closed:
            return
        self._tick_handle = self.loop.call_later(REFRESH_INTERVAL, self._tick)

    def _tick(self) -> None:
        self._tick_handle = None
        if self._closed:
            return
        now = time.monotonic()
        ready_vfs = []
        with self.lock:
            for key, since in list(self.refresh.items()):
                pf_id, vfid = key
                st = self.ports.get(pf_id)
                rec = st.vfs.get(vfid) if st else None
                if rec is None or rec.program is None:
                    del self.refresh[key]
                    continue
                try:
                    ready = st.adapter.queue_ready(vfid, rec)
                except (BackendError, real_ffi.DpdkError) as e:
                    log.debug("PF %s VF %d: queue probe failed: %s", pf_id, vfid, e)
                    ready = False
                if ready is None:
                    ready = now - rec.last_mbox >= REFRESH_SETTLE
                if ready:
                    del self.refresh[key]
                    st.adapter.drop_enable(vfid, False)
                    ready_vfs.append(key)
                elif now - since > REFRESH_GIVE_UP:
                    del self.refresh[key]
                    log.warning("PF %s VF %d: queues not up after %.0fs; refresh dropped", pf_id, vfid,
                                REFRESH_GIVE_UP)
        for pf_id, vfid in ready_vfs:
            self._emit(NicEvent("vf_reset", pf_id, vfid, detail="queues ready: refresh"))
        self._ensure_tick()

    # ---- shutdown -------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop and close every port, clean up EAL, remove /var/run/dpdk/<prefix>.  Safe to call twice."""
        with self.lock:
            if self._closed:
                return
            self._closed = True
            if self._tick_handle is not None:
                self._tick_handle.cancel()
                self._tick_handle = None
        f = self.ffi
        for st in self.ports.values():
            for h in st.callbacks:
                for _ in range(50):           # -EAGAIN while the interrupt thread is inside the callback
                    if f.callback_unregister(h, check=False) != -_errno.EAGAIN:
                        break
                    time.sleep(0.01)
            st.callbacks.clear()
            if st.started:
                rc = f.dev_stop(st.port, check=False)
                if rc < 0:
                    log.warning("PF %s: stop: %s", st.cfg.id, real_ffi.errno_name(rc))
                st.started = False
            rc = f.dev_close(st.port, check=False)
            if rc < 0:
                log.warning("PF %s: close: %s", st.cfg.id, real_ffi.errno_name(rc))
            if st.pool:
                f.mempool_free(st.pool)
                st.pool = None
            log.info("PF %s (DPDK port %d) closed", st.cfg.id, st.port)
        if self._eal:
            rc = f.eal_cleanup(check=False)
            self._eal = False
            if rc < 0:
                log.warning("EAL cleanup: %s", real_ffi.errno_name(rc))
            path = runtime_dir(self.prefix)
            shutil.rmtree(path, ignore_errors=True)
            log.info("EAL cleaned up; %s removed", path)
        try:
            atexit.unregister(self.close)
        except Exception:  # noqa: BLE001
            pass


def _ring(want: int, lim) -> int:
    """`want` descriptors within the PMD's limits (nb_min/nb_max/nb_align; 0 means no limit)."""
    n = max(want, lim.nb_min or 0)
    if lim.nb_max:
        n = min(n, lim.nb_max)
    if lim.nb_align and lim.nb_align > 1:
        n -= n % lim.nb_align
    return n
