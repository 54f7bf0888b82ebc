"""Low-level ctypes binding to Debian's DPDK 22.11 (ABI 23) shared libraries.

What this module is
    The thin layer between vfd's ``dpdk`` backend and the C libraries ``librte_eal.so.23``,
    ``librte_ethdev.so.23``, ``librte_mempool.so.23``, ``librte_mbuf.so.23`` and the PMD libraries
    ``librte_net_{ixgbe,i40e,bnxt,null}.so.23``.  Every C function vfd calls is declared once, in
    `PROTOTYPES` (copied from the 22.11 headers in ``/usr/include/dpdk``); `call(symbol, *args)` (or
    ``ffi.<symbol>(*args)``) validates and converts the arguments, guards the port id and turns a negative
    return into `DpdkError`, all from that entry.  A handful of composed helpers (`COMPOSED`) shape results
    that need more than one call.  Struct layouts and prototypes are checked against the C compiler by
    ``tests/dpdk/test_ffi_real.py``.

Why ctypes and not cffi
    * Nothing here needs compiled glue: every call is a plain C function taking scalars, pointers to
      plain structs, or a function pointer; DPDK's ``static inline`` fast-path (rx/tx burst) is not needed
      by a policy daemon that never touches packets.  cffi's ABI mode would give the same thing with an
      extra dependency; its API mode would need a C compiler and the ``dpdk-dev`` headers on every
      machine that runs vfd.
    * ctypes ships with CPython, so the daemon has no build step and no extra wheel; the only runtime
      requirement is the ``dpdk`` Debian package.
    * The one thing ctypes cannot check (struct layouts, including the GCC bitfield placement in
      ``struct rte_eth_rxseg_capa`` that ctypes would get wrong with a ``c_uint32`` bitfield) is covered by a
      test that compiles ``offsetof``/``sizeof`` probes with gcc against the installed headers.

Rules
    * Importing this module loads nothing.  :func:`load` (called implicitly by the first call) finds and
      loads the libraries, all with ``RTLD_GLOBAL`` so that PMDs and EAL plugins resolve against them.
    * ``rte_eal_init`` can run once per process: a second call fails with EALREADY, even after
      ``rte_eal_cleanup``.  Tests therefore run EAL in a subprocess.
    * A symbol in the table but not exported by the installed ``.so`` raises :class:`SymbolMissing`
      (a :class:`DpdkError` with code ``-ENOSYS``) when called.
    * Python event callbacks are wrapped in ``CFUNCTYPE`` thunks that this module keeps referenced until
      :func:`callback_unregister`, so the garbage collector never frees a pointer DPDK still holds.
    * The VF mailbox message ids are not here: they are protocol facts owned by ``vfd.policy.mailbox``.
"""

from __future__ import annotations

import ctypes
import errno as _errno
import functools
import glob
import itertools
import logging
import os
import platform
import sysconfig
import threading
from collections.abc import Callable, Sequence
from ctypes import (
    CFUNCTYPE,
    POINTER,
    Structure,
    byref,
    c_char,
    c_char_p,
    c_int,
    c_uint,
    c_uint8,
    c_uint16,
    c_uint32,
    c_uint64,
    c_void_p,
)
from dataclasses import dataclass
from typing import NamedTuple

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------------
# Build-time constants of Debian's DPDK 22.11 (rte_build_config.h / rte_config.h / rte_ethdev.h)
# ---------------------------------------------------------------------------------------------------

DPDK_ABI = "23"  # librte_*.so.23, PMD dir dpdk/pmds-23.0
RTE_MAX_ETHPORTS = 32  # rte_build_config.h
RTE_MAX_QUEUES_PER_PORT = 1024  # rte_config.h
RTE_ETHDEV_QUEUE_STAT_CNTRS = 16  # rte_config.h
RTE_ETH_NAME_MAX_LEN = 64  # rte_ethdev.h (= RTE_DEV_NAME_MAX_LEN)
RTE_ETH_XSTATS_NAME_SIZE = 64  # rte_ethdev.h
RTE_ETHER_ADDR_LEN = 6
RTE_ETH_DEV_NO_OWNER = 0
RTE_ETH_ALL = RTE_MAX_ETHPORTS  # port id meaning "every port" for callback registration
SOCKET_ID_ANY = -1
RTE_MBUF_DEFAULT_BUF_SIZE = 2176  # RTE_MBUF_DEFAULT_DATAROOM (2048) + RTE_PKTMBUF_HEADROOM (128)
RTE_PKTMBUF_HEADROOM = 128

# struct rte_eth_dev is not in any installed header (ethdev_driver.h is a driver-SDK header that Debian does not
# ship).  Layout in 22.11: 6 burst/status function pointers, data, process_private, dev_ops, device, intr_handle
# (11 pointers = 88 bytes), link_intr_cbs TAILQ_HEAD (16), post_rx_burst_cbs[1024] and pre_tx_burst_cbs[1024]
# (2 * 8192), enum state (4, padded to 8), security_ctx (8) = 16504, __rte_cache_aligned -> 16512.
# Cross-checked: the ELF symbol rte_eth_devices@@INTERNAL in librte_ethdev.so.23 is 0x81000 = 528384 bytes
# = RTE_MAX_ETHPORTS * 16512 (test_ffi_real checks this with readelf), and at run time
# eth_dev_layout_ok() compares rte_eth_devices[port].data->name with rte_eth_dev_get_name_by_port().
SIZEOF_RTE_ETH_DEV = 16512
RTE_ETH_DEV_DATA_OFFSET = 48  # offsetof(struct rte_eth_dev, data); data->name is the first member

# enum rte_eth_event_type (rte_ethdev.h; values verified with gcc)
RTE_ETH_EVENT_UNKNOWN = 0
RTE_ETH_EVENT_INTR_LSC = 1
RTE_ETH_EVENT_QUEUE_STATE = 2
RTE_ETH_EVENT_INTR_RESET = 3
RTE_ETH_EVENT_VF_MBOX = 4
RTE_ETH_EVENT_MACSEC = 5
RTE_ETH_EVENT_INTR_RMV = 6
RTE_ETH_EVENT_NEW = 7
RTE_ETH_EVENT_DESTROY = 8
RTE_ETH_EVENT_IPSEC = 9
RTE_ETH_EVENT_FLOW_AGED = 10
RTE_ETH_EVENT_RX_AVAIL_THRESH = 11
RTE_ETH_EVENT_ERR_RECOVERING = 12
RTE_ETH_EVENT_RECOVERY_SUCCESS = 13
RTE_ETH_EVENT_RECOVERY_FAILED = 14
RTE_ETH_EVENT_MAX = 15

# Link (rte_ethdev.h)
RTE_ETH_SPEED_NUM_NONE = 0
RTE_ETH_SPEED_NUM_UNKNOWN = 0xFFFFFFFF
RTE_ETH_LINK_HALF_DUPLEX = 0
RTE_ETH_LINK_FULL_DUPLEX = 1
RTE_ETH_LINK_DOWN = 0
RTE_ETH_LINK_UP = 1
RTE_ETH_LINK_FIXED = 0
RTE_ETH_LINK_AUTONEG = 1

# enum rte_eth_rx_mq_mode / rte_eth_tx_mq_mode
RTE_ETH_MQ_RX_NONE = 0
RTE_ETH_MQ_TX_NONE = 0
RTE_ETH_MQ_RX_VMDQ_DCB = 6  # VMDQ_FLAG | DCB_FLAG: SR-IOV pools with DCB traffic classes
RTE_ETH_MQ_TX_VMDQ_DCB = 2

# Rx / Tx offloads (RTE_BIT64(n), rte_ethdev.h)
RTE_ETH_RX_OFFLOAD_VLAN_STRIP = 1 << 0
RTE_ETH_RX_OFFLOAD_IPV4_CKSUM = 1 << 1
RTE_ETH_RX_OFFLOAD_UDP_CKSUM = 1 << 2
RTE_ETH_RX_OFFLOAD_TCP_CKSUM = 1 << 3
RTE_ETH_RX_OFFLOAD_CHECKSUM = (
    RTE_ETH_RX_OFFLOAD_IPV4_CKSUM | RTE_ETH_RX_OFFLOAD_UDP_CKSUM | RTE_ETH_RX_OFFLOAD_TCP_CKSUM
)
RTE_ETH_RX_OFFLOAD_VLAN_FILTER = 1 << 9
RTE_ETH_RX_OFFLOAD_VLAN_EXTEND = 1 << 10
RTE_ETH_RX_OFFLOAD_SCATTER = 1 << 13
RTE_ETH_RX_OFFLOAD_KEEP_CRC = 1 << 16
RTE_ETH_DEV_INTR_LSC = 1 << 1  # rte_eth_dev_info.dev_flags: the device raises link-state interrupts

# VF rx-mode mask for rte_pmd_ixgbe_set_vf_rxmode / rte_pmd_bnxt_set_vf_rxmode (RTE_BIT32(n), rte_ethdev.h)
RTE_ETH_VMDQ_ACCEPT_UNTAG = 1 << 0
RTE_ETH_VMDQ_ACCEPT_HASH_MC = 1 << 1
RTE_ETH_VMDQ_ACCEPT_HASH_UC = 1 << 2
RTE_ETH_VMDQ_ACCEPT_BROADCAST = 1 << 3
RTE_ETH_VMDQ_ACCEPT_MULTICAST = 1 << 4

RTE_ETH_DCB_NUM_TCS = 8  # traffic classes (rte_ethdev.h)
RTE_ETH_DCB_NUM_USER_PRIORITIES = 8
RTE_ETH_VMDQ_MAX_VLAN_FILTERS = 64
RTE_ETH_16_POOLS = 16  # enum rte_eth_nb_pools
RTE_ETH_32_POOLS = 32
RTE_ETH_DCB_PG_SUPPORT = 1 << 0  # rte_eth_conf.dcb_capability_en: priority groups (ETS bandwidth)

# rte_flow.h: the few item / action types the mirror rule uses
RTE_FLOW_ITEM_TYPE_END = 0
RTE_FLOW_ITEM_TYPE_ETH = 6
RTE_FLOW_ACTION_TYPE_END = 0
RTE_FLOW_ACTION_TYPE_VF = 11  # deprecated in 22.11 in favour of representor ports, which vfd does not create
RTE_FLOW_ACTION_TYPE_SAMPLE = 48

# enum rte_eth_fc_mode
RTE_ETH_FC_NONE = 0
RTE_ETH_FC_RX_PAUSE = 1
RTE_ETH_FC_TX_PAUSE = 2
RTE_ETH_FC_FULL = 3

# ---------------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------------

_ERRNAME_OVERRIDES = {
    _errno.ENOTSUP: "ENOTSUP",  # 95: Python calls it EOPNOTSUPP; DPDK returns -ENOTSUP
    1001: "E_RTE_SECONDARY",  # rte_errno.h: operation not allowed in secondary processes
    1002: "E_RTE_NO_CONFIG",  # rte_errno.h: missing rte_config
}


def errno_name(code: int) -> str:
    """Symbolic name of an errno value given either sign (-95 and 95 -> 'ENOTSUP')."""
    n = abs(int(code))
    return _ERRNAME_OVERRIDES.get(n) or _errno.errorcode.get(n, f"E{n}")


def errno_text(code: int) -> str:
    """Human text of an errno value given either sign; uses rte_strerror once the EAL library is loaded."""
    n = abs(int(code))
    if _state.eal is not None:
        f = _state.funcs.get("rte_strerror")
        if f is not None:
            return f(n).decode(errors="replace")
    if n in _ERRNAME_OVERRIDES and n >= 1000:
        return {1001: "Invalid call in secondary process", 1002: "Missing rte_config structure"}[n]
    return os.strerror(n)


class DpdkError(OSError):
    """A DPDK call failed.  ``func`` is the C function, ``code`` its negative return value, ``errname`` e.g. 'ENOTSUP'.

    ``errno`` (positive) and ``strerror`` are the usual OSError attributes.
    """

    def __init__(self, func: str, code: int, message: str | None = None):
        code = -abs(int(code)) if code else -_errno.EIO
        self.func = func
        self.code = code
        self.errname = errno_name(code)
        super().__init__(-code, message if message is not None else errno_text(code))

    def __str__(self) -> str:
        return f"{self.func} failed: {self.code} {self.errname} ({self.strerror})"

    def __reduce__(self):
        return (self.__class__, (self.func, self.code, self.strerror))


class SymbolMissing(DpdkError):
    """The function is declared in a 22.11 header but not exported by the installed shared library."""

    def __init__(self, func: str, code: int = -_errno.ENOSYS, message: str | None = None):
        super().__init__(func, code, message or f"symbol {func} is not exported by the installed DPDK libraries")


class DpdkUnavailable(DpdkError):
    """The DPDK shared libraries (package ``dpdk``) cannot be found or loaded."""

    def __init__(self, func: str, code: int = -_errno.ENOENT, message: str | None = None):
        super().__init__(func, code, message)


# ---------------------------------------------------------------------------------------------------
# Structures (layouts checked against gcc by tests/dpdk/test_ffi_real.py)
# ---------------------------------------------------------------------------------------------------


class RteEtherAddr(Structure):
    """struct rte_ether_addr (6 bytes; C alignment 2, irrelevant when passed by pointer)."""

    _fields_ = [("addr_bytes", c_uint8 * RTE_ETHER_ADDR_LEN)]

    def __str__(self) -> str:
        return ":".join(f"{b:02x}" for b in self.addr_bytes)


class RteEthLink(Structure):
    """struct rte_eth_link: u32 link_speed; u16 link_duplex:1, link_autoneg:1, link_status:1; aligned(8) -> 8 bytes.

    GCC allocates the three bits LSB-first in the u16 at offset 4 (duplex = bit 0, autoneg = bit 1, status = bit 2),
    which is what ctypes does with c_uint16 bitfields on little-endian; the explicit _pad makes sizeof 8.
    """

    _fields_ = [
        ("link_speed", c_uint32),
        ("link_duplex", c_uint16, 1),
        ("link_autoneg", c_uint16, 1),
        ("link_status", c_uint16, 1),
        ("_pad", c_uint16),
    ]


class RteEthStats(Structure):
    """struct rte_eth_stats (704 bytes)."""

    _fields_ = [
        ("ipackets", c_uint64),
        ("opackets", c_uint64),
        ("ibytes", c_uint64),
        ("obytes", c_uint64),
        ("imissed", c_uint64),
        ("ierrors", c_uint64),
        ("oerrors", c_uint64),
        ("rx_nombuf", c_uint64),
        ("q_ipackets", c_uint64 * RTE_ETHDEV_QUEUE_STAT_CNTRS),
        ("q_opackets", c_uint64 * RTE_ETHDEV_QUEUE_STAT_CNTRS),
        ("q_ibytes", c_uint64 * RTE_ETHDEV_QUEUE_STAT_CNTRS),
        ("q_obytes", c_uint64 * RTE_ETHDEV_QUEUE_STAT_CNTRS),
        ("q_errors", c_uint64 * RTE_ETHDEV_QUEUE_STAT_CNTRS),
    ]


STATS_FIELDS = ("ipackets", "opackets", "ibytes", "obytes", "imissed", "ierrors", "oerrors", "rx_nombuf")


class RteEthXstat(Structure):
    _fields_ = [("id", c_uint64), ("value", c_uint64)]


class RteEthXstatName(Structure):
    _fields_ = [("name", c_char * RTE_ETH_XSTATS_NAME_SIZE)]


class RteEthThresh(Structure):
    _fields_ = [("pthresh", c_uint8), ("hthresh", c_uint8), ("wthresh", c_uint8)]


class RteEthRxconf(Structure):
    """struct rte_eth_rxconf (80 bytes)."""

    _fields_ = [
        ("rx_thresh", RteEthThresh),
        ("rx_free_thresh", c_uint16),
        ("rx_drop_en", c_uint8),
        ("rx_deferred_start", c_uint8),
        ("rx_nseg", c_uint16),
        ("share_group", c_uint16),
        ("share_qid", c_uint16),
        ("offloads", c_uint64),
        ("rx_seg", c_void_p),
        ("rx_mempools", c_void_p),
        ("rx_nmempool", c_uint16),
        ("reserved_64s", c_uint64 * 2),
        ("reserved_ptrs", c_void_p * 2),
    ]


class RteEthTxconf(Structure):
    """struct rte_eth_txconf (56 bytes)."""

    _fields_ = [
        ("tx_thresh", RteEthThresh),
        ("tx_rs_thresh", c_uint16),
        ("tx_free_thresh", c_uint16),
        ("tx_deferred_start", c_uint8),
        ("offloads", c_uint64),
        ("reserved_64s", c_uint64 * 2),
        ("reserved_ptrs", c_void_p * 2),
    ]


class RteEthRxsegCapa(Structure):
    """struct rte_eth_rxseg_capa: u32 multi_pools:1, offset_allowed:1, offset_align_log2:4; u16 max_nseg; u16 reserved.

    GCC puts max_nseg at offset 2 (right after the 6 used bits), not 4 as a ctypes c_uint32 bitfield would; hence
    c_uint8 bitfields here.  sizeof 8 (C alignment 4; at offset 60 of rte_eth_dev_info either way).
    """

    _fields_ = [
        ("multi_pools", c_uint8, 1),
        ("offset_allowed", c_uint8, 1),
        ("offset_align_log2", c_uint8, 4),
        ("_bits_pad", c_uint8),
        ("max_nseg", c_uint16),
        ("reserved", c_uint16),
        ("_pad", c_uint16),
    ]


class RteEthDescLim(Structure):
    _fields_ = [
        ("nb_max", c_uint16),
        ("nb_min", c_uint16),
        ("nb_align", c_uint16),
        ("nb_seg_max", c_uint16),
        ("nb_mtu_seg_max", c_uint16),
    ]


class RteEthDevPortconf(Structure):
    _fields_ = [("burst_size", c_uint16), ("ring_size", c_uint16), ("nb_queues", c_uint16)]


class RteEthSwitchInfo(Structure):
    _fields_ = [("name", c_char_p), ("domain_id", c_uint16), ("port_id", c_uint16), ("rx_domain", c_uint16)]


class RteEthDevInfo(Structure):
    """struct rte_eth_dev_info (376 bytes)."""

    _fields_ = [
        ("device", c_void_p),
        ("driver_name", c_char_p),
        ("if_index", c_uint),
        ("min_mtu", c_uint16),
        ("max_mtu", c_uint16),
        ("dev_flags", c_void_p),
        ("min_rx_bufsize", c_uint32),
        ("max_rx_pktlen", c_uint32),
        ("max_lro_pkt_size", c_uint32),
        ("max_rx_queues", c_uint16),
        ("max_tx_queues", c_uint16),
        ("max_mac_addrs", c_uint32),
        ("max_hash_mac_addrs", c_uint32),
        ("max_vfs", c_uint16),
        ("max_vmdq_pools", c_uint16),
        ("rx_seg_capa", RteEthRxsegCapa),
        ("rx_offload_capa", c_uint64),
        ("tx_offload_capa", c_uint64),
        ("rx_queue_offload_capa", c_uint64),
        ("tx_queue_offload_capa", c_uint64),
        ("reta_size", c_uint16),
        ("hash_key_size", c_uint8),
        ("flow_type_rss_offloads", c_uint64),
        ("default_rxconf", RteEthRxconf),
        ("default_txconf", RteEthTxconf),
        ("vmdq_queue_base", c_uint16),
        ("vmdq_queue_num", c_uint16),
        ("vmdq_pool_base", c_uint16),
        ("rx_desc_lim", RteEthDescLim),
        ("tx_desc_lim", RteEthDescLim),
        ("speed_capa", c_uint32),
        ("nb_rx_queues", c_uint16),
        ("nb_tx_queues", c_uint16),
        ("max_rx_mempools", c_uint16),
        ("default_rxportconf", RteEthDevPortconf),
        ("default_txportconf", RteEthDevPortconf),
        ("dev_capa", c_uint64),
        ("switch_info", RteEthSwitchInfo),
        ("err_handle_mode", c_int),
        ("reserved_64s", c_uint64 * 2),
        ("reserved_ptrs", c_void_p * 2),
    ]


class RteEthRxmode(Structure):
    """struct rte_eth_rxmode (56 bytes)."""

    _fields_ = [
        ("mq_mode", c_int),
        ("mtu", c_uint32),
        ("max_lro_pkt_size", c_uint32),
        ("offloads", c_uint64),
        ("reserved_64s", c_uint64 * 2),
        ("reserved_ptrs", c_void_p * 2),
    ]


class RteEthTxmode(Structure):
    """struct rte_eth_txmode (56 bytes); the three u8 bitfields sit in the byte at offset 18."""

    _fields_ = [
        ("mq_mode", c_int),
        ("offloads", c_uint64),
        ("pvid", c_uint16),
        ("hw_vlan_reject_tagged", c_uint8, 1),
        ("hw_vlan_reject_untagged", c_uint8, 1),
        ("hw_vlan_insert_pvid", c_uint8, 1),
        ("reserved_64s", c_uint64 * 2),
        ("reserved_ptrs", c_void_p * 2),
    ]


class RteEthIntrConf(Structure):
    """struct rte_eth_intr_conf: u32 lsc:1, rxq:1, rmv:1 (4 bytes)."""

    _fields_ = [("lsc", c_uint32, 1), ("rxq", c_uint32, 1), ("rmv", c_uint32, 1)]


class RteEthRssConf(Structure):
    """struct rte_eth_rss_conf (24 bytes)."""

    _fields_ = [("rss_key", c_void_p), ("rss_key_len", c_uint8), ("rss_hf", c_uint64)]


class RteEthVmdqPoolMap(Structure):
    """The anonymous pool_map element of struct rte_eth_vmdq_dcb_conf: VLAN -> pools bitmap (16 bytes)."""

    _fields_ = [("vlan_id", c_uint16), ("pools", c_uint64)]


class RteEthVmdqDcbConf(Structure):
    """struct rte_eth_vmdq_dcb_conf (1040 bytes): VMDq pools with DCB; dcb_tc maps user priority -> TC."""

    _fields_ = [
        ("nb_queue_pools", c_int),
        ("enable_default_pool", c_uint8),
        ("default_pool", c_uint8),
        ("nb_pool_maps", c_uint8),
        ("pool_map", RteEthVmdqPoolMap * RTE_ETH_VMDQ_MAX_VLAN_FILTERS),
        ("dcb_tc", c_uint8 * RTE_ETH_DCB_NUM_USER_PRIORITIES),
    ]


class RteEthDcbRxConf(Structure):
    """struct rte_eth_dcb_rx_conf (12 bytes)."""

    _fields_ = [("nb_tcs", c_int), ("dcb_tc", c_uint8 * RTE_ETH_DCB_NUM_USER_PRIORITIES)]


class RteEthVmdqDcbTxConf(Structure):
    """struct rte_eth_vmdq_dcb_tx_conf (12 bytes); the largest member of rte_eth_conf's tx_adv_conf union."""

    _fields_ = [("nb_queue_pools", c_int), ("dcb_tc", c_uint8 * RTE_ETH_DCB_NUM_USER_PRIORITIES)]


class RteEthRxAdvConf(Structure):
    """The anonymous rx_adv_conf of struct rte_eth_conf (2120 bytes); vmdq_rx_conf is kept opaque."""

    _fields_ = [
        ("rss_conf", RteEthRssConf),
        ("vmdq_dcb_conf", RteEthVmdqDcbConf),
        ("dcb_rx_conf", RteEthDcbRxConf),
        ("vmdq_rx_conf", c_uint64 * 130),
    ]


class RteEthConf(Structure):
    """struct rte_eth_conf (2272 bytes).  Of the advanced Rx/Tx parts vfd fills only VMDq+DCB (ixgbe QoS)."""

    _fields_ = [
        ("link_speeds", c_uint32),
        ("rxmode", RteEthRxmode),
        ("txmode", RteEthTxmode),
        ("lpbk_mode", c_uint32),
        ("rx_adv_conf", RteEthRxAdvConf),
        ("tx_adv_conf", RteEthVmdqDcbTxConf),
        ("dcb_capability_en", c_uint32),
        ("intr_conf", RteEthIntrConf),
    ]


class RteEthFcConf(Structure):
    """struct rte_eth_fc_conf (20 bytes)."""

    _fields_ = [
        ("high_water", c_uint32),
        ("low_water", c_uint32),
        ("pause_time", c_uint16),
        ("send_xon", c_uint16),
        ("mode", c_int),
        ("mac_ctrl_frame_fwd", c_uint8),
        ("autoneg", c_uint8),
    ]


class RtePmdIxgbeMbEventParam(Structure):
    """struct rte_pmd_ixgbe_mb_event_param {u16 vfid, msg_type, retval; void *msg;} (16 bytes; msg at 8)."""

    _fields_ = [("vfid", c_uint16), ("msg_type", c_uint16), ("retval", c_uint16), ("msg", c_void_p)]


class RtePmdI40eMbEventParam(Structure):
    """struct rte_pmd_i40e_mb_event_param {u16 vfid, msg_type, retval; void *msg; u16 msglen;} (24 bytes)."""

    _fields_ = [
        ("vfid", c_uint16),
        ("msg_type", c_uint16),
        ("retval", c_uint16),
        ("msg", c_void_p),
        ("msglen", c_uint16),
    ]


class RtePmdBnxtMbEventParam(Structure):
    """struct rte_pmd_bnxt_mb_event_param {u16 vf_id; int retval; void *msg;} (16 bytes; retval at 4, msg at 8).

    Different from ixgbe/i40e: no msg_type (read the HWRM req_type from msg, see :func:`hwrm_req_type`) and an
    int retval.
    """

    _fields_ = [("vf_id", c_uint16), ("retval", c_int), ("msg", c_void_p)]


class RteFlowAttr(Structure):
    """struct rte_flow_attr (12 bytes)."""

    _fields_ = [("group", c_uint32), ("priority", c_uint32), ("ingress", c_uint32, 1), ("egress", c_uint32, 1),
                ("transfer", c_uint32, 1), ("reserved", c_uint32, 29)]


class RteFlowItem(Structure):
    """struct rte_flow_item (32 bytes)."""

    _fields_ = [("type", c_int), ("spec", c_void_p), ("last", c_void_p), ("mask", c_void_p)]


class RteFlowItemEth(Structure):
    """struct rte_flow_item_eth (20 bytes): dst, src, type, then the has_vlan bit, which GCC packs into byte 14
    (the byte after type), hence c_uint8 bitfields as in RteEthRxsegCapa."""

    _fields_ = [("dst", RteEtherAddr), ("src", RteEtherAddr), ("type", c_uint16), ("has_vlan", c_uint8, 1),
                ("_bits", c_uint8, 7), ("_pad", c_uint8 * 5)]


class RteFlowAction(Structure):
    """struct rte_flow_action (16 bytes)."""

    _fields_ = [("type", c_int), ("conf", c_void_p)]


class RteFlowActionSample(Structure):
    """struct rte_flow_action_sample (16 bytes): ratio 1 = every packet; actions = what the copy gets."""

    _fields_ = [("ratio", c_uint32), ("actions", c_void_p)]


class RteFlowActionVf(Structure):
    """struct rte_flow_action_vf (8 bytes)."""

    _fields_ = [("original", c_uint32, 1), ("reserved", c_uint32, 31), ("id", c_uint32)]


class RteFlowError(Structure):
    """struct rte_flow_error (24 bytes): the PMD's reason when a rule is refused."""

    _fields_ = [("type", c_int), ("cause", c_void_p), ("message", c_char_p)]


# int (*rte_eth_dev_cb_fn)(uint16_t port_id, enum rte_eth_event_type event, void *cb_arg, void *ret_param)
RteEthDevCbFn = CFUNCTYPE(c_int, c_uint16, c_int, c_void_p, c_void_p)


# ---------------------------------------------------------------------------------------------------
# The prototype table: the one declaration of every C function vfd calls
# ---------------------------------------------------------------------------------------------------
#
# Each entry names the library, the C symbol, the return type and one `Arg` per parameter.  An Arg knows its
# ctypes type(s) (checked against the 22.11 headers by tests/dpdk/test_ffi_real.py), which Python values it
# accepts (type and range: a bad value raises TypeError/ValueError naming the function, the parameter and the
# value) and how a value becomes the C argument.  `call()` drives every call from the entry; the recording
# stand-in of the tests (tests/dpdk/recording_ffi.py) validates its calls with the same `Proto.convert`.


class Arg:
    """One C parameter.  `ctypes` lists the C types it becomes (two for a counted array); an output
    parameter (`takes_value` False) takes no Python value: `call()` returns what the function wrote."""

    ctypes: tuple = ()
    takes_value = True

    def __init__(self, name: str):
        self.name = name

    def refuse(self, fn: str, value, rule: str, exc=ValueError):
        raise exc(f"{fn}: {self.name}={value!r}: {rule}")

    def convert(self, fn: str, value) -> tuple:
        raise NotImplementedError


class Int(Arg):
    """An integer parameter within [lo, hi] (by default the range of its C type)."""

    def __init__(self, name: str, ctype=c_int, lo: int | None = None, hi: int | None = None):
        super().__init__(name)
        self.ctypes = (ctype,)
        bits = ctypes.sizeof(ctype) * 8
        signed = ctype(-1).value == -1
        self.lo = lo if lo is not None else (-(1 << (bits - 1)) if signed else 0)
        self.hi = hi if hi is not None else ((1 << (bits - 1)) - 1 if signed else (1 << bits) - 1)

    def convert(self, fn, value):
        if isinstance(value, bool) or not isinstance(value, int):
            self.refuse(fn, value, "must be an integer", TypeError)
        if not self.lo <= value <= self.hi:
            self.refuse(fn, value, f"must be in {self.lo}..{self.hi}")
        return (value,)


class Port(Int):
    """A port id (uint16_t) below RTE_MAX_ETHPORTS; RTE_ETH_ALL too where the function accepts it."""

    def __init__(self, name: str = "port", allow_all: bool = False):
        super().__init__(name, c_uint16, 0, RTE_ETH_ALL if allow_all else RTE_MAX_ETHPORTS - 1)


class Flag(Arg):
    """uint8_t on/off: a bool (or 0 / 1)."""

    ctypes = (c_uint8,)

    def convert(self, fn, value):
        if value not in (0, 1) or not isinstance(value, int):
            self.refuse(fn, value, "must be a bool", TypeError)
        return (1 if value else 0,)


class Socket(Int):
    """unsigned int socket id; SOCKET_ID_ANY (-1) travels as 0xFFFFFFFF."""

    def __init__(self, name: str = "socket_id"):
        super().__init__(name, c_int, SOCKET_ID_ANY, 1023)
        self.ctypes = (c_uint,)

    def convert(self, fn, value):
        return (super().convert(fn, value)[0] & 0xFFFFFFFF,)


class Mac(Arg):
    """struct rte_ether_addr *: 'aa:bb:cc:dd:ee:ff', 6 bytes or an RteEtherAddr."""

    def __init__(self, name: str = "mac_addr"):
        super().__init__(name)
        self.ctypes = (POINTER(RteEtherAddr),)

    def convert(self, fn, value):
        try:
            return (byref(mac_addr(value)),)
        except (ValueError, TypeError):
            self.refuse(fn, value, "must be a MAC address")


class StructIn(Arg):
    """Pointer to a struct vfd filled in (an instance of `cls`; None where `nullable`)."""

    def __init__(self, name: str, cls, nullable: bool = False):
        super().__init__(name)
        self.cls, self.nullable = cls, nullable
        self.ctypes = (POINTER(cls),)

    def convert(self, fn, value):
        if value is None and self.nullable:
            return (None,)
        if not isinstance(value, self.cls):
            self.refuse(fn, value, f"must be a {self.cls.__name__}", TypeError)
        return (byref(value),)


class Out(Arg):
    """Pointer to what the function fills in; `call()` returns it (through `result`)."""

    takes_value = False

    def __init__(self, name: str, cls, result: Callable | None = None):
        super().__init__(name)
        self.cls, self.result = cls, result or (lambda v: v)
        self.ctypes = (POINTER(cls),)

    def make(self):
        return self.cls()

    def as_arg(self, obj):
        return byref(obj)


class NameOut(Out):
    """char *name of RTE_ETH_NAME_MAX_LEN bytes, returned as str."""

    def __init__(self, name: str = "name"):
        super().__init__(name, c_char, lambda buf: buf.value.decode())
        self.ctypes = (c_char_p,)

    def make(self):
        return ctypes.create_string_buffer(RTE_ETH_NAME_MAX_LEN)

    def as_arg(self, obj):
        return obj


class Weights(Arg):
    """uint8_t tc_num, uint8_t *bw_weight: per-TC percentages (1..8 of them, each 0..100)."""

    ctypes = (c_uint8, POINTER(c_uint8))

    def convert(self, fn, value):
        if not isinstance(value, (list, tuple)) or not all(isinstance(w, int) and not isinstance(w, bool)
                                                          for w in value):
            self.refuse(fn, value, "must be a list of integers", TypeError)
        if not 1 <= len(value) <= RTE_ETH_DCB_NUM_TCS:
            self.refuse(fn, value, f"must name 1..{RTE_ETH_DCB_NUM_TCS} traffic classes")
        if any(not 0 <= w <= 100 for w in value):
            self.refuse(fn, value, "each weight must be in 0..100")
        return (len(value), (c_uint8 * len(value))(*value))


class Text(Arg):
    """const char *: a str."""

    ctypes = (c_char_p,)

    def convert(self, fn, value):
        if not isinstance(value, str):
            self.refuse(fn, value, "must be a string", TypeError)
        return (value.encode(),)


class Pointer(Arg):
    """An opaque pointer (struct rte_mempool *, void *): an address, a ctypes object or None."""

    def __init__(self, name: str, ctype=c_void_p, nullable: bool = True):
        super().__init__(name)
        self.ctypes, self.nullable = (ctype,), nullable

    def convert(self, fn, value):
        if value is None:
            if not self.nullable:
                self.refuse(fn, value, "must not be NULL")
            return (None,)
        if isinstance(value, bool) or not isinstance(value, (int, ctypes._SimpleCData, ctypes._Pointer,
                                                            ctypes.Structure, ctypes.Array)):
            self.refuse(fn, value, "must be an address or a ctypes object", TypeError)
        return (_addr(value),) if self.ctypes[0] is c_void_p else (value,)


class Callback(Arg):
    """rte_eth_dev_cb_fn: a CFUNCTYPE thunk (callback_register makes it)."""

    ctypes = (None,)

    def __init__(self, name: str = "cb_fn"):
        super().__init__(name)
        self.ctypes = (RteEthDevCbFn,)

    def convert(self, fn, value):
        if not isinstance(value, RteEthDevCbFn):
            self.refuse(fn, value, "must be an RteEthDevCbFn thunk", TypeError)
        return (value,)


class Argv(Arg):
    """int argc, char **argv from a list of str (args[0] is the program name)."""

    ctypes = (c_int, POINTER(c_char_p))

    def convert(self, fn, value):
        if not isinstance(value, (list, tuple)) or not value or not all(isinstance(a, str) for a in value):
            self.refuse(fn, value, "must be a non-empty list of strings", TypeError)
        encoded = [os.fsencode(a) for a in value]
        return (len(encoded), (c_char_p * (len(encoded) + 1))(*encoded, None))


@dataclass(frozen=True)
class Proto:
    """One C function: library key, symbol, return type, parameters and how its result reads.

    rc      the return value is 0 / a count, or -errno (-> DpdkError); False: a plain value (pointer, bool, ...)
    guard   check that the first argument is a live port before calling: several 22.11 rte_pmd_bnxt_* functions
            index rte_eth_devices[port] without RTE_ETH_VALID_PORTID_OR_ERR_RET (a bad id would crash vfd)
    driver  call only on ports of this driver (-ENOTSUP otherwise): the function does not check it itself
    """

    lib: str
    symbol: str
    ret: object
    args: tuple
    rc: bool = True
    guard: bool = False
    driver: str | None = None

    @property
    def argtypes(self) -> list:
        return [t for a in self.args for t in a.ctypes]

    @property
    def arity(self) -> int:
        return sum(1 for a in self.args if a.takes_value)

    def convert(self, values: tuple) -> tuple[list, list]:
        """Python values -> (C arguments, [(Out, object)]); TypeError / ValueError for a bad call."""
        if len(values) != self.arity:
            names = ", ".join(a.name for a in self.args if a.takes_value)
            raise TypeError(f"{self.symbol}({names}) takes {self.arity} arguments, got {len(values)}")
        cargs: list = []
        outs: list = []
        it = iter(values)
        for a in self.args:
            if a.takes_value:
                cargs += a.convert(self.symbol, next(it))
            else:
                obj = a.make()
                outs.append((a, obj))
                cargs.append(a.as_arg(obj))
        return cargs, outs

    @staticmethod
    def results(outs: list):
        vals = [a.result(obj) for a, obj in outs]
        return vals[0] if len(vals) == 1 else tuple(vals)


_u8, _u16, _u32, _u64, _int, _uint = c_uint8, c_uint16, c_uint32, c_uint64, c_int, c_uint
_VF = Int("vf", _u16)
_ON = Flag("on")
_VLAN = Int("vlan_id", _u16, 0, 4095)


def _proto(lib: str, symbol: str, ret, *args: Arg, **kw) -> Proto:
    if symbol.startswith("rte_pmd_"):
        kw.setdefault("guard", True)
    return Proto(lib, symbol, ret, tuple(args), **kw)


_TABLE = [
    # rte_eal.h / rte_errno.h / rte_version.h / rte_log.h
    _proto("eal", "rte_eal_init", _int, Argv("argv")),
    _proto("eal", "rte_eal_cleanup", _int),
    _proto("eal", "rte_strerror", c_char_p, Int("errnum"), rc=False),
    _proto("eal", "rte_version", c_char_p, rc=False),
    _proto("eal", "rte_log_set_global_level", None, Int("level", _u32, 1, 8)),
    # rte_mbuf.h / rte_mempool.h
    _proto("mbuf", "rte_pktmbuf_pool_create", c_void_p, Text("name"), Int("n", _uint, 1), Int("cache_size", _uint),
           Int("priv_size", _u16), Int("data_room_size", _u16), Int("socket_id", _int, SOCKET_ID_ANY), rc=False),
    _proto("mempool", "rte_mempool_free", None, Pointer("mp")),
    # rte_ethdev.h
    _proto("ethdev", "rte_eth_find_next_owned_by", _u64, Int("port_id", _u16, 0, RTE_MAX_ETHPORTS),
           Int("owner_id", _u64), rc=False),
    _proto("ethdev", "rte_eth_dev_is_valid_port", _int, Int("port_id", _u16), rc=False),
    _proto("ethdev", "rte_eth_dev_info_get", _int, Port(), Out("dev_info", RteEthDevInfo)),
    _proto("ethdev", "rte_eth_dev_get_name_by_port", _int, Port(), NameOut()),
    _proto("ethdev", "rte_eth_dev_socket_id", _int, Port(), rc=False),
    _proto("ethdev", "rte_eth_macaddr_get", _int, Port(), Out("mac_addr", RteEtherAddr, str)),
    _proto("ethdev", "rte_eth_dev_configure", _int, Port(), Int("nb_rx_q", _u16), Int("nb_tx_q", _u16),
           StructIn("eth_conf", RteEthConf)),
    _proto("ethdev", "rte_eth_rx_queue_setup", _int, Port(), Int("rx_queue_id", _u16), Int("nb_rx_desc", _u16),
           Socket(), StructIn("rx_conf", RteEthRxconf, nullable=True), Pointer("mb_pool", nullable=False)),
    _proto("ethdev", "rte_eth_tx_queue_setup", _int, Port(), Int("tx_queue_id", _u16), Int("nb_tx_desc", _u16),
           Socket(), StructIn("tx_conf", RteEthTxconf, nullable=True)),
    _proto("ethdev", "rte_eth_dev_start", _int, Port()),
    _proto("ethdev", "rte_eth_dev_stop", _int, Port()),
    _proto("ethdev", "rte_eth_dev_close", _int, Port()),
    _proto("ethdev", "rte_eth_link_get_nowait", _int, Port(), Out("link", RteEthLink)),
    _proto("ethdev", "rte_eth_stats_get", _int, Port(), Out("stats", RteEthStats)),
    _proto("ethdev", "rte_eth_stats_reset", _int, Port()),
    _proto("ethdev", "rte_eth_xstats_get_names", _int, Port(),
           Pointer("xstats_names", POINTER(RteEthXstatName)), Int("size", _uint)),
    _proto("ethdev", "rte_eth_xstats_get", _int, Port(), Pointer("xstats", POINTER(RteEthXstat)), Int("n", _uint)),
    _proto("ethdev", "rte_eth_promiscuous_enable", _int, Port()),
    _proto("ethdev", "rte_eth_promiscuous_disable", _int, Port()),
    _proto("ethdev", "rte_eth_allmulticast_enable", _int, Port()),
    _proto("ethdev", "rte_eth_dev_mac_addr_add", _int, Port(), Mac(), Int("pool", _u32, 0, 63)),
    _proto("ethdev", "rte_eth_dev_mac_addr_remove", _int, Port(), Mac()),
    _proto("ethdev", "rte_eth_dev_uc_all_hash_table_set", _int, Port(), _ON, guard=True),
    _proto("ethdev", "rte_eth_dev_flow_ctrl_get", _int, Port(), Out("fc_conf", RteEthFcConf)),
    _proto("ethdev", "rte_eth_dev_flow_ctrl_set", _int, Port(), StructIn("fc_conf", RteEthFcConf)),
    _proto("ethdev", "rte_eth_dev_callback_register", _int, Port(allow_all=True),
           Int("event", _int, 0, RTE_ETH_EVENT_MAX - 1), Callback(), Pointer("cb_arg")),
    _proto("ethdev", "rte_eth_dev_callback_unregister", _int, Port(allow_all=True),
           Int("event", _int, 0, RTE_ETH_EVENT_MAX - 1), Callback(), Pointer("cb_arg")),
    # ethdev_driver.h (not installed; symbol version INTERNAL):
    #   int rte_eth_dev_callback_process(struct rte_eth_dev *dev, enum rte_eth_event_type event, void *ret_param);
    _proto("ethdev", "rte_eth_dev_callback_process", _int, Pointer("dev", nullable=False),
           Int("event", _int, 0, RTE_ETH_EVENT_MAX - 1), Pointer("ret_param"), rc=False),
    # rte_flow.h (the mirror rule)
    _proto("ethdev", "rte_flow_validate", _int, Port(), StructIn("attr", RteFlowAttr),
           Pointer("pattern", POINTER(RteFlowItem), nullable=False), Pointer("actions", POINTER(RteFlowAction),
                                                                            nullable=False),
           StructIn("error", RteFlowError)),
    _proto("ethdev", "rte_flow_create", c_void_p, Port(), StructIn("attr", RteFlowAttr),
           Pointer("pattern", POINTER(RteFlowItem), nullable=False), Pointer("actions", POINTER(RteFlowAction),
                                                                            nullable=False),
           StructIn("error", RteFlowError), rc=False),
    _proto("ethdev", "rte_flow_destroy", _int, Port(), Pointer("flow", nullable=False), StructIn("error", RteFlowError)),
    # rte_pmd_ixgbe.h
    _proto("net_ixgbe", "rte_pmd_ixgbe_ping_vf", _int, Port(), _VF),
    _proto("net_ixgbe", "rte_pmd_ixgbe_set_vf_mac_addr", _int, Port(), _VF, Mac()),
    _proto("net_ixgbe", "rte_pmd_ixgbe_set_vf_vlan_anti_spoof", _int, Port(), _VF, _ON),
    _proto("net_ixgbe", "rte_pmd_ixgbe_set_vf_mac_anti_spoof", _int, Port(), _VF, _ON),
    _proto("net_ixgbe", "rte_pmd_ixgbe_set_vf_vlan_insert", _int, Port(), _VF, _VLAN),
    _proto("net_ixgbe", "rte_pmd_ixgbe_set_tx_loopback", _int, Port(), _ON),
    _proto("net_ixgbe", "rte_pmd_ixgbe_set_vf_split_drop_en", _int, Port(), _VF, _ON),
    _proto("net_ixgbe", "rte_pmd_ixgbe_set_vf_vlan_stripq", _int, Port(), _VF, _ON),
    _proto("net_ixgbe", "rte_pmd_ixgbe_set_vf_rxmode", _int, Port(), _VF, Int("rx_mask", _u16, 1, 0x1F), _ON),
    _proto("net_ixgbe", "rte_pmd_ixgbe_set_vf_vlan_filter", _int, Port(), _VLAN, Int("vf_mask", _u64, 1), _ON),
    _proto("net_ixgbe", "rte_pmd_ixgbe_set_vf_rate_limit", _int, Port(), _VF, Int("tx_rate", _u32),
           Int("q_msk", _u64)),
    _proto("net_ixgbe", "rte_pmd_ixgbe_set_tc_bw_alloc", _int, Port(), Weights("bw_weight")),
    # rte_pmd_i40e.h
    _proto("net_i40e", "rte_pmd_i40e_ping_vfs", _int, Port(), _VF),
    _proto("net_i40e", "rte_pmd_i40e_set_vf_mac_anti_spoof", _int, Port(), _VF, _ON),
    _proto("net_i40e", "rte_pmd_i40e_set_vf_vlan_anti_spoof", _int, Port(), _VF, _ON),
    _proto("net_i40e", "rte_pmd_i40e_set_tx_loopback", _int, Port(), _ON),
    _proto("net_i40e", "rte_pmd_i40e_set_vf_unicast_promisc", _int, Port(), _VF, _ON),
    _proto("net_i40e", "rte_pmd_i40e_set_vf_multicast_promisc", _int, Port(), _VF, _ON),
    _proto("net_i40e", "rte_pmd_i40e_set_vf_mac_addr", _int, Port(), _VF, Mac()),
    _proto("net_i40e", "rte_pmd_i40e_set_vf_vlan_stripq", _int, Port(), _VF, _ON),
    _proto("net_i40e", "rte_pmd_i40e_set_vf_vlan_insert", _int, Port(), _VF, _VLAN),
    _proto("net_i40e", "rte_pmd_i40e_set_vf_broadcast", _int, Port(), _VF, _ON),
    _proto("net_i40e", "rte_pmd_i40e_set_vf_vlan_filter", _int, Port(), _VLAN, Int("vf_mask", _u64, 1), _ON),
    _proto("net_i40e", "rte_pmd_i40e_get_vf_stats", _int, Port(), _VF, Out("stats", RteEthStats)),
    _proto("net_i40e", "rte_pmd_i40e_set_vf_max_bw", _int, Port(), _VF, Int("bw", _u32)),
    _proto("net_i40e", "rte_pmd_i40e_set_vf_tc_bw_alloc", _int, Port(), _VF, Weights("bw_weight")),
    _proto("net_i40e", "rte_pmd_i40e_set_vf_tc_max_bw", _int, Port(), _VF, Int("tc_no", _u8, 0, RTE_ETH_DCB_NUM_TCS - 1),
           Int("bw", _u32)),
    _proto("net_i40e", "rte_pmd_i40e_set_tc_strict_prio", _int, Port(), Int("tc_map", _u8)),
    _proto("net_i40e", "rte_pmd_i40e_add_vf_mac_addr", _int, Port(), _VF, Mac()),
    _proto("net_i40e", "rte_pmd_i40e_query_vfid_by_mac", _int, Port(), Mac("vf_mac")),
    # rte_pmd_bnxt.h
    _proto("net_bnxt", "rte_pmd_bnxt_set_vf_mac_anti_spoof", _int, Port(), _VF, _ON),
    _proto("net_bnxt", "rte_pmd_bnxt_set_vf_mac_addr", _int, Port(), _VF, Mac()),
    _proto("net_bnxt", "rte_pmd_bnxt_set_vf_vlan_stripq", _int, Port(), _VF, _ON),
    _proto("net_bnxt", "rte_pmd_bnxt_set_vf_vlan_insert", _int, Port(), _VF, _VLAN),
    _proto("net_bnxt", "rte_pmd_bnxt_set_vf_vlan_filter", _int, Port(), _VLAN, Int("vf_mask", _u64, 1), _ON),
    _proto("net_bnxt", "rte_pmd_bnxt_set_tx_loopback", _int, Port(), _ON),
    _proto("net_bnxt", "rte_pmd_bnxt_set_vf_rate_limit", _int, Port(), _VF, Int("tx_rate", _u32), Int("q_msk", _u64)),
    _proto("net_bnxt", "rte_pmd_bnxt_get_vf_stats", _int, Port(), _VF, Out("stats", RteEthStats)),
    _proto("net_bnxt", "rte_pmd_bnxt_set_vf_vlan_anti_spoof", _int, Port(), _VF, _ON),
    _proto("net_bnxt", "rte_pmd_bnxt_set_vf_rxmode", _int, Port(), _VF, Int("rx_mask", _u16, 1, 0x1F), _ON),
    _proto("net_bnxt", "rte_pmd_bnxt_get_vf_rx_status", _int, Port(), _VF),
    _proto("net_bnxt", "rte_pmd_bnxt_get_vf_tx_drop_count", _int, Port(), _VF,
           Out("count", c_uint64, lambda v: int(v.value))),
    _proto("net_bnxt", "rte_pmd_bnxt_mac_addr_add", _int, Port(), Mac(), Int("vf_id", _u32)),
    # does not check the port's driver: on net_null it cast foreign private data to struct bnxt * (-EINVAL)
    _proto("net_bnxt", "rte_pmd_bnxt_set_vf_persist_stats", _int, Port(), _VF, _ON, driver="net_bnxt"),
]
PROTOTYPES: dict[str, Proto] = {p.symbol: p for p in _TABLE}

# Core libraries (loaded in this order) and the PMDs loaded by default.
CORE_LIBS = ("eal", "mempool", "mbuf", "ethdev")
DEFAULT_PMDS = ("net_null", "net_ixgbe", "net_i40e", "net_bnxt")

# ---------------------------------------------------------------------------------------------------
# Locating and loading the libraries
# ---------------------------------------------------------------------------------------------------


def _unique(items):
    seen = set()
    for i in items:
        if i and i not in seen:
            seen.add(i)
            yield i


def _candidate_libdirs() -> list[str]:
    cands: list[str] = []
    env = os.environ.get("VFD_DPDK_LIBDIR")
    if env:
        cands.append(env)
    multiarch = sysconfig.get_config_var("MULTIARCH")
    if multiarch:
        cands.append(f"/usr/lib/{multiarch}")
    machine = platform.machine()
    gnu = {"x86_64": "x86_64-linux-gnu", "aarch64": "aarch64-linux-gnu", "ppc64le": "powerpc64le-linux-gnu",
           "armv7l": "arm-linux-gnueabihf", "riscv64": "riscv64-linux-gnu", "i686": "i386-linux-gnu"}
    if machine in gnu:
        cands.append(f"/usr/lib/{gnu[machine]}")
    cands += [f"/usr/lib/{machine}-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/local/lib64", "/usr/local/lib"]
    cands += sorted(glob.glob("/usr/lib/*-linux-gnu*"))
    return list(_unique(cands))


def find_libdir() -> str:
    """Directory holding librte_eal.so.23 (Debian: /usr/lib/<multiarch>); $VFD_DPDK_LIBDIR overrides."""
    for d in _candidate_libdirs():
        if os.path.exists(os.path.join(d, f"librte_eal.so.{DPDK_ABI}")):
            return d
    raise DpdkUnavailable("find_libdir", message=f"librte_eal.so.{DPDK_ABI} not found (install the 'dpdk' package; "
                                                 f"searched {', '.join(_candidate_libdirs())})")


def find_pmd_dir(libdir: str | None = None) -> str:
    """The EAL plugin directory (Debian: <libdir>/dpdk/pmds-23.0); falls back to libdir."""
    libdir = libdir or find_libdir()
    preferred = os.path.join(libdir, "dpdk", f"pmds-{DPDK_ABI}.0")
    if os.path.isdir(preferred):
        return preferred
    found = sorted(glob.glob(os.path.join(libdir, "dpdk", f"pmds-{DPDK_ABI}*")))
    return found[0] if found else libdir


def library_path(key: str) -> str:
    """Path of librte_<key>.so.23, e.g. library_path('net_null'); PMDs are looked up in the plugin dir first."""
    libdir = find_libdir()
    soname = f"librte_{key}.so.{DPDK_ABI}"
    dirs = [find_pmd_dir(libdir), libdir] if key.startswith(("net_", "bus_", "mempool_", "common_")) else [libdir]
    for d in dirs:
        p = os.path.join(d, soname)
        if os.path.exists(p):
            return p
    raise DpdkUnavailable("library_path", message=f"{soname} not found in {', '.join(dirs)}")


def pmd_path(name: str) -> str:
    """Path of a PMD library for EAL's ``-d``: pmd_path('net_null') or pmd_path('null')."""
    return library_path(name if name.startswith("net_") else f"net_{name}")


def available() -> bool:
    """True when the DPDK 22.11 core libraries are installed (does not load them)."""
    try:
        for key in CORE_LIBS:
            library_path(key)
        return True
    except DpdkUnavailable:
        return False


class _State:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.libs: dict[str, ctypes.CDLL] = {}
        self.paths: dict[str, str] = {}
        self.funcs: dict[str, object] = {}
        self.missing_symbols: dict[str, str] = {}  # symbol -> library key
        self.missing_libs: dict[str, str] = {}  # library key -> reason
        self.eal: ctypes.CDLL | None = None
        self.eal_initialised = False
        self.keepalive: list[object] = []  # argv buffers handed to rte_eal_init


_state = _State()


def _bind(key: str) -> None:
    lib = _state.libs[key]
    for p in PROTOTYPES.values():
        name = p.symbol
        if p.lib != key or name in _state.funcs:
            continue
        try:
            f = getattr(lib, name)
        except AttributeError:
            _state.missing_symbols[name] = key
            continue
        f.restype = p.ret
        f.argtypes = p.argtypes
        _state.funcs[name] = f
        _state.missing_symbols.pop(name, None)


def load(pmds: Sequence[str] = DEFAULT_PMDS) -> dict[str, str]:
    """Load the core libraries and the given PMDs with RTLD_GLOBAL; idempotent.  Returns {key: path} loaded.

    A missing core library raises :class:`DpdkUnavailable`; a missing PMD library is recorded
    (:func:`missing_libraries`) and its functions raise :class:`DpdkUnavailable` when called.
    """
    with _state.lock:
        for key in CORE_LIBS:
            if key in _state.libs:
                continue
            path = library_path(key)
            try:
                _state.libs[key] = ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
            except OSError as e:
                raise DpdkUnavailable("load", message=f"cannot load {path}: {e}") from e
            _state.paths[key] = path
            _bind(key)
            if key == "eal":
                _state.eal = _state.libs[key]
        for name in pmds:
            key = name if name.startswith("net_") else f"net_{name}"
            if key in _state.libs:
                continue
            try:
                path = library_path(key)
                _state.libs[key] = ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
            except (DpdkUnavailable, OSError) as e:
                _state.missing_libs[key] = str(e)
                continue
            _state.missing_libs.pop(key, None)
            _state.paths[key] = path
            _bind(key)
        return dict(_state.paths)


def is_loaded() -> bool:
    return _state.eal is not None


def loaded_libraries() -> dict[str, str]:
    return dict(_state.paths)


def missing_libraries() -> dict[str, str]:
    return dict(_state.missing_libs)


def missing_symbols() -> dict[str, str]:
    """Prototypes whose symbol is absent from its loaded library: {symbol: library key}."""
    return dict(_state.missing_symbols)


def has_symbol(name: str) -> bool:
    if not is_loaded():
        load()
    return name in _state.funcs


def raw(name: str):
    """The bound ctypes function for a C symbol (loads on first use); raises if absent."""
    f = _state.funcs.get(name)
    if f is not None:
        return f
    if not is_loaded():
        load()
        f = _state.funcs.get(name)
        if f is not None:
            return f
    if name in _state.missing_symbols:
        lib = _state.missing_symbols[name]
        raise SymbolMissing(name, message=f"symbol {name} is not exported by {_state.paths.get(lib, lib)}")
    p = PROTOTYPES.get(name)
    if p is not None:
        raise DpdkUnavailable(name, message=_state.missing_libs.get(p.lib, f"library {p.lib} not loaded"))
    raise KeyError(f"no prototype for {name}")


def mac_addr(mac) -> RteEtherAddr:
    """'aa:bb:cc:dd:ee:ff' / 'aa-bb-..' / 6 bytes / RteEtherAddr -> RteEtherAddr."""
    if isinstance(mac, RteEtherAddr):
        return mac
    if isinstance(mac, str):
        parts = mac.replace("-", ":").split(":")
        if len(parts) != 6:
            raise ValueError(f"bad MAC address {mac!r}")
        raw_bytes = bytes(int(p, 16) for p in parts)
    else:
        raw_bytes = bytes(mac)
    if len(raw_bytes) != RTE_ETHER_ADDR_LEN:
        raise ValueError(f"bad MAC address {mac!r}")
    a = RteEtherAddr()
    a.addr_bytes[:] = list(raw_bytes)
    return a


def _addr(p) -> int | None:
    """Address of a ctypes object / pointer / int (None stays None)."""
    if p is None:
        return None
    if isinstance(p, int):
        return p
    if isinstance(p, c_void_p):
        return p.value
    if isinstance(p, ctypes._Pointer):
        return ctypes.cast(p, c_void_p).value
    return ctypes.addressof(p)


# ---------------------------------------------------------------------------------------------------
# Calling through the table
# ---------------------------------------------------------------------------------------------------


def _driver_of(port: int) -> str | None:
    info = RteEthDevInfo()
    if raw("rte_eth_dev_info_get")(port, byref(info)) < 0:
        return None
    return (info.driver_name or b"").decode()


def call(symbol: str, *args, check: bool = True):
    """Call the C function `symbol` as its `PROTOTYPES` entry says: the arguments are validated and converted,
    the port guard and driver check run first where the entry asks for them, and a negative return becomes
    DpdkError (with ``check=False`` the raw code is returned instead).  A function with an output parameter
    returns what it wrote (always checked); one with ``rc=False`` returns its plain value (char * decoded)."""
    p = PROTOTYPES.get(symbol)
    if p is None:
        raise KeyError(f"no DPDK prototype named {symbol}")
    cargs, outs = p.convert(args)
    f = raw(symbol)
    rc = 0
    if p.guard or p.driver:
        port = args[0]
        if not raw("rte_eth_dev_is_valid_port")(port):
            rc = -_errno.ENODEV
        elif p.driver and _driver_of(port) != p.driver:
            rc = -_errno.ENOTSUP
    if rc == 0:
        rc = f(*cargs)
    if p.ret is None:
        return None
    if not p.rc:
        return rc.decode(errors="replace") if isinstance(rc, bytes) else rc
    rc = int(rc)
    if rc < 0 and (check or outs):
        raise DpdkError(symbol, rc)
    return p.results(outs) if outs and rc >= 0 else rc


def __getattr__(name: str):
    """`ffi.rte_pmd_ixgbe_ping_vf(port, vf)` is `ffi.call("rte_pmd_ixgbe_ping_vf", port, vf)`."""
    if name in PROTOTYPES:
        return functools.partial(call, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ---------------------------------------------------------------------------------------------------
# Composed calls: more than one C call, or a result shaped for Python.  These (and `call`) are what the
# backend uses; the recording stand-in fakes exactly these names (COMPOSED) besides `call`.
# ---------------------------------------------------------------------------------------------------

COMPOSED = ("eal_init", "eal_cleanup", "list_ports", "port_info", "pktmbuf_pool_create", "link_get_nowait",
            "stats_get", "xstats", "callback_register", "callback_unregister", "flow_validate", "flow_create",
            "flow_destroy")


def rte_errno() -> int:
    """Current thread's rte_errno (per_lcore__rte_errno is a TLS variable; dlsym resolves it per thread)."""
    load()
    return c_int.in_dll(_state.eal, "per_lcore__rte_errno").value


def eal_init(args: Sequence[str]) -> int:
    """rte_eal_init(argc, argv); args[0] is the program name.  Returns the number of parsed arguments.

    Raises DpdkError('rte_eal_init', -rte_errno) with rte_strerror's text on failure.  The argv buffers are kept
    alive for the life of the process (EAL may keep pointers into them).
    """
    p = PROTOTYPES["rte_eal_init"]
    cargs, _ = p.convert((list(args),))
    _state.keepalive.append(cargs)
    rc = raw("rte_eal_init")(*cargs)
    if rc < 0:
        e = rte_errno() or -rc
        raise DpdkError("rte_eal_init", -e, f"{errno_text(e)}; EAL args: {' '.join(args)}")
    _state.eal_initialised = True
    return rc


def eal_cleanup(check: bool = True) -> int:
    rc = call("rte_eal_cleanup", check=check)
    _state.eal_initialised = False
    return rc


def eal_initialised() -> bool:
    return _state.eal_initialised


def eth_dev_is_valid_port(port: int) -> bool:
    return bool(call("rte_eth_dev_is_valid_port", port))


def list_ports() -> list[int]:
    """RTE_ETH_FOREACH_DEV: every valid port not owned by another DPDK entity."""
    ports = []
    p = call("rte_eth_find_next_owned_by", 0, RTE_ETH_DEV_NO_OWNER)
    while p < RTE_MAX_ETHPORTS:
        ports.append(int(p))
        p = call("rte_eth_find_next_owned_by", p + 1, RTE_ETH_DEV_NO_OWNER)
    return ports


@dataclass(frozen=True)
class PortInfo:
    port_id: int
    name: str  # PCI address for PCI devices
    driver_name: str  # 'net_ixgbe', 'net_i40e', 'net_bnxt', 'net_null', ...
    max_vfs: int
    max_rx_queues: int
    max_tx_queues: int
    max_mac_addrs: int
    min_mtu: int
    max_mtu: int
    max_rx_pktlen: int
    if_index: int
    socket_id: int
    mac: str


def port_info(port: int) -> PortInfo:
    info = call("rte_eth_dev_info_get", port)
    return PortInfo(
        port_id=port,
        name=call("rte_eth_dev_get_name_by_port", port),
        driver_name=(info.driver_name or b"").decode(),
        max_vfs=info.max_vfs,
        max_rx_queues=info.max_rx_queues,
        max_tx_queues=info.max_tx_queues,
        max_mac_addrs=info.max_mac_addrs,
        min_mtu=info.min_mtu,
        max_mtu=info.max_mtu,
        max_rx_pktlen=info.max_rx_pktlen,
        if_index=info.if_index,
        socket_id=call("rte_eth_dev_socket_id", port),
        mac=call("rte_eth_macaddr_get", port),
    )


def make_eth_conf(mtu: int = 0, rx_offloads: int = 0, tx_offloads: int = 0, lsc_intr: bool = False,
                  link_speeds: int = 0) -> RteEthConf:
    """A zeroed rte_eth_conf with the few fields vfd sets (mtu 0 = PMD default).  Pure."""
    conf = RteEthConf()
    conf.link_speeds = link_speeds
    conf.rxmode.mq_mode = RTE_ETH_MQ_RX_NONE
    conf.rxmode.mtu = mtu
    conf.rxmode.offloads = rx_offloads
    conf.txmode.mq_mode = RTE_ETH_MQ_TX_NONE
    conf.txmode.offloads = tx_offloads
    conf.intr_conf.lsc = 1 if lsc_intr else 0
    return conf


def pktmbuf_pool_create(name: str, n: int, cache_size: int = 0, priv_size: int = 0,
                        data_room_size: int = RTE_MBUF_DEFAULT_BUF_SIZE, socket: int = SOCKET_ID_ANY) -> int:
    """rte_pktmbuf_pool_create(); returns the struct rte_mempool * as an int.  NULL -> DpdkError(-rte_errno)."""
    p = call("rte_pktmbuf_pool_create", name, n, cache_size, priv_size, data_room_size, socket)
    if not p:
        e = rte_errno() or _errno.ENOMEM
        raise DpdkError("rte_pktmbuf_pool_create", -e)
    return int(p)


class LinkStatus(NamedTuple):
    speed: int  # Mbps; RTE_ETH_SPEED_NUM_UNKNOWN (0xFFFFFFFF) when unknown
    full_duplex: bool
    autoneg: bool
    up: bool


def link_get_nowait(port: int) -> LinkStatus:
    link = call("rte_eth_link_get_nowait", port)
    return LinkStatus(int(link.link_speed), bool(link.link_duplex), bool(link.link_autoneg), bool(link.link_status))


def stats_dict(s: RteEthStats) -> dict[str, int]:
    """The scalar counters of struct rte_eth_stats.  Pure."""
    return {k: int(getattr(s, k)) for k in STATS_FIELDS}


def stats_get(port: int) -> dict[str, int]:
    return stats_dict(call("rte_eth_stats_get", port))


def _counted(symbol: str, port: int, cls) -> list:
    """The two-call pattern of the xstats API: ask for the count, then fill an array of that size."""
    while True:
        n = call(symbol, port, None, 0)
        arr = (cls * max(n, 1))()
        got = call(symbol, port, arr, n)
        if got <= n:
            return list(arr[:got])


def xstats(port: int) -> dict[str, int]:
    """{name: value} for every extended statistic of the port."""
    names = [x.name.decode(errors="replace") for x in _counted("rte_eth_xstats_get_names", port, RteEthXstatName)]
    return {names[x.id]: int(x.value) for x in _counted("rte_eth_xstats_get", port, RteEthXstat)
            if x.id < len(names)}


# ---------------------------------------------------------------------------------------------------
# Event callbacks
# ---------------------------------------------------------------------------------------------------

# Python callback: fn(port_id: int, event: int, ret_param: int | None) -> int | None
EventCallback = Callable[[int, int, "int | None"], "int | None"]


@dataclass
class CallbackHandle:
    port: int
    event: int
    token: int  # passed to DPDK as cb_arg; identifies this registration
    cfunc: object  # the CFUNCTYPE thunk; referenced here so it outlives the registration
    fn: EventCallback


_callbacks: dict[int, CallbackHandle] = {}
_tokens = itertools.count(1)


def callback_register(port: int, event: int, fn: EventCallback) -> CallbackHandle:
    """rte_eth_dev_callback_register(port, event, thunk, token).  `port` may be RTE_ETH_ALL.

    `fn(port_id, event, ret_param)` runs synchronously in whatever thread DPDK raises the event (EAL's interrupt
    thread for real LSC / mailbox interrupts, the caller's thread for :func:`callback_process`).  For
    RTE_ETH_EVENT_VF_MBOX, ret_param is the address of the PMD's mb_event_param; write the verdict into its
    retval before returning.  Exceptions are logged and swallowed (a C caller cannot receive them).
    """
    token = next(_tokens)

    def thunk(port_id, ev, _cb_arg, ret_param):
        try:
            r = fn(int(port_id), int(ev), ret_param)
            return int(r) if r is not None else 0
        except BaseException:  # must not propagate into C
            log.exception("DPDK event callback %r failed (port %s, event %s)", fn, port_id, ev)
            return 0

    cfunc = RteEthDevCbFn(thunk)
    call("rte_eth_dev_callback_register", port, event, cfunc, token)
    handle = CallbackHandle(port=port, event=event, token=token, cfunc=cfunc, fn=fn)
    _callbacks[token] = handle
    return handle


def callback_unregister(handle: CallbackHandle, check: bool = True) -> int:
    """Undo :func:`callback_register`.  -EAGAIN (callback running) keeps the thunk referenced."""
    rc = call("rte_eth_dev_callback_unregister", handle.port, handle.event, handle.cfunc, handle.token, check=check)
    if rc >= 0:
        _callbacks.pop(handle.token, None)
    return rc


def registered_callbacks() -> list[CallbackHandle]:
    return list(_callbacks.values())


def eth_dev_address(port: int) -> int:
    """&rte_eth_devices[port] (the INTERNAL-versioned array exported by librte_ethdev.so.23)."""
    if not 0 <= port < RTE_MAX_ETHPORTS:
        raise ValueError(f"port {port} out of range")
    load()
    base = ctypes.addressof(c_char.in_dll(_state.libs["ethdev"], "rte_eth_devices"))
    return base + port * SIZEOF_RTE_ETH_DEV


def eth_dev_layout_ok(port: int) -> bool:
    """Run-time check of SIZEOF_RTE_ETH_DEV / RTE_ETH_DEV_DATA_OFFSET: rte_eth_devices[port].data->name must be
    the port's name."""
    data = c_void_p.from_address(eth_dev_address(port) + RTE_ETH_DEV_DATA_OFFSET).value
    if not data:
        return False
    name = ctypes.string_at(data, RTE_ETH_NAME_MAX_LEN).split(b"\0", 1)[0].decode(errors="replace")
    try:
        return name == call("rte_eth_dev_get_name_by_port", port)
    except DpdkError:
        return False


def callback_process(port: int, event: int, param=None) -> int:
    """Deliver `event` on `port` to the registered callbacks exactly as a PMD does:
    rte_eth_dev_callback_process(&rte_eth_devices[port], event, param).

    `param` is a ctypes struct (e.g. RtePmdIxgbeMbEventParam), a pointer, an address or None.  Returns the raw
    return value (that of the last callback run, 0 if none).  Raises DpdkError(-ENODEV) for an invalid port or
    ValueError if the rte_eth_dev layout check fails.
    """
    if not eth_dev_is_valid_port(port):
        raise DpdkError("rte_eth_dev_callback_process", -_errno.ENODEV)
    if not eth_dev_layout_ok(port):
        raise ValueError("rte_eth_devices layout mismatch: SIZEOF_RTE_ETH_DEV / RTE_ETH_DEV_DATA_OFFSET are wrong "
                         "for the installed librte_ethdev")
    return int(call("rte_eth_dev_callback_process", eth_dev_address(port), event, param))


# Mailbox parameter helpers -------------------------------------------------------------------------


def ixgbe_mb_param(ret_param: int) -> RtePmdIxgbeMbEventParam:
    """View (no copy) of the rte_pmd_ixgbe_mb_event_param at ret_param; assign .retval to give the verdict."""
    return RtePmdIxgbeMbEventParam.from_address(ret_param)


def i40e_mb_param(ret_param: int) -> RtePmdI40eMbEventParam:
    return RtePmdI40eMbEventParam.from_address(ret_param)


def bnxt_mb_param(ret_param: int) -> RtePmdBnxtMbEventParam:
    return RtePmdBnxtMbEventParam.from_address(ret_param)


def ixgbe_msg_words(param: RtePmdIxgbeMbEventParam, n: int) -> list[int]:
    """The ixgbe mailbox message (`n` uint32_t words) the PMD passed in param.msg."""
    if not param.msg:
        return []
    return list((c_uint32 * n).from_address(param.msg))


def msg_bytes(msg_ptr: int | None, length: int) -> bytes:
    """Copy `length` bytes of a mailbox payload (i40e: param.msg / param.msglen)."""
    if not msg_ptr or length <= 0:
        return b""
    return ctypes.string_at(msg_ptr, length)


def hwrm_req_type(msg_ptr: int | None) -> int | None:
    """bnxt: the HWRM request type (little-endian u16 at offset 0 of the forwarded request)."""
    if not msg_ptr:
        return None
    return int.from_bytes(ctypes.string_at(msg_ptr, 2), "little")


# ---------------------------------------------------------------------------------------------------
# rte_flow: the PMD's reason travels in struct rte_flow_error
# ---------------------------------------------------------------------------------------------------


def _flow_error(symbol: str, code: int, err: RteFlowError) -> DpdkError:
    why = err.message.decode(errors="replace") if err.message else None
    return DpdkError(symbol, code, f"{errno_text(code)}: {why}" if why and why != errno_text(code) else None)


def flow_validate(port: int, attr: RteFlowAttr, pattern, actions) -> None:
    """rte_flow_validate; DpdkError carrying the PMD's message when the rule would be refused."""
    err = RteFlowError()
    rc = call("rte_flow_validate", port, attr, pattern, actions, err, check=False)
    if rc < 0:
        raise _flow_error("rte_flow_validate", rc, err)


def flow_create(port: int, attr: RteFlowAttr, pattern, actions) -> int:
    """rte_flow_create -> the struct rte_flow * as an int; NULL -> DpdkError(-rte_errno) with the PMD's message."""
    err = RteFlowError()
    handle = call("rte_flow_create", port, attr, pattern, actions, err)
    if not handle:
        raise _flow_error("rte_flow_create", -(rte_errno() or _errno.EINVAL), err)
    return int(handle)


def flow_destroy(port: int, handle: int, check: bool = True) -> int:
    err = RteFlowError()
    rc = call("rte_flow_destroy", port, handle, err, check=False)
    if rc < 0 and check:
        raise _flow_error("rte_flow_destroy", rc, err)
    return rc
