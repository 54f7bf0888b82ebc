"""Low-level ctypes binding to Debian's DPDK 22.11 (ABI 23) shared libraries.

What this module is
    The thin layer between vfd's ``dpdk`` backend and the C libraries ``librte_eal.so.23``,
    ``librte_ethdev.so.23``, ``librte_mempool.so.23``, ``librte_mbuf.so.23`` and the PMD libraries
    ``librte_net_{ixgbe,i40e,bnxt,null}.so.23``.  Every prototype below was copied from the 22.11
    headers in ``/usr/include/dpdk`` (``rte_eal.h``, ``rte_ethdev.h``, ``rte_mbuf.h``,
    ``rte_pmd_ixgbe.h``, ``rte_pmd_i40e.h``, ``rte_pmd_bnxt.h``); every struct layout the module relies on
    is checked against the C compiler by ``tests/dpdk/test_ffi_real.py``.

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
    * Importing this module loads nothing.  :func:`load` (called implicitly by every wrapper) finds and
      loads the libraries, all with ``RTLD_GLOBAL`` so that PMDs and EAL plugins resolve against them.
    * ``rte_eal_init`` can run once per process: a second call fails with EALREADY, even after
      ``rte_eal_cleanup``.  Tests therefore run EAL in a subprocess.
    * Every wrapper turns a negative return code into :class:`DpdkError` (``func``, ``code``, ``errname``);
      pass ``check=False`` to get the raw code instead.
    * Symbols declared in a header but not exported by the 22.11 ``.so`` (``rte_pmd_i40e_remove_vf_mac_addr``)
      raise :class:`SymbolMissing` (a :class:`DpdkError` with code ``-ENOSYS``) when called.
    * Python event callbacks are wrapped in ``CFUNCTYPE`` thunks that this module keeps referenced until
      :func:`callback_unregister`, so the garbage collector never frees a pointer DPDK still holds.
"""

from __future__ import annotations

import ctypes
import errno as _errno
import glob
import itertools
import logging
import os
import platform
import sysconfig
import threading
from collections.abc import Callable, Iterator, Sequence
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

# VF rx-mode mask for rte_pmd_ixgbe_set_vf_rxmode / rte_pmd_bnxt_set_vf_rxmode (RTE_BIT32(n), rte_ethdev.h)
RTE_ETH_VMDQ_ACCEPT_UNTAG = 1 << 0
RTE_ETH_VMDQ_ACCEPT_HASH_MC = 1 << 1
RTE_ETH_VMDQ_ACCEPT_HASH_UC = 1 << 2
RTE_ETH_VMDQ_ACCEPT_BROADCAST = 1 << 3
RTE_ETH_VMDQ_ACCEPT_MULTICAST = 1 << 4

# enum rte_eth_fc_mode
RTE_ETH_FC_NONE = 0
RTE_ETH_FC_RX_PAUSE = 1
RTE_ETH_FC_TX_PAUSE = 2
RTE_ETH_FC_FULL = 3

# ---------------------------------------------------------------------------------------------------
# Mailbox (VF -> PF request) policing: verdicts and message ids
# ---------------------------------------------------------------------------------------------------

# enum rte_pmd_{ixgbe,i40e,bnxt}_mb_event_rsp: identical values in the three headers (verified with gcc).
RTE_PMD_MB_EVENT_NOOP_ACK = 0  # skip the request, tell the VF it succeeded
RTE_PMD_MB_EVENT_NOOP_NACK = 1  # skip the request, tell the VF it failed
RTE_PMD_MB_EVENT_PROCEED = 2  # let the PF driver carry it out (the PMD's default)
RTE_PMD_IXGBE_MB_EVENT_NOOP_ACK = RTE_PMD_I40E_MB_EVENT_NOOP_ACK = RTE_PMD_BNXT_MB_EVENT_NOOP_ACK = 0
RTE_PMD_IXGBE_MB_EVENT_NOOP_NACK = RTE_PMD_I40E_MB_EVENT_NOOP_NACK = RTE_PMD_BNXT_MB_EVENT_NOOP_NACK = 1
RTE_PMD_IXGBE_MB_EVENT_PROCEED = RTE_PMD_I40E_MB_EVENT_PROCEED = RTE_PMD_BNXT_MB_EVENT_PROCEED = 2

# ixgbe: message ids are NOT in a public header.  They come from DPDK drivers/net/ixgbe/base/ixgbe_mbx.h (same
# values as Linux drivers/net/ethernet/intel/ixgbe/ixgbe_mbx.h).  The PMD (ixgbe_pf.c) fills
# rte_pmd_ixgbe_mb_event_param.msg_type with msgbuf[0] & 0xFFFF and .msg with the 16-word uint32_t msgbuf, so the
# per-message "info" byte (bits 16..23 of msgbuf[0]: VLAN add flag, MACVLAN index, multicast count, xcast mode
# for older APIs) must be read from msg word 0.  Payloads: SET_MAC_ADDR / SET_MACVLAN -> MAC in bytes 4..9;
# SET_VLAN -> VLAN id in word 1, add(1)/remove(0) in the info byte; SET_LPE -> max frame size in word 1;
# SET_MULTICAST -> count in the info byte, 16-bit hashes from word 1; UPDATE_XCAST_MODE -> mode in word 1.
IXGBE_VFMAILBOX_SIZE = 16  # 32-bit words per mailbox message
IXGBE_VF_RESET = 0x01
IXGBE_VF_SET_MAC_ADDR = 0x02
IXGBE_VF_SET_MULTICAST = 0x03
IXGBE_VF_SET_VLAN = 0x04
IXGBE_VF_SET_LPE = 0x05
IXGBE_VF_SET_MACVLAN = 0x06
IXGBE_VF_API_NEGOTIATE = 0x08
IXGBE_VF_GET_QUEUES = 0x09
IXGBE_VF_GET_RETA = 0x0A
IXGBE_VF_GET_RSS_KEY = 0x0B
IXGBE_VF_UPDATE_XCAST_MODE = 0x0C
IXGBE_VT_MSGTYPE_ACK = 0x80000000
IXGBE_VT_MSGTYPE_NACK = 0x40000000
IXGBE_VT_MSGTYPE_CTS = 0x20000000
IXGBE_VT_MSGINFO_SHIFT = 16
IXGBE_VT_MSGINFO_MASK = 0xFF << IXGBE_VT_MSGINFO_SHIFT
# enum ixgbevf_xcast_modes (ixgbe_pf.c / Linux ixgbevf): payload of UPDATE_XCAST_MODE
IXGBEVF_XCAST_MODE_NONE = 0
IXGBEVF_XCAST_MODE_MULTI = 1
IXGBEVF_XCAST_MODE_ALLMULTI = 2
IXGBEVF_XCAST_MODE_PROMISC = 3
IXGBE_MBX_MSG_NAMES = {
    IXGBE_VF_RESET: "VF_RESET",
    IXGBE_VF_SET_MAC_ADDR: "SET_MAC_ADDR",
    IXGBE_VF_SET_MULTICAST: "SET_MULTICAST",
    IXGBE_VF_SET_VLAN: "SET_VLAN",
    IXGBE_VF_SET_LPE: "SET_LPE",
    IXGBE_VF_SET_MACVLAN: "SET_MACVLAN",
    IXGBE_VF_API_NEGOTIATE: "API_NEGOTIATE",
    IXGBE_VF_GET_QUEUES: "GET_QUEUES",
    IXGBE_VF_GET_RETA: "GET_RETA",
    IXGBE_VF_GET_RSS_KEY: "GET_RSS_KEY",
    IXGBE_VF_UPDATE_XCAST_MODE: "UPDATE_XCAST_MODE",
}

# i40e: msg_type is the virtchnl opcode (enum virtchnl_ops).  Not in a public header: DPDK
# drivers/net/i40e/base/virtchnl.h and drivers/common/iavf/virtchnl.h (base opcodes are frozen by the protocol;
# VERSION "must ALWAYS be 1", EVENT "must ALWAYS be 17").  .msg points at the opcode's payload, .msglen its size.
VIRTCHNL_OP_UNKNOWN = 0
VIRTCHNL_OP_VERSION = 1
VIRTCHNL_OP_RESET_VF = 2
VIRTCHNL_OP_GET_VF_RESOURCES = 3
VIRTCHNL_OP_CONFIG_TX_QUEUE = 4
VIRTCHNL_OP_CONFIG_RX_QUEUE = 5
VIRTCHNL_OP_CONFIG_VSI_QUEUES = 6
VIRTCHNL_OP_CONFIG_IRQ_MAP = 7
VIRTCHNL_OP_ENABLE_QUEUES = 8
VIRTCHNL_OP_DISABLE_QUEUES = 9
VIRTCHNL_OP_ADD_ETH_ADDR = 10
VIRTCHNL_OP_DEL_ETH_ADDR = 11
VIRTCHNL_OP_ADD_VLAN = 12
VIRTCHNL_OP_DEL_VLAN = 13
VIRTCHNL_OP_CONFIG_PROMISCUOUS_MODE = 14
VIRTCHNL_OP_GET_STATS = 15
VIRTCHNL_OP_RSVD = 16
VIRTCHNL_OP_EVENT = 17
VIRTCHNL_OP_CONFIG_RSS_KEY = 23
VIRTCHNL_OP_CONFIG_RSS_LUT = 24
VIRTCHNL_OP_GET_RSS_HENA_CAPS = 25
VIRTCHNL_OP_SET_RSS_HENA = 26
VIRTCHNL_OP_ENABLE_VLAN_STRIPPING = 27
VIRTCHNL_OP_DISABLE_VLAN_STRIPPING = 28
VIRTCHNL_OP_REQUEST_QUEUES = 29
# Payload layouts the policy reads (virtchnl.h):
#   ADD/DEL_ETH_ADDR: struct virtchnl_ether_addr_list {u16 vsi_id; u16 num_elements; {u8 addr[6]; u8 type; u8 pad;}[]}
#   ADD/DEL_VLAN:     struct virtchnl_vlan_filter_list {u16 vsi_id; u16 num_elements; u16 vlan_id[];}
#   CONFIG_PROMISCUOUS_MODE: struct virtchnl_promisc_info {u16 vsi_id; u16 flags;}
VIRTCHNL_ETHER_ADDR_ELEM_SIZE = 8
FLAG_VF_UNICAST_PROMISC = 0x0001
FLAG_VF_MULTICAST_PROMISC = 0x0002
VIRTCHNL_OP_NAMES = {
    v: k[len("VIRTCHNL_OP_"):]
    for k, v in list(globals().items())
    if k.startswith("VIRTCHNL_OP_") and isinstance(v, int)
}

# bnxt: rte_pmd_bnxt.h defines BNXT_VF_RESET.. (below) but the PMD does not use them: bnxt forwards the VF's raw
# HWRM request and the message type is its little-endian u16 req_type at offset 0 of .msg (struct input
# {__le16 req_type, cmpl_ring, seq_id, target_id; __le64 resp_addr;}, 16 bytes).  HWRM ids are NOT in a public
# header: DPDK drivers/net/bnxt/hsi_struct_def_dpdk.h.
BNXT_VF_RESET = 0x01  # rte_pmd_bnxt.h (unused by the 22.11 PMD)
BNXT_VF_SET_MAC_ADDR = 0x02
BNXT_VF_SET_VLAN = 0x03
BNXT_VF_SET_MTU = 0x04
BNXT_VF_SET_MRU = 0x05
HWRM_INPUT_HEADER_SIZE = 16
HWRM_VER_GET = 0x00
HWRM_FUNC_BUF_UNRGTR = 0x0E
HWRM_FUNC_VF_CFG = 0x0F
HWRM_FUNC_RESET = 0x11
HWRM_FUNC_GETFID = 0x12
HWRM_FUNC_VF_ALLOC = 0x13
HWRM_FUNC_VF_FREE = 0x14
HWRM_FUNC_QCAPS = 0x15
HWRM_FUNC_QCFG = 0x16
HWRM_FUNC_CFG = 0x17
HWRM_FUNC_QSTATS = 0x18
HWRM_FUNC_CLR_STATS = 0x19
HWRM_FUNC_DRV_UNRGTR = 0x1A
HWRM_FUNC_VF_RESC_FREE = 0x1B
HWRM_FUNC_VF_VNIC_IDS_QUERY = 0x1C
HWRM_FUNC_DRV_RGTR = 0x1D
HWRM_FUNC_DRV_QVER = 0x1E
HWRM_FUNC_BUF_RGTR = 0x1F
HWRM_PORT_PHY_CFG = 0x20
HWRM_PORT_MAC_CFG = 0x21
HWRM_PORT_QSTATS = 0x23
HWRM_PORT_LPBK_QSTATS = 0x24
HWRM_PORT_CLR_STATS = 0x25
HWRM_PORT_PHY_QCFG = 0x27
HWRM_PORT_MAC_QCFG = 0x28
HWRM_PORT_PHY_QCAPS = 0x2A
HWRM_PORT_LED_CFG = 0x2D
HWRM_PORT_LED_QCFG = 0x2E
HWRM_PORT_LED_QCAPS = 0x2F
HWRM_QUEUE_QPORTCFG = 0x30
HWRM_QUEUE_QCFG = 0x31
HWRM_QUEUE_CFG = 0x32
HWRM_FUNC_VLAN_CFG = 0x33
HWRM_FUNC_VLAN_QCFG = 0x34
HWRM_QUEUE_PFCENABLE_QCFG = 0x35
HWRM_QUEUE_PFCENABLE_CFG = 0x36
HWRM_QUEUE_PRI2COS_QCFG = 0x37
HWRM_QUEUE_PRI2COS_CFG = 0x38
HWRM_QUEUE_COS2BW_QCFG = 0x39
HWRM_QUEUE_COS2BW_CFG = 0x3A
HWRM_VNIC_ALLOC = 0x40
HWRM_VNIC_FREE = 0x41
HWRM_VNIC_CFG = 0x42
HWRM_VNIC_QCFG = 0x43
HWRM_VNIC_TPA_CFG = 0x44
HWRM_VNIC_RSS_CFG = 0x46
HWRM_VNIC_RSS_QCFG = 0x47
HWRM_VNIC_PLCMODES_CFG = 0x48
HWRM_VNIC_PLCMODES_QCFG = 0x49
HWRM_VNIC_QCAPS = 0x4A
HWRM_RING_ALLOC = 0x50
HWRM_RING_FREE = 0x51
HWRM_RING_CMPL_RING_QAGGINT_PARAMS = 0x52
HWRM_RING_CMPL_RING_CFG_AGGINT_PARAMS = 0x53
HWRM_RING_RESET = 0x5E
HWRM_RING_GRP_ALLOC = 0x60
HWRM_RING_GRP_FREE = 0x61
HWRM_VNIC_RSS_COS_LB_CTX_ALLOC = 0x70
HWRM_VNIC_RSS_COS_LB_CTX_FREE = 0x71
HWRM_CFA_L2_FILTER_ALLOC = 0x90
HWRM_CFA_L2_FILTER_FREE = 0x91
HWRM_CFA_L2_FILTER_CFG = 0x92
HWRM_CFA_L2_SET_RX_MASK = 0x93
HWRM_CFA_VLAN_ANTISPOOF_CFG = 0x94
HWRM_CFA_TUNNEL_FILTER_ALLOC = 0x95
HWRM_CFA_TUNNEL_FILTER_FREE = 0x96
HWRM_CFA_NTUPLE_FILTER_ALLOC = 0x99
HWRM_CFA_NTUPLE_FILTER_FREE = 0x9A
HWRM_CFA_NTUPLE_FILTER_CFG = 0x9B
HWRM_CFA_EM_FLOW_ALLOC = 0x9C
HWRM_CFA_EM_FLOW_FREE = 0x9D
HWRM_CFA_EM_FLOW_CFG = 0x9E
HWRM_TUNNEL_DST_PORT_QUERY = 0xA0
HWRM_TUNNEL_DST_PORT_ALLOC = 0xA1
HWRM_TUNNEL_DST_PORT_FREE = 0xA2
HWRM_STAT_CTX_ALLOC = 0xB0
HWRM_STAT_CTX_FREE = 0xB1
HWRM_STAT_CTX_QUERY = 0xB2
HWRM_STAT_CTX_CLR_STATS = 0xB3
HWRM_FW_RESET = 0xC0
HWRM_FW_QSTATUS = 0xC1
HWRM_EXEC_FWD_RESP = 0xD0
HWRM_REJECT_FWD_RESP = 0xD1
HWRM_FWD_RESP = 0xD2
HWRM_FWD_ASYNC_EVENT_CMPL = 0xD3
HWRM_TEMP_MONITOR_QUERY = 0xE0
HWRM_WOL_FILTER_ALLOC = 0xF0
HWRM_WOL_FILTER_FREE = 0xF1
HWRM_WOL_FILTER_QCFG = 0xF2
HWRM_WOL_REASON_QCFG = 0xF3
HWRM_DBG_DUMP = 0xFF14
HWRM_NVM_FIRST = 0xFFEF  # HWRM_NVM_VALIDATE_OPTION; every id from here to 0xFFFF is an NVM operation
# struct hwrm_cfa_l2_set_rx_mask_input: header (16), u32 vnic_id @16, u32 mask @20
HWRM_CFA_L2_SET_RX_MASK_MASK_OFFSET = 20
HWRM_CFA_L2_SET_RX_MASK_INPUT_MASK_MCAST = 0x2
HWRM_CFA_L2_SET_RX_MASK_INPUT_MASK_ALL_MCAST = 0x4
HWRM_CFA_L2_SET_RX_MASK_INPUT_MASK_BCAST = 0x8
HWRM_CFA_L2_SET_RX_MASK_INPUT_MASK_PROMISCUOUS = 0x10
HWRM_MSG_NAMES = {v: k[len("HWRM_"):] for k, v in list(globals().items()) if k.startswith("HWRM_") and k.isupper()
                  and isinstance(v, int) and not k.startswith(("HWRM_CFA_L2_SET_RX_MASK_", "HWRM_INPUT_", "HWRM_NVM_"))}

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


RTE_ETH_CONF_RX_ADV_CONF_SIZE = 2120  # sizeof(rte_eth_conf.rx_adv_conf): RSS + VMDq/DCB confs, kept opaque
RTE_ETH_CONF_TX_ADV_CONF_SIZE = 12  # sizeof(rte_eth_conf.tx_adv_conf) (union of DCB/VMDq Tx confs)


class RteEthConf(Structure):
    """struct rte_eth_conf (2272 bytes).  The advanced Rx/Tx (RSS/DCB/VMDq) parts are opaque zeroed blobs."""

    _fields_ = [
        ("link_speeds", c_uint32),
        ("rxmode", RteEthRxmode),
        ("txmode", RteEthTxmode),
        ("lpbk_mode", c_uint32),
        ("rx_adv_conf", c_uint64 * (RTE_ETH_CONF_RX_ADV_CONF_SIZE // 8)),
        ("tx_adv_conf", c_uint32 * (RTE_ETH_CONF_TX_ADV_CONF_SIZE // 4)),
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


# int (*rte_eth_dev_cb_fn)(uint16_t port_id, enum rte_eth_event_type event, void *cb_arg, void *ret_param)
RteEthDevCbFn = CFUNCTYPE(c_int, c_uint16, c_int, c_void_p, c_void_p)

# ---------------------------------------------------------------------------------------------------
# Prototypes: (library key, symbol, restype, argtypes) -- exact C signatures from the 22.11 headers
# ---------------------------------------------------------------------------------------------------

_u8, _u16, _u32, _u64, _int, _uint, _vp = c_uint8, c_uint16, c_uint32, c_uint64, c_int, c_uint, c_void_p
_MAC = POINTER(RteEtherAddr)
_STATS = POINTER(RteEthStats)

_PROTOTYPES: list[tuple[str, str, object, list]] = [
    # rte_eal.h / rte_errno.h / rte_version.h
    ("eal", "rte_eal_init", _int, [_int, POINTER(c_char_p)]),
    ("eal", "rte_eal_cleanup", _int, []),
    ("eal", "rte_strerror", c_char_p, [_int]),
    ("eal", "rte_version", c_char_p, []),
    # rte_mbuf.h / rte_mempool.h
    ("mbuf", "rte_pktmbuf_pool_create", _vp, [c_char_p, _uint, _uint, _u16, _u16, _int]),
    ("mempool", "rte_mempool_free", None, [_vp]),
    # rte_ethdev.h
    ("ethdev", "rte_eth_dev_count_avail", _u16, []),
    ("ethdev", "rte_eth_find_next_owned_by", _u64, [_u16, _u64]),
    ("ethdev", "rte_eth_dev_is_valid_port", _int, [_u16]),
    ("ethdev", "rte_eth_dev_info_get", _int, [_u16, POINTER(RteEthDevInfo)]),
    ("ethdev", "rte_eth_dev_get_name_by_port", _int, [_u16, c_char_p]),
    ("ethdev", "rte_eth_dev_get_port_by_name", _int, [c_char_p, POINTER(_u16)]),
    ("ethdev", "rte_eth_dev_socket_id", _int, [_u16]),
    ("ethdev", "rte_eth_macaddr_get", _int, [_u16, _MAC]),
    ("ethdev", "rte_eth_dev_configure", _int, [_u16, _u16, _u16, POINTER(RteEthConf)]),
    ("ethdev", "rte_eth_rx_queue_setup", _int, [_u16, _u16, _u16, _uint, POINTER(RteEthRxconf), _vp]),
    ("ethdev", "rte_eth_tx_queue_setup", _int, [_u16, _u16, _u16, _uint, POINTER(RteEthTxconf)]),
    ("ethdev", "rte_eth_dev_start", _int, [_u16]),
    ("ethdev", "rte_eth_dev_stop", _int, [_u16]),
    ("ethdev", "rte_eth_dev_close", _int, [_u16]),
    ("ethdev", "rte_eth_dev_reset", _int, [_u16]),
    ("ethdev", "rte_eth_dev_set_link_up", _int, [_u16]),
    ("ethdev", "rte_eth_dev_set_link_down", _int, [_u16]),
    ("ethdev", "rte_eth_link_get_nowait", _int, [_u16, POINTER(RteEthLink)]),
    ("ethdev", "rte_eth_stats_get", _int, [_u16, _STATS]),
    ("ethdev", "rte_eth_stats_reset", _int, [_u16]),
    ("ethdev", "rte_eth_xstats_get_names", _int, [_u16, POINTER(RteEthXstatName), _uint]),
    ("ethdev", "rte_eth_xstats_get", _int, [_u16, POINTER(RteEthXstat), _uint]),
    ("ethdev", "rte_eth_xstats_reset", _int, [_u16]),
    ("ethdev", "rte_eth_promiscuous_enable", _int, [_u16]),
    ("ethdev", "rte_eth_promiscuous_disable", _int, [_u16]),
    ("ethdev", "rte_eth_promiscuous_get", _int, [_u16]),
    ("ethdev", "rte_eth_allmulticast_enable", _int, [_u16]),
    ("ethdev", "rte_eth_allmulticast_disable", _int, [_u16]),
    ("ethdev", "rte_eth_allmulticast_get", _int, [_u16]),
    ("ethdev", "rte_eth_dev_set_mtu", _int, [_u16, _u16]),
    ("ethdev", "rte_eth_dev_get_mtu", _int, [_u16, POINTER(_u16)]),
    ("ethdev", "rte_eth_dev_mac_addr_add", _int, [_u16, _MAC, _u32]),
    ("ethdev", "rte_eth_dev_mac_addr_remove", _int, [_u16, _MAC]),
    ("ethdev", "rte_eth_dev_default_mac_addr_set", _int, [_u16, _MAC]),
    ("ethdev", "rte_eth_dev_flow_ctrl_get", _int, [_u16, POINTER(RteEthFcConf)]),
    ("ethdev", "rte_eth_dev_flow_ctrl_set", _int, [_u16, POINTER(RteEthFcConf)]),
    ("ethdev", "rte_eth_dev_callback_register", _int, [_u16, _int, RteEthDevCbFn, _vp]),
    ("ethdev", "rte_eth_dev_callback_unregister", _int, [_u16, _int, RteEthDevCbFn, _vp]),
    # ethdev_driver.h (not installed; symbol version INTERNAL):
    #   int rte_eth_dev_callback_process(struct rte_eth_dev *dev, enum rte_eth_event_type event, void *ret_param);
    ("ethdev", "rte_eth_dev_callback_process", _int, [_vp, _int, _vp]),
    # rte_pmd_ixgbe.h
    ("net_ixgbe", "rte_pmd_ixgbe_ping_vf", _int, [_u16, _u16]),
    ("net_ixgbe", "rte_pmd_ixgbe_set_vf_mac_addr", _int, [_u16, _u16, _MAC]),
    ("net_ixgbe", "rte_pmd_ixgbe_set_vf_vlan_anti_spoof", _int, [_u16, _u16, _u8]),
    ("net_ixgbe", "rte_pmd_ixgbe_set_vf_mac_anti_spoof", _int, [_u16, _u16, _u8]),
    ("net_ixgbe", "rte_pmd_ixgbe_set_vf_vlan_insert", _int, [_u16, _u16, _u16]),
    ("net_ixgbe", "rte_pmd_ixgbe_set_tx_loopback", _int, [_u16, _u8]),
    ("net_ixgbe", "rte_pmd_ixgbe_set_all_queues_drop_en", _int, [_u16, _u8]),
    ("net_ixgbe", "rte_pmd_ixgbe_set_vf_split_drop_en", _int, [_u16, _u16, _u8]),
    ("net_ixgbe", "rte_pmd_ixgbe_set_vf_vlan_stripq", _int, [_u16, _u16, _u8]),
    ("net_ixgbe", "rte_pmd_ixgbe_set_vf_rxmode", _int, [_u16, _u16, _u16, _u8]),
    ("net_ixgbe", "rte_pmd_ixgbe_set_vf_rx", _int, [_u16, _u16, _u8]),
    ("net_ixgbe", "rte_pmd_ixgbe_set_vf_tx", _int, [_u16, _u16, _u8]),
    ("net_ixgbe", "rte_pmd_ixgbe_set_vf_vlan_filter", _int, [_u16, _u16, _u64, _u8]),
    ("net_ixgbe", "rte_pmd_ixgbe_set_vf_rate_limit", _int, [_u16, _u16, _u32, _u64]),
    ("net_ixgbe", "rte_pmd_ixgbe_set_tc_bw_alloc", _int, [_u16, _u8, POINTER(_u8)]),
    # rte_pmd_i40e.h
    ("net_i40e", "rte_pmd_i40e_ping_vfs", _int, [_u16, _u16]),
    ("net_i40e", "rte_pmd_i40e_set_vf_mac_anti_spoof", _int, [_u16, _u16, _u8]),
    ("net_i40e", "rte_pmd_i40e_set_vf_vlan_anti_spoof", _int, [_u16, _u16, _u8]),
    ("net_i40e", "rte_pmd_i40e_set_tx_loopback", _int, [_u16, _u8]),
    ("net_i40e", "rte_pmd_i40e_set_vf_unicast_promisc", _int, [_u16, _u16, _u8]),
    ("net_i40e", "rte_pmd_i40e_set_vf_multicast_promisc", _int, [_u16, _u16, _u8]),
    ("net_i40e", "rte_pmd_i40e_set_vf_mac_addr", _int, [_u16, _u16, _MAC]),
    ("net_i40e", "rte_pmd_i40e_remove_vf_mac_addr", _int, [_u16, _u16, _MAC]),  # declared, NOT exported in 22.11
    ("net_i40e", "rte_pmd_i40e_set_vf_vlan_stripq", _int, [_u16, _u16, _u8]),
    ("net_i40e", "rte_pmd_i40e_set_vf_vlan_insert", _int, [_u16, _u16, _u16]),
    ("net_i40e", "rte_pmd_i40e_set_vf_broadcast", _int, [_u16, _u16, _u8]),
    ("net_i40e", "rte_pmd_i40e_set_vf_vlan_tag", _int, [_u16, _u16, _u8]),
    ("net_i40e", "rte_pmd_i40e_set_vf_vlan_filter", _int, [_u16, _u16, _u64, _u8]),
    ("net_i40e", "rte_pmd_i40e_get_vf_stats", _int, [_u16, _u16, _STATS]),
    ("net_i40e", "rte_pmd_i40e_reset_vf_stats", _int, [_u16, _u16]),
    ("net_i40e", "rte_pmd_i40e_set_vf_max_bw", _int, [_u16, _u16, _u32]),
    ("net_i40e", "rte_pmd_i40e_set_vf_tc_bw_alloc", _int, [_u16, _u16, _u8, POINTER(_u8)]),
    ("net_i40e", "rte_pmd_i40e_set_vf_tc_max_bw", _int, [_u16, _u16, _u8, _u32]),
    ("net_i40e", "rte_pmd_i40e_set_tc_strict_prio", _int, [_u16, _u8]),
    ("net_i40e", "rte_pmd_i40e_add_vf_mac_addr", _int, [_u16, _u16, _MAC]),
    ("net_i40e", "rte_pmd_i40e_query_vfid_by_mac", _int, [_u16, _MAC]),
    # rte_pmd_bnxt.h
    ("net_bnxt", "rte_pmd_bnxt_set_vf_mac_anti_spoof", _int, [_u16, _u16, _u8]),
    ("net_bnxt", "rte_pmd_bnxt_set_vf_mac_addr", _int, [_u16, _u16, _MAC]),
    ("net_bnxt", "rte_pmd_bnxt_set_vf_vlan_stripq", _int, [_u16, _u16, _u8]),
    ("net_bnxt", "rte_pmd_bnxt_set_vf_vlan_insert", _int, [_u16, _u16, _u16]),
    ("net_bnxt", "rte_pmd_bnxt_set_vf_vlan_filter", _int, [_u16, _u16, _u64, _u8]),
    ("net_bnxt", "rte_pmd_bnxt_set_tx_loopback", _int, [_u16, _u8]),
    ("net_bnxt", "rte_pmd_bnxt_set_all_queues_drop_en", _int, [_u16, _u8]),
    ("net_bnxt", "rte_pmd_bnxt_set_vf_rate_limit", _int, [_u16, _u16, _u32, _u64]),
    ("net_bnxt", "rte_pmd_bnxt_get_vf_stats", _int, [_u16, _u16, _STATS]),
    ("net_bnxt", "rte_pmd_bnxt_reset_vf_stats", _int, [_u16, _u16]),
    ("net_bnxt", "rte_pmd_bnxt_set_vf_vlan_anti_spoof", _int, [_u16, _u16, _u8]),
    ("net_bnxt", "rte_pmd_bnxt_set_vf_rxmode", _int, [_u16, _u16, _u16, _u8]),
    ("net_bnxt", "rte_pmd_bnxt_get_vf_rx_status", _int, [_u16, _u16]),
    ("net_bnxt", "rte_pmd_bnxt_get_vf_tx_drop_count", _int, [_u16, _u16, POINTER(_u64)]),
    ("net_bnxt", "rte_pmd_bnxt_mac_addr_add", _int, [_u16, _MAC, _u32]),
    ("net_bnxt", "rte_pmd_bnxt_set_vf_persist_stats", _int, [_u16, _u16, _u8]),
]

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
        self.checked_ports: set[int] = set()


_state = _State()


def _bind(key: str) -> None:
    lib = _state.libs[key]
    for lk, name, restype, argtypes in _PROTOTYPES:
        if lk != key or name in _state.funcs:
            continue
        try:
            f = getattr(lib, name)
        except AttributeError:
            _state.missing_symbols[name] = key
            continue
        f.restype = restype
        f.argtypes = argtypes
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
    for lk, sym, _r, _a in _PROTOTYPES:
        if sym == name:
            reason = _state.missing_libs.get(lk, f"library {lk} not loaded")
            raise DpdkUnavailable(name, message=reason)
    raise KeyError(f"no prototype for {name}")


def _call(name: str, *args, check: bool = True) -> int:
    rc = raw(name)(*args)
    if check and rc < 0:
        raise DpdkError(name, rc)
    return rc


def _pmd(name: str, port: int, *args, check: bool = True) -> int:
    """Call an rte_pmd_* function after checking the port id.  Several 22.11 rte_pmd_bnxt_* functions
    (get_vf_stats, reset_vf_stats, get_vf_rx_status, get_vf_tx_drop_count, mac_addr_add) index
    rte_eth_devices[port] without RTE_ETH_VALID_PORTID_OR_ERR_RET, so an unused port id would crash the process."""
    f = raw(name)
    if not (0 <= port < RTE_MAX_ETHPORTS) or not raw("rte_eth_dev_is_valid_port")(port):
        rc = -_errno.ENODEV
    else:
        rc = f(port, *args)
    if check and rc < 0:
        raise DpdkError(name, rc)
    return rc


def _require_driver(port: int, driver: str) -> int:
    """0 if `port` is driven by `driver`, else -ENODEV (bad port) / -ENOTSUP (other driver)."""
    info = RteEthDevInfo()
    rc = raw("rte_eth_dev_info_get")(port, byref(info))
    if rc < 0:
        return rc
    return 0 if (info.driver_name or b"").decode() == driver else -_errno.ENOTSUP


def _on(v) -> int:
    return 1 if v else 0


def _mac(mac) -> RteEtherAddr:
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
# EAL
# ---------------------------------------------------------------------------------------------------


def rte_errno() -> int:
    """Current thread's rte_errno (per_lcore__rte_errno is a TLS variable; dlsym resolves it per thread)."""
    load()
    return c_int.in_dll(_state.eal, "per_lcore__rte_errno").value


def strerror(code: int) -> str:
    return errno_text(code)


def version() -> str:
    """rte_version(), e.g. 'DPDK 22.11.11'."""
    return raw("rte_version")().decode()


def eal_init(args: Sequence[str]) -> int:
    """rte_eal_init(argc, argv); args[0] is the program name.  Returns the number of parsed arguments.

    Raises DpdkError('rte_eal_init', -rte_errno) with rte_strerror's text on failure.  The argv buffers are kept
    alive for the life of the process (EAL may keep pointers into them).
    """
    f = raw("rte_eal_init")
    encoded = [os.fsencode(a) for a in args]
    argv = (c_char_p * (len(encoded) + 1))(*encoded, None)
    _state.keepalive.append((encoded, argv))
    rc = f(len(encoded), argv)
    if rc < 0:
        e = rte_errno() or -rc
        raise DpdkError("rte_eal_init", -e, f"{errno_text(e)}; EAL args: {' '.join(args)}")
    _state.eal_initialised = True
    return rc


def eal_cleanup(check: bool = True) -> int:
    rc = _call("rte_eal_cleanup", check=check)
    _state.eal_initialised = False
    _state.checked_ports.clear()
    return rc


def eal_initialised() -> bool:
    return _state.eal_initialised


# ---------------------------------------------------------------------------------------------------
# Ports
# ---------------------------------------------------------------------------------------------------


def eth_dev_count_avail() -> int:
    return int(raw("rte_eth_dev_count_avail")())


def eth_dev_is_valid_port(port: int) -> bool:
    return bool(raw("rte_eth_dev_is_valid_port")(port))


def iter_ports() -> Iterator[int]:
    """RTE_ETH_FOREACH_DEV: every valid port not owned by another DPDK entity."""
    f = raw("rte_eth_find_next_owned_by")
    p = f(0, RTE_ETH_DEV_NO_OWNER)
    while p < RTE_MAX_ETHPORTS:
        yield int(p)
        p = f(p + 1, RTE_ETH_DEV_NO_OWNER)


def list_ports() -> list[int]:
    return list(iter_ports())


def dev_info(port: int) -> RteEthDevInfo:
    info = RteEthDevInfo()
    _call("rte_eth_dev_info_get", port, byref(info))
    return info


def get_name_by_port(port: int) -> str:
    """Device name: the PCI address ('0000:03:00.0') for a PCI PF, the vdev name ('net_null0') otherwise."""
    buf = ctypes.create_string_buffer(RTE_ETH_NAME_MAX_LEN)
    _call("rte_eth_dev_get_name_by_port", port, buf)
    return buf.value.decode()


def get_port_by_name(name: str) -> int:
    port = c_uint16()
    _call("rte_eth_dev_get_port_by_name", name.encode(), byref(port))
    return port.value


def socket_id(port: int) -> int:
    """NUMA socket of the port; -1 (SOCKET_ID_ANY) when unknown (vdevs).  Never raises."""
    return int(raw("rte_eth_dev_socket_id")(port))


def macaddr_get(port: int) -> str:
    a = RteEtherAddr()
    _call("rte_eth_macaddr_get", port, byref(a))
    return str(a)


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
    info = dev_info(port)
    return PortInfo(
        port_id=port,
        name=get_name_by_port(port),
        driver_name=(info.driver_name or b"").decode(),
        max_vfs=info.max_vfs,
        max_rx_queues=info.max_rx_queues,
        max_tx_queues=info.max_tx_queues,
        max_mac_addrs=info.max_mac_addrs,
        min_mtu=info.min_mtu,
        max_mtu=info.max_mtu,
        max_rx_pktlen=info.max_rx_pktlen,
        if_index=info.if_index,
        socket_id=socket_id(port),
        mac=macaddr_get(port),
    )


def make_eth_conf(mtu: int = 0, rx_offloads: int = 0, tx_offloads: int = 0, lsc_intr: bool = False,
                  link_speeds: int = 0) -> RteEthConf:
    """A zeroed rte_eth_conf with the few fields vfd sets (mtu 0 = PMD default)."""
    conf = RteEthConf()
    conf.link_speeds = link_speeds
    conf.rxmode.mq_mode = RTE_ETH_MQ_RX_NONE
    conf.rxmode.mtu = mtu
    conf.rxmode.offloads = rx_offloads
    conf.txmode.mq_mode = RTE_ETH_MQ_TX_NONE
    conf.txmode.offloads = tx_offloads
    conf.intr_conf.lsc = 1 if lsc_intr else 0
    return conf


def dev_configure(port: int, nb_rx_queue: int, nb_tx_queue: int, conf: RteEthConf | None = None,
                  check: bool = True) -> int:
    conf = conf if conf is not None else make_eth_conf()
    return _call("rte_eth_dev_configure", port, nb_rx_queue, nb_tx_queue, byref(conf), check=check)


def pktmbuf_pool_create(name: str, n: int, cache_size: int = 0, priv_size: int = 0,
                        data_room_size: int = RTE_MBUF_DEFAULT_BUF_SIZE, socket: int = SOCKET_ID_ANY) -> int:
    """rte_pktmbuf_pool_create(); returns the struct rte_mempool * as an int.  NULL -> DpdkError(-rte_errno)."""
    p = raw("rte_pktmbuf_pool_create")(name.encode(), n, cache_size, priv_size, data_room_size, socket)
    if not p:
        e = rte_errno() or _errno.ENOMEM
        raise DpdkError("rte_pktmbuf_pool_create", -e)
    return int(p)


def mempool_free(pool: int | None) -> None:
    if pool:
        raw("rte_mempool_free")(pool)


def _socket_arg(port: int, socket: int | None) -> int:
    s = socket_id(port) if socket is None else socket
    return s & 0xFFFFFFFF  # unsigned int parameter; SOCKET_ID_ANY (-1) travels as 0xFFFFFFFF


def rx_queue_setup(port: int, queue: int, nb_desc: int, mempool: int, socket: int | None = None,
                   rx_conf: RteEthRxconf | None = None, check: bool = True) -> int:
    return _call("rte_eth_rx_queue_setup", port, queue, nb_desc, _socket_arg(port, socket),
                 byref(rx_conf) if rx_conf is not None else None, mempool, check=check)


def tx_queue_setup(port: int, queue: int, nb_desc: int, socket: int | None = None,
                   tx_conf: RteEthTxconf | None = None, check: bool = True) -> int:
    return _call("rte_eth_tx_queue_setup", port, queue, nb_desc, _socket_arg(port, socket),
                 byref(tx_conf) if tx_conf is not None else None, check=check)


def dev_start(port: int, check: bool = True) -> int:
    return _call("rte_eth_dev_start", port, check=check)


def dev_stop(port: int, check: bool = True) -> int:
    return _call("rte_eth_dev_stop", port, check=check)


def dev_close(port: int, check: bool = True) -> int:
    _state.checked_ports.discard(port)
    return _call("rte_eth_dev_close", port, check=check)


def dev_reset(port: int, check: bool = True) -> int:
    return _call("rte_eth_dev_reset", port, check=check)


def set_link_up(port: int, check: bool = True) -> int:
    return _call("rte_eth_dev_set_link_up", port, check=check)


def set_link_down(port: int, check: bool = True) -> int:
    return _call("rte_eth_dev_set_link_down", port, check=check)


class LinkStatus(NamedTuple):
    speed: int  # Mbps; RTE_ETH_SPEED_NUM_UNKNOWN (0xFFFFFFFF) when unknown
    full_duplex: bool
    autoneg: bool
    up: bool


def link_get_nowait(port: int) -> LinkStatus:
    link = RteEthLink()
    _call("rte_eth_link_get_nowait", port, byref(link))
    return LinkStatus(int(link.link_speed), bool(link.link_duplex), bool(link.link_autoneg), bool(link.link_status))


def _stats_dict(s: RteEthStats) -> dict[str, int]:
    return {k: int(getattr(s, k)) for k in STATS_FIELDS}


def stats_get(port: int) -> dict[str, int]:
    """The scalar counters of struct rte_eth_stats (per-queue arrays: use :func:`stats_get_raw`)."""
    return _stats_dict(stats_get_raw(port))


def stats_get_raw(port: int) -> RteEthStats:
    s = RteEthStats()
    _call("rte_eth_stats_get", port, byref(s))
    return s


def stats_reset(port: int, check: bool = True) -> int:
    return _call("rte_eth_stats_reset", port, check=check)


def xstats_get_names(port: int) -> list[str]:
    f = raw("rte_eth_xstats_get_names")
    while True:
        n = f(port, None, 0)
        if n < 0:
            raise DpdkError("rte_eth_xstats_get_names", n)
        arr = (RteEthXstatName * max(n, 1))()
        got = f(port, arr, n)
        if got < 0:
            raise DpdkError("rte_eth_xstats_get_names", got)
        if got <= n:
            return [arr[i].name.decode(errors="replace") for i in range(got)]


def xstats_get(port: int) -> list[tuple[int, int]]:
    """[(id, value)]; id indexes :func:`xstats_get_names`."""
    f = raw("rte_eth_xstats_get")
    while True:
        n = f(port, None, 0)
        if n < 0:
            raise DpdkError("rte_eth_xstats_get", n)
        arr = (RteEthXstat * max(n, 1))()
        got = f(port, arr, n)
        if got < 0:
            raise DpdkError("rte_eth_xstats_get", got)
        if got <= n:
            return [(int(arr[i].id), int(arr[i].value)) for i in range(got)]


def xstats(port: int) -> dict[str, int]:
    """{name: value} for every extended statistic of the port."""
    names = xstats_get_names(port)
    return {names[i]: v for i, v in xstats_get(port) if i < len(names)}


def xstats_reset(port: int, check: bool = True) -> int:
    return _call("rte_eth_xstats_reset", port, check=check)


def promiscuous_enable(port: int, check: bool = True) -> int:
    return _call("rte_eth_promiscuous_enable", port, check=check)


def promiscuous_disable(port: int, check: bool = True) -> int:
    return _call("rte_eth_promiscuous_disable", port, check=check)


def promiscuous_get(port: int) -> bool:
    return bool(_call("rte_eth_promiscuous_get", port))


def allmulticast_enable(port: int, check: bool = True) -> int:
    return _call("rte_eth_allmulticast_enable", port, check=check)


def allmulticast_disable(port: int, check: bool = True) -> int:
    return _call("rte_eth_allmulticast_disable", port, check=check)


def allmulticast_get(port: int) -> bool:
    return bool(_call("rte_eth_allmulticast_get", port))


def set_mtu(port: int, mtu: int, check: bool = True) -> int:
    return _call("rte_eth_dev_set_mtu", port, mtu, check=check)


def get_mtu(port: int) -> int:
    m = c_uint16()
    _call("rte_eth_dev_get_mtu", port, byref(m))
    return m.value


def mac_addr_add(port: int, mac, pool: int, check: bool = True) -> int:
    """rte_eth_dev_mac_addr_add: add a MAC filter steering to VMDq pool `pool` (= VF index on ixgbe)."""
    return _call("rte_eth_dev_mac_addr_add", port, byref(_mac(mac)), pool, check=check)


def mac_addr_remove(port: int, mac, check: bool = True) -> int:
    return _call("rte_eth_dev_mac_addr_remove", port, byref(_mac(mac)), check=check)


def default_mac_addr_set(port: int, mac, check: bool = True) -> int:
    return _call("rte_eth_dev_default_mac_addr_set", port, byref(_mac(mac)), check=check)


def flow_ctrl_get(port: int) -> RteEthFcConf:
    fc = RteEthFcConf()
    _call("rte_eth_dev_flow_ctrl_get", port, byref(fc))
    return fc


def flow_ctrl_set(port: int, fc: RteEthFcConf, check: bool = True) -> int:
    return _call("rte_eth_dev_flow_ctrl_set", port, byref(fc), check=check)


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
    _call("rte_eth_dev_callback_register", port, event, cfunc, c_void_p(token))
    handle = CallbackHandle(port=port, event=event, token=token, cfunc=cfunc, fn=fn)
    _callbacks[token] = handle
    return handle


def callback_unregister(handle: CallbackHandle, check: bool = True) -> int:
    """Undo :func:`callback_register`.  -EAGAIN (callback running) keeps the thunk referenced."""
    rc = _call("rte_eth_dev_callback_unregister", handle.port, handle.event, handle.cfunc, c_void_p(handle.token),
               check=check)
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
        return name == get_name_by_port(port)
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
    if port not in _state.checked_ports:
        if not eth_dev_layout_ok(port):
            raise ValueError("rte_eth_devices layout mismatch: SIZEOF_RTE_ETH_DEV / RTE_ETH_DEV_DATA_OFFSET are wrong "
                             "for the installed librte_ethdev")
        _state.checked_ports.add(port)
    return int(raw("rte_eth_dev_callback_process")(eth_dev_address(port), event, _addr(param)))


# Mailbox parameter helpers -------------------------------------------------------------------------


def ixgbe_mb_param(ret_param: int) -> RtePmdIxgbeMbEventParam:
    """View (no copy) of the rte_pmd_ixgbe_mb_event_param at ret_param; assign .retval to give the verdict."""
    return RtePmdIxgbeMbEventParam.from_address(ret_param)


def i40e_mb_param(ret_param: int) -> RtePmdI40eMbEventParam:
    return RtePmdI40eMbEventParam.from_address(ret_param)


def bnxt_mb_param(ret_param: int) -> RtePmdBnxtMbEventParam:
    return RtePmdBnxtMbEventParam.from_address(ret_param)


def ixgbe_msg_words(param: RtePmdIxgbeMbEventParam, n: int = IXGBE_VFMAILBOX_SIZE) -> list[int]:
    """The ixgbe mailbox message (uint32_t msgbuf[16]) the PMD passed in param.msg."""
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
# ixgbe VF API (rte_pmd_ixgbe.h).  Not in 22.11 (header nor .so): get_vf_stats, set_vf_multicast_promisc.
# ---------------------------------------------------------------------------------------------------


def ixgbe_ping_vf(port: int, vf: int, check: bool = True) -> int:
    return _pmd("rte_pmd_ixgbe_ping_vf", port, vf, check=check)


def ixgbe_set_vf_mac_addr(port: int, vf: int, mac, check: bool = True) -> int:
    return _pmd("rte_pmd_ixgbe_set_vf_mac_addr", port, vf, byref(_mac(mac)), check=check)


def ixgbe_set_vf_mac_anti_spoof(port: int, vf: int, on: bool, check: bool = True) -> int:
    return _pmd("rte_pmd_ixgbe_set_vf_mac_anti_spoof", port, vf, _on(on), check=check)


def ixgbe_set_vf_vlan_anti_spoof(port: int, vf: int, on: bool, check: bool = True) -> int:
    return _pmd("rte_pmd_ixgbe_set_vf_vlan_anti_spoof", port, vf, _on(on), check=check)


def ixgbe_set_vf_vlan_insert(port: int, vf: int, vlan_id: int, check: bool = True) -> int:
    return _pmd("rte_pmd_ixgbe_set_vf_vlan_insert", port, vf, vlan_id, check=check)


def ixgbe_set_vf_vlan_stripq(port: int, vf: int, on: bool, check: bool = True) -> int:
    return _pmd("rte_pmd_ixgbe_set_vf_vlan_stripq", port, vf, _on(on), check=check)


def ixgbe_set_vf_vlan_filter(port: int, vlan: int, vf_mask: int, on: bool, check: bool = True) -> int:
    return _pmd("rte_pmd_ixgbe_set_vf_vlan_filter", port, vlan, vf_mask, _on(on), check=check)


def ixgbe_set_vf_rxmode(port: int, vf: int, rx_mask: int, on: bool, check: bool = True) -> int:
    """rx_mask: RTE_ETH_VMDQ_ACCEPT_{UNTAG,HASH_MC,HASH_UC,BROADCAST,MULTICAST}."""
    return _pmd("rte_pmd_ixgbe_set_vf_rxmode", port, vf, rx_mask, _on(on), check=check)


def ixgbe_set_vf_rx(port: int, vf: int, on: bool, check: bool = True) -> int:
    return _pmd("rte_pmd_ixgbe_set_vf_rx", port, vf, _on(on), check=check)


def ixgbe_set_vf_tx(port: int, vf: int, on: bool, check: bool = True) -> int:
    return _pmd("rte_pmd_ixgbe_set_vf_tx", port, vf, _on(on), check=check)


def ixgbe_set_vf_rate_limit(port: int, vf: int, tx_rate: int, q_msk: int, check: bool = True) -> int:
    """tx_rate in Mbps (0 = no limit) applied to the VF queues in q_msk."""
    return _pmd("rte_pmd_ixgbe_set_vf_rate_limit", port, vf, tx_rate, q_msk, check=check)


def ixgbe_set_vf_split_drop_en(port: int, vf: int, on: bool, check: bool = True) -> int:
    return _pmd("rte_pmd_ixgbe_set_vf_split_drop_en", port, vf, _on(on), check=check)


def ixgbe_set_all_queues_drop_en(port: int, on: bool, check: bool = True) -> int:
    return _pmd("rte_pmd_ixgbe_set_all_queues_drop_en", port, _on(on), check=check)


def ixgbe_set_tx_loopback(port: int, on: bool, check: bool = True) -> int:
    return _pmd("rte_pmd_ixgbe_set_tx_loopback", port, _on(on), check=check)


def ixgbe_set_tc_bw_alloc(port: int, bw_weight: Sequence[int], check: bool = True) -> int:
    arr = (c_uint8 * len(bw_weight))(*bw_weight)
    return _pmd("rte_pmd_ixgbe_set_tc_bw_alloc", port, len(bw_weight), arr, check=check)


# ---------------------------------------------------------------------------------------------------
# i40e VF API (rte_pmd_i40e.h)
# ---------------------------------------------------------------------------------------------------


def i40e_ping_vfs(port: int, vf: int, check: bool = True) -> int:
    return _pmd("rte_pmd_i40e_ping_vfs", port, vf, check=check)


def i40e_set_vf_mac_addr(port: int, vf: int, mac, check: bool = True) -> int:
    return _pmd("rte_pmd_i40e_set_vf_mac_addr", port, vf, byref(_mac(mac)), check=check)


def i40e_add_vf_mac_addr(port: int, vf: int, mac, check: bool = True) -> int:
    return _pmd("rte_pmd_i40e_add_vf_mac_addr", port, vf, byref(_mac(mac)), check=check)


def i40e_remove_vf_mac_addr(port: int, vf: int, mac, check: bool = True) -> int:
    """Declared in rte_pmd_i40e.h but NOT exported by librte_net_i40e.so.23: raises SymbolMissing there.
    Fallback: :func:`mac_addr_remove` (what VFd did)."""
    return _pmd("rte_pmd_i40e_remove_vf_mac_addr", port, vf, byref(_mac(mac)), check=check)


def i40e_set_vf_mac_anti_spoof(port: int, vf: int, on: bool, check: bool = True) -> int:
    return _pmd("rte_pmd_i40e_set_vf_mac_anti_spoof", port, vf, _on(on), check=check)


def i40e_set_vf_vlan_anti_spoof(port: int, vf: int, on: bool, check: bool = True) -> int:
    return _pmd("rte_pmd_i40e_set_vf_vlan_anti_spoof", port, vf, _on(on), check=check)


def i40e_set_vf_vlan_stripq(port: int, vf: int, on: bool, check: bool = True) -> int:
    return _pmd("rte_pmd_i40e_set_vf_vlan_stripq", port, vf, _on(on), check=check)


def i40e_set_vf_vlan_insert(port: int, vf: int, vlan_id: int, check: bool = True) -> int:
    return _pmd("rte_pmd_i40e_set_vf_vlan_insert", port, vf, vlan_id, check=check)


def i40e_set_vf_vlan_filter(port: int, vlan: int, vf_mask: int, on: bool, check: bool = True) -> int:
    return _pmd("rte_pmd_i40e_set_vf_vlan_filter", port, vlan, vf_mask, _on(on), check=check)


def i40e_set_vf_vlan_tag(port: int, vf: int, on: bool, check: bool = True) -> int:
    """on = only VLAN-tagged frames for this VF (drop untagged)."""
    return _pmd("rte_pmd_i40e_set_vf_vlan_tag", port, vf, _on(on), check=check)


def i40e_set_vf_broadcast(port: int, vf: int, on: bool, check: bool = True) -> int:
    return _pmd("rte_pmd_i40e_set_vf_broadcast", port, vf, _on(on), check=check)


def i40e_set_vf_unicast_promisc(port: int, vf: int, on: bool, check: bool = True) -> int:
    return _pmd("rte_pmd_i40e_set_vf_unicast_promisc", port, vf, _on(on), check=check)


def i40e_set_vf_multicast_promisc(port: int, vf: int, on: bool, check: bool = True) -> int:
    return _pmd("rte_pmd_i40e_set_vf_multicast_promisc", port, vf, _on(on), check=check)


def i40e_get_vf_stats(port: int, vf: int) -> dict[str, int]:
    s = RteEthStats()
    _pmd("rte_pmd_i40e_get_vf_stats", port, vf, byref(s))
    return _stats_dict(s)


def i40e_reset_vf_stats(port: int, vf: int, check: bool = True) -> int:
    return _pmd("rte_pmd_i40e_reset_vf_stats", port, vf, check=check)


def i40e_set_vf_max_bw(port: int, vf: int, bw: int, check: bool = True) -> int:
    """bw in Mbps (0 = no limit)."""
    return _pmd("rte_pmd_i40e_set_vf_max_bw", port, vf, bw, check=check)


def i40e_set_vf_tc_bw_alloc(port: int, vf: int, bw_weight: Sequence[int], check: bool = True) -> int:
    arr = (c_uint8 * len(bw_weight))(*bw_weight)
    return _pmd("rte_pmd_i40e_set_vf_tc_bw_alloc", port, vf, len(bw_weight), arr, check=check)


def i40e_set_vf_tc_max_bw(port: int, vf: int, tc_no: int, bw: int, check: bool = True) -> int:
    return _pmd("rte_pmd_i40e_set_vf_tc_max_bw", port, vf, tc_no, bw, check=check)


def i40e_set_tc_strict_prio(port: int, tc_map: int, check: bool = True) -> int:
    return _pmd("rte_pmd_i40e_set_tc_strict_prio", port, tc_map, check=check)


def i40e_set_tx_loopback(port: int, on: bool, check: bool = True) -> int:
    return _pmd("rte_pmd_i40e_set_tx_loopback", port, _on(on), check=check)


def i40e_query_vfid_by_mac(port: int, mac, check: bool = True) -> int:
    return _pmd("rte_pmd_i40e_query_vfid_by_mac", port, byref(_mac(mac)), check=check)


# ---------------------------------------------------------------------------------------------------
# bnxt VF API (rte_pmd_bnxt.h)
# ---------------------------------------------------------------------------------------------------


def bnxt_set_vf_mac_addr(port: int, vf: int, mac, check: bool = True) -> int:
    return _pmd("rte_pmd_bnxt_set_vf_mac_addr", port, vf, byref(_mac(mac)), check=check)


def bnxt_mac_addr_add(port: int, mac, vf: int, check: bool = True) -> int:
    """Note the C argument order: (port, mac_addr, vf_id)."""
    return _pmd("rte_pmd_bnxt_mac_addr_add", port, byref(_mac(mac)), vf, check=check)


def bnxt_set_vf_mac_anti_spoof(port: int, vf: int, on: bool, check: bool = True) -> int:
    return _pmd("rte_pmd_bnxt_set_vf_mac_anti_spoof", port, vf, _on(on), check=check)


def bnxt_set_vf_vlan_anti_spoof(port: int, vf: int, on: bool, check: bool = True) -> int:
    return _pmd("rte_pmd_bnxt_set_vf_vlan_anti_spoof", port, vf, _on(on), check=check)


def bnxt_set_vf_vlan_stripq(port: int, vf: int, on: bool, check: bool = True) -> int:
    return _pmd("rte_pmd_bnxt_set_vf_vlan_stripq", port, vf, _on(on), check=check)


def bnxt_set_vf_vlan_insert(port: int, vf: int, vlan_id: int, check: bool = True) -> int:
    return _pmd("rte_pmd_bnxt_set_vf_vlan_insert", port, vf, vlan_id, check=check)


def bnxt_set_vf_vlan_filter(port: int, vlan: int, vf_mask: int, on: bool, check: bool = True) -> int:
    return _pmd("rte_pmd_bnxt_set_vf_vlan_filter", port, vlan, vf_mask, _on(on), check=check)


def bnxt_set_vf_rxmode(port: int, vf: int, rx_mask: int, on: bool, check: bool = True) -> int:
    """rx_mask: RTE_ETH_VMDQ_ACCEPT_* as for ixgbe."""
    return _pmd("rte_pmd_bnxt_set_vf_rxmode", port, vf, rx_mask, _on(on), check=check)


def bnxt_set_vf_rate_limit(port: int, vf: int, tx_rate: int, q_msk: int, check: bool = True) -> int:
    return _pmd("rte_pmd_bnxt_set_vf_rate_limit", port, vf, tx_rate, q_msk, check=check)


def bnxt_get_vf_stats(port: int, vf: int) -> dict[str, int]:
    s = RteEthStats()
    _pmd("rte_pmd_bnxt_get_vf_stats", port, vf, byref(s))
    return _stats_dict(s)


def bnxt_reset_vf_stats(port: int, vf: int, check: bool = True) -> int:
    return _pmd("rte_pmd_bnxt_reset_vf_stats", port, vf, check=check)


def bnxt_get_vf_rx_status(port: int, vf: int, check: bool = True) -> int:
    """Number of Rx queues the VF has set up (>0 means its queues are up)."""
    return _pmd("rte_pmd_bnxt_get_vf_rx_status", port, vf, check=check)


def bnxt_get_vf_tx_drop_count(port: int, vf: int) -> int:
    count = c_uint64()
    _pmd("rte_pmd_bnxt_get_vf_tx_drop_count", port, vf, byref(count))
    return int(count.value)


def bnxt_set_vf_persist_stats(port: int, vf: int, on: bool, check: bool = True) -> int:
    """Guarded: unlike every other rte_pmd_bnxt_* call, the 22.11 C function does not check that the port is a
    bnxt port before casting dev_private to struct bnxt * (on net_null it read foreign memory and returned -EINVAL).
    This wrapper returns/raises -ENOTSUP for a non-bnxt port without calling it."""
    name = "rte_pmd_bnxt_set_vf_persist_stats"
    rc = _require_driver(port, "net_bnxt")
    if rc < 0:
        if check:
            raise DpdkError(name, rc)
        return rc
    return _pmd(name, port, vf, _on(on), check=check)


def bnxt_set_tx_loopback(port: int, on: bool, check: bool = True) -> int:
    return _pmd("rte_pmd_bnxt_set_tx_loopback", port, _on(on), check=check)


def bnxt_set_all_queues_drop_en(port: int, on: bool, check: bool = True) -> int:
    return _pmd("rte_pmd_bnxt_set_all_queues_drop_en", port, _on(on), check=check)
