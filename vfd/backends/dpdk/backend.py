"""The dpdk backend: the PF under a DPDK 22.11 PMD (ixgbe, i40e, bnxt), as the original VFd ran it.

One `DpdkBackend` per daemon process.  It initialises EAL once (`eal.py`), brings each PF port up as
reference 5.1 says, programs VFs through a per-PMD adapter (`adapter.py`, `pmd_ixgbe`, `pmd_i40e`,
`pmd_bnxt`; every other driver gets `NoVfApiAdapter`, whose empty profile makes admission refuse every VF
naming the driver), polices guest mailbox requests (`mailbox_bridge.py`), turns link and VF-reset events
into `NicEvent`s on the daemon's loop, and closes ports and EAL on every exit path.

Threads: DPDK runs LSC and mailbox callbacks on its interrupt thread.  `self.lock` is held around every PMD
call (VF programming, PF settings, counters, probes, the mailbox thread's port lookup) and every VF record
update; anything longer is handed to the asyncio loop with `call_soon_threadsafe`.
"""

from __future__ import annotations

import atexit
import ctypes
import errno as _errno
import logging
import os
import shutil
import threading
import time
from dataclasses import dataclass, field, fields

from vfd.backends.base import NicBackend, NicEvent, PFInfo, PortStats, pci_vf_address
from vfd.errors import BackendError
from vfd.macaddr import random_local_mac
from vfd.model.mainconfig import MainConfig, PFConfig
from vfd.program import VFProgram

from . import ffi as real_ffi
from .adapter import PmdAdapter, VFRecord, make_adapter
from .eal import PREFIX_ENV, eal_args, is_pci, pci_name, port_name, runtime_dir
from .mailbox_bridge import MailboxBridge

log = logging.getLogger("vfd.dpdk")

RX_DESC = 128                               # reference 5.1: 1 RX ring of 128, 1 TX ring of 64
TX_DESC = 64
POOL_MBUFS = 511                            # per PF port: enough for the RX ring plus slack
SYSFS_PCI = "/sys/bus/pci/devices"
PROGRAM_FIELDS = frozenset(f.name for f in fields(VFProgram))


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
    speed: int = 0                        # Mb/s: the PF's configured speed or its link speed at start
    callbacks: list = field(default_factory=list)
    vfs: dict[int, VFRecord] = field(default_factory=dict)
    warned: set = field(default_factory=set)

    def rec(self, vfid: int) -> VFRecord:
        r = self.vfs.get(vfid)
        if r is None:
            r = self.vfs[vfid] = VFRecord()
        return r


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
        self.mailbox = MailboxBridge(self)
        self._eal = False
        self.closed = False
        self.eal_argv: list[str] = []

    # ---- EAL ------------------------------------------------------------------------------------
    def _ensure_eal(self) -> None:
        if self._eal:
            return
        if self.closed:
            raise BackendError(",".join(self.pf_ids), "EAL init", "the backend is closed")
        try:
            allowed = set(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            allowed = None
        f = self.ffi
        self.eal_argv = eal_args(self.main, self.pf_ids, self.prefix, allowed)
        log.info("%s: EAL %s", self._version(), " ".join(self.eal_argv))
        t0 = time.monotonic()
        existed = os.path.exists(runtime_dir(self.prefix))
        try:
            f.eal_init(self.eal_argv)   # DpdkError (an OSError) aborts start-up with its reason
        except real_ffi.DpdkError:
            if not existed:
                shutil.rmtree(runtime_dir(self.prefix), ignore_errors=True)
            raise
        self._eal = True
        atexit.register(self.close)        # the daemon's start-up failure path does not call close()
        try:
            f.call("rte_log_set_global_level", max(1, min(8, self.main.dpdk_log_level)))
        except OSError as e:
            log.debug("DPDK running log level not set: %s", e)
        log.info("EAL up in %.3fs; ports: %s", time.monotonic() - t0,
                 ", ".join(f"{p}={f.call('rte_eth_dev_get_name_by_port', p)}" for p in f.list_ports()) or "none")

    def _version(self) -> str:
        try:
            return self.ffi.call("rte_version")
        except Exception:  # noqa: BLE001 - only for the log line
            return "?"

    def _find_port(self, pf: PFConfig) -> int:
        want = port_name(pf.id).lower()
        names = {}
        for p in self.ffi.list_ports():
            name = self.ffi.call("rte_eth_dev_get_name_by_port", p)
            names[p] = name
            if name.lower() == want:
                return p
        raise BackendError(pf.id, "open", f"no DPDK port named {want} (ports: "
                           f"{', '.join(f'{p}={n}' for p, n in names.items()) or 'none'}); is the PF bound to a "
                           "DPDK-capable driver (vfio-pci / igb_uio) or the vdev name right?")

    # ---- PF -------------------------------------------------------------------------------------
    def open_pf(self, pf: PFConfig) -> PFInfo:
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
            speed = st.speed = pf.speed or self._link_speed(st)
            why = adapter.probe_mirror(vfs_count) if adapter.has_vf_api else "no VF API"
            if why is not None and adapter.has_vf_api:
                log.info("PF %s: no VF mirroring on %s: %s", pf.id, info.driver_name, why)
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
        info = self._pf_call(pf, "device info", "rte_eth_dev_info_get", port)
        if not info.min_mtu <= st.mtu <= info.max_mtu:
            raise BackendError(pf.id, "mtu", f"mtu {st.mtu} is outside what {st.driver} accepts "
                               f"({info.min_mtu}..{info.max_mtu})")
        flags = ctypes.c_uint32.from_address(info.dev_flags).value if info.dev_flags else 0
        st.lsc = bool(flags & real_ffi.RTE_ETH_DEV_INTR_LSC)
        want = real_ffi.RTE_ETH_RX_OFFLOAD_VLAN_STRIP | real_ffi.RTE_ETH_RX_OFFLOAD_CHECKSUM
        if not pf.hw_strip_crc:
            if info.rx_offload_capa & real_ffi.RTE_ETH_RX_OFFLOAD_KEEP_CRC:
                want |= real_ffi.RTE_ETH_RX_OFFLOAD_KEEP_CRC
            else:
                log.warning("PF %s: hw_strip_crc false, but %s cannot keep the CRC; it is stripped", pf.id, st.driver)
        conf = real_ffi.make_eth_conf(mtu=st.mtu, rx_offloads=want & info.rx_offload_capa, lsc_intr=st.lsc)
        st.adapter.port_conf(conf, pf, st.vfs_count, self.main.enable_qos)
        self._pf_call(pf, "configure", "rte_eth_dev_configure", port, 1, 1, conf)
        try:
            st.pool = f.pktmbuf_pool_create(f"vfd_rx_{port}", POOL_MBUFS)
        except real_ffi.DpdkError as e:
            raise BackendError(pf.id, f"mempool ({e.func})", f"{e.code} {e.errname}") from None
        socket = f.call("rte_eth_dev_socket_id", port)
        rxconf = real_ffi.RteEthRxconf()
        ctypes.memmove(ctypes.addressof(rxconf), ctypes.addressof(info.default_rxconf), ctypes.sizeof(rxconf))
        rxconf.rx_drop_en = 1        # an unread PF queue must never stall the NIC (reference 5.1)
        self._pf_call(pf, "rx queue", "rte_eth_rx_queue_setup", port, 0, _ring(RX_DESC, info.rx_desc_lim), socket,
                      rxconf, st.pool)
        self._pf_call(pf, "tx queue", "rte_eth_tx_queue_setup", port, 0, _ring(TX_DESC, info.tx_desc_lim), socket,
                      None)
        st.callbacks.append(f.callback_register(port, real_ffi.RTE_ETH_EVENT_INTR_LSC, self._lsc_callback))
        st.callbacks.append(f.callback_register(port, real_ffi.RTE_ETH_EVENT_VF_MBOX, self.mailbox.callback))
        self._pf_call(pf, "start", "rte_eth_dev_start", port)
        st.started = True
        self._pf_rx_modes(st)
        f.call("rte_eth_stats_reset", port, check=False)
        self._flow_control(st)
        st.adapter.pf_init(pf, st.vfs_count)
        st.adapter.pf_update()

    def _pf_call(self, pf: PFConfig, op: str, symbol: str, *args):
        try:
            return self.ffi.call(symbol, *args)
        except real_ffi.DpdkError as e:
            raise BackendError(pf.id, f"{op} ({e.func})", f"{e.code} {e.errname}") from None

    def _pf_rx_modes(self, st: PortState) -> None:
        """PF promiscuous per config, all-multicast on (not on bnxt).  A PMD that cannot change them (net_null
        is always promiscuous) only earns a warning: VF policy does not depend on the PF's own rx mode."""
        want = ["rte_eth_promiscuous_enable" if st.cfg.promiscuous else "rte_eth_promiscuous_disable"]
        if st.adapter.pf_allmulti:
            want.append("rte_eth_allmulticast_enable")
        for symbol in want:
            rc = self.ffi.call(symbol, st.port, check=False)
            if rc < 0 and (symbol, rc) not in st.warned:
                st.warned.add((symbol, rc))       # once per PF: this runs after every VF change
                log.warning("PF %s: %s: %s (%s)", st.cfg.id, symbol, real_ffi.errno_name(rc), st.driver)

    def _flow_control(self, st: PortState) -> None:
        if not self.main.enable_flowcontrol:
            return
        try:
            fc = self.ffi.call("rte_eth_dev_flow_ctrl_get", st.port)
            fc.mode = real_ffi.RTE_ETH_FC_FULL
            self.ffi.call("rte_eth_dev_flow_ctrl_set", st.port, fc)
        except real_ffi.DpdkError as e:
            log.warning("PF %s: flow control not set: %s", st.cfg.id, e)

    def reassert_pf(self, pf_id: str) -> None:
        """Mailbox SET_LPE / API_NEGOTIATE: re-assert flow control and loopback (reference 6.1)."""
        with self.lock:
            st = self.ports.get(pf_id)
            if st is None or self.closed:
                return
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

    def port_state(self, port: int) -> PortState | None:
        """The PF on DPDK port `port` (the callbacks' lookup, from EAL's interrupt thread)."""
        with self.lock:
            for st in self.ports.values():
                if st.port == port:
                    return st
        return None

    # ---- VF -------------------------------------------------------------------------------------
    def apply_vf(self, pf_id: str, vfid: int, program: VFProgram, previous: VFProgram | None) -> None:
        with self.lock:
            st = self._st(pf_id)
            st.adapter.apply(vfid, st.rec(vfid), program, previous)
            self._pf_update(st)

    def clear_vf(self, pf_id: str, vfid: int, previous: VFProgram | None) -> None:
        """Tear down what `previous` (the manager's program) set; the filters are the record's, which is
        exact: each apply step records what reached the NIC, and after a restart the restore's full apply
        comes first."""
        with self.lock:
            st = self._st(pf_id)
            st.adapter.teardown(vfid, st.rec(vfid), previous, random_local_mac())
            self.mailbox.forget(pf_id, vfid)
            if st.adapter.has_vf_api:
                self._pf_update(st)

    def apply_qos(self, pf_id: str, tclasses: list[dict], shares: dict[int, dict[int, int]]) -> None:
        """The PF's traffic classes and the VFs' normalised shares, through the PMD's calls (docs/dpdk.md, QoS)."""
        with self.lock:
            st = self._st(pf_id)
            st.adapter.apply_qos(tclasses, shares, st.speed, self.desired(pf_id))

    def _pf_update(self, st: PortState) -> None:
        """Reference 5.2 step 14: PF promiscuous / all-multicast re-assert after any VF change."""
        if st.adapter.has_vf_api:
            self._pf_rx_modes(st)
            st.adapter.pf_update()

    def read_vf(self, pf_id: str, vfid: int) -> dict:
        """Only what the PMD reads back (the adapter's `verifiable` fields); DPDK 22.11 has no getter for most
        VF settings, and those are listed by `unverifiable_fields` instead of being echoed from the program."""
        with self.lock:
            st = self._st(pf_id)
            try:
                return st.adapter.read_back(vfid, st.vfs.get(vfid) or VFRecord(), self.desired(pf_id).get(vfid))
            except real_ffi.DpdkError as e:
                raise BackendError(pf_id, f"read back ({e.func})", f"{e.code} {e.errname}", vfid) from None

    def unverifiable_fields(self, pf_id: str) -> frozenset[str]:
        """Program fields `read_vf` cannot report on this PF's PMD: status shows them as unverifiable."""
        return PROGRAM_FIELDS - self._st(pf_id).adapter.verifiable

    # ---- counters -------------------------------------------------------------------------------
    def pf_stats(self, pf_id: str) -> PortStats:
        with self.lock:
            st = self._st(pf_id)
            f = self.ffi
            try:
                link = f.link_get_nowait(st.port)
                s = f.stats_get(st.port)
            except real_ffi.DpdkError as e:
                log.warning("PF %s: counters unavailable: %s", pf_id, e)
                return PortStats()
            try:
                spoofed = st.adapter.spoof_count(sorted(self.desired(pf_id)))
            except (BackendError, real_ffi.DpdkError) as e:
                log.debug("PF %s: spoof count: %s", pf_id, e)
                spoofed = 0
        unknown = link.speed in (0, real_ffi.RTE_ETH_SPEED_NUM_UNKNOWN)
        status = "DOWN" if not link.up else ("-UNK-" if unknown else "UP")
        return PortStats(link=status, speed=0 if unknown else link.speed, duplex=int(link.full_duplex),
                         rx_pkts=s["ipackets"], rx_bytes=s["ibytes"], rx_errors=s["ierrors"],
                         rx_dropped=s["imissed"], tx_pkts=s["opackets"], tx_bytes=s["obytes"],
                         tx_errors=s["oerrors"], spoofed=spoofed)

    def vf_stats(self, pf_id: str, vfid: int) -> PortStats:
        with self.lock:
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

    def guest_macs(self, pf_id: str) -> dict[str, int]:
        out: dict[str, int] = {}
        with self.lock:
            st = self.ports.get(pf_id)
            if st is None:
                return out
            for vfid, rec in st.vfs.items():
                for mac in ([rec.guest_mac] if rec.guest_mac else []) + list(rec.guest_macs):
                    out.setdefault(mac, vfid)
        return out

    # ---- events ---------------------------------------------------------------------------------
    def attach(self, loop, sink) -> None:
        with self.lock:
            self.loop, self.sink = loop, sink
            pending, self.pending = self.pending, []
        for fn, args in pending:
            loop.call_soon(fn, *args)
        self.mailbox.ensure_tick()

    def to_loop(self, fn, *args) -> None:
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

    def emit(self, ev: NicEvent) -> None:
        if self.sink is not None and not self.closed:
            try:
                self.sink(ev)
            except Exception:  # noqa: BLE001 - an event must not kill the loop
                log.exception("event %s failed", ev)

    def _lsc_callback(self, port: int, event: int, ret_param) -> int:
        """EAL interrupt thread: hand the link change to the loop."""
        st = self.port_state(port)
        if st is not None:
            self.to_loop(self._on_lsc, st.cfg.id)
        return 0

    def _on_lsc(self, pf_id: str) -> None:
        """Reference 7.1: link up re-applies every managed VF of the PF; up or down, the VFs are pinged."""
        with self.lock:
            st = self.ports.get(pf_id)
            if st is None or self.closed:
                return
            try:
                link = self.ffi.link_get_nowait(st.port)
            except real_ffi.DpdkError as e:
                log.warning("PF %s: link state unreadable after LSC: %s", pf_id, e)
                return
        kind = "link_up" if link.up else "link_down"
        log.info("PF %s: %s (%d Mb/s)", pf_id, kind, link.speed if link.up else 0)
        self.emit(NicEvent(kind, pf_id, detail=f"{link.speed if link.up else 0} Mb/s"))
        with self.lock:
            try:
                st.adapter.ping_vfs(sorted(self.desired(pf_id)))
            except BackendError as e:
                log.warning("%s", e)

    # ---- shutdown -------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop and close every port, clean up EAL, remove /var/run/dpdk/<prefix>.  Safe to call twice."""
        with self.lock:
            if self.closed:
                return
            self.closed = True
            self.mailbox.cancel()
        f = self.ffi
        for st in self.ports.values():
            for h in st.callbacks:            # outside the lock: a running callback may be waiting for it
                for _ in range(50):           # -EAGAIN while the interrupt thread is inside the callback
                    if f.callback_unregister(h, check=False) != -_errno.EAGAIN:
                        break
                    time.sleep(0.01)
            st.callbacks.clear()
            with self.lock:
                if st.started:
                    rc = f.call("rte_eth_dev_stop", st.port, check=False)
                    if rc < 0:
                        log.warning("PF %s: stop: %s", st.cfg.id, real_ffi.errno_name(rc))
                    st.started = False
                rc = f.call("rte_eth_dev_close", st.port, check=False)
                if rc < 0:
                    log.warning("PF %s: close: %s", st.cfg.id, real_ffi.errno_name(rc))
                if st.pool:
                    f.call("rte_mempool_free", st.pool)
                    st.pool = None
            log.info("PF %s (DPDK port %d) closed", st.cfg.id, st.port)
        if self._eal:
            with self.lock:
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
