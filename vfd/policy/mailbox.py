"""Guest mailbox policy (reference section 6): what vfd answers when a VF asks its PF to change something.

A DPDK PF driver hands every VF request to vfd before acting on it (RTE_ETH_EVENT_VF_MBOX). vfd answers
PROCEED (let the PF driver do it), NOOP_ACK (skip it, tell the guest it worked) or NOOP_NACK (skip it, tell
the guest it failed), and may ask for side effects: queue a refresh (re-apply vfd's settings once the VF's
queues are up), re-apply the VF now, or remember a MAC the guest was allowed to use.

Everything here is pure: no DPDK, no I/O, no clock. A backend decodes the PMD's message into a payload
dict (the ``decode_*`` helpers below do it from raw bytes), describes the VF in a `VFView`, calls the
family's policy function and carries out the `Decision`. The same functions run in the unit tests and
behind the real C callback.

Per family (and how the 22.11 PMDs use the verdict):
  ixgbe  message ids of ixgbe_mbx.h; NOOP_ACK -> the VF gets ACK, NOOP_NACK -> NACK; VF_RESET is carried
         out by the PMD before vfd is asked (the verdict is ignored), vfd only queues a refresh.
  i40e   virtchnl opcodes; any verdict but PROCEED makes the PF answer "not supported", so this policy
         uses PROCEED and NOOP_NACK only.
  bnxt   HWRM request types (the forwarded request's req_type); NOOP_ACK and PROCEED both forward the
         request to the firmware, NOOP_NACK rejects it.

Fixed on purpose (reference section 10): the original's i40e CONFIG_PROMISCUOUS_MODE handler masked the
guest's flags with ``&=`` against one allowed bit at a time, so allowing unicast promiscuity dropped a
permitted multicast request and vice versa.  Here the requested flags are ANDed once with the set of
flags the config allows (`i40e_promisc_flags`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from vfd.model.vfconfig import MAX_MACS_PER_VF   # the one per-VF MAC limit (config and guest alike)

# Verdicts: enum rte_pmd_{ixgbe,i40e,bnxt}_mb_event_rsp (identical values in the three 22.11 headers).
NOOP_ACK = 0
NOOP_NACK = 1
PROCEED = 2
VERDICT_NAMES = {NOOP_ACK: "NOOP_ACK", NOOP_NACK: "NOOP_NACK", PROCEED: "PROCEED"}

# ---------------------------------------------------------------------------------------------------
# Message ids: protocol facts the policy gives meaning to (none is in a public DPDK header)
# ---------------------------------------------------------------------------------------------------

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
IXGBE_VT_MSGINFO_SHIFT = 16
IXGBE_VT_MSGINFO_MASK = 0xFF << IXGBE_VT_MSGINFO_SHIFT
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
VIRTCHNL_OP_NAMES = {
    v: k[len("VIRTCHNL_OP_"):]
    for k, v in list(globals().items())
    if k.startswith("VIRTCHNL_OP_") and isinstance(v, int)
}

# bnxt: rte_pmd_bnxt.h defines BNXT_VF_RESET.. (below) but the PMD does not use them: bnxt forwards the VF's raw
# HWRM request and the message type is its little-endian u16 req_type at offset 0 of .msg (struct input
# {__le16 req_type, cmpl_ring, seq_id, target_id; __le64 resp_addr;}, 16 bytes).  HWRM ids are NOT in a public
# header: DPDK drivers/net/bnxt/hsi_struct_def_dpdk.h.
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
HWRM_MSG_NAMES = {v: k[len("HWRM_"):] for k, v in list(globals().items()) if k.startswith("HWRM_") and k.isupper()
                  and isinstance(v, int) and not k.startswith("HWRM_NVM_")}

# Side effects a decision may ask for (carried out by the backend, never here).
REFRESH = "refresh"                    # re-apply vfd's settings once the VF's queues are up (reference 7.2)
REAPPLY = "reapply"                    # re-apply the VF now (must not wait for the queues)
REGISTER_MAC = "register_mac"          # Decision.macs[0] becomes the VF's guest-chosen default MAC
REGISTER_MACVLAN = "register_macvlan"  # Decision.macs join the VF's guest allow-list
UNREGISTER_MACVLAN = "unregister_macvlan"  # Decision.macs leave the guest allow-list
CLEAR_MACVLAN = "clear_macvlan"        # forget the guest allow-list (the default MAC stays)
QUEUES_READY = "queues_ready"          # i40e: the VF enabled its queues
QUEUES_DOWN = "queues_down"            # i40e: the VF disabled its queues or reset
REASSERT_PF = "reassert_pf"            # re-assert flow control and TX loopback on the PF
DROP_ENABLE = "drop_enable"            # reset window opened: drop instead of blocking the VF's RX queues

# A PF configured with MTU m accepts frames up to m + Ethernet header (14) + one VLAN tag (4) + FCS (4).
# The original configured the PF's max frame to `mtu` itself and compared the guest's frame with it;
# DPDK 22.11 configures the L3 MTU, so the frame limit is the MTU plus this overhead.
FRAME_OVERHEAD = 22


@dataclass(frozen=True)
class VFView:
    """What the policy may know about the requesting VF and its PF."""

    vfid: int
    managed: bool                       # a live vfd config owns this VF
    vlans: frozenset[int] = frozenset()
    macs: tuple[str, ...] = ()          # configured MACs: default first, then the allow-list
    guest_mac: str | None = None        # default MAC the guest set through the mailbox (approved)
    guest_macs: tuple[str, ...] = ()    # allow-list MACs the guest added through the mailbox (approved)
    mac_owners: Mapping[str, int] = field(default_factory=dict)  # every MAC in use on the PF -> VF number
    pf_mtu: int = 1500
    bcast: bool = True
    mcast: bool = True
    uucast: bool = False
    max_macs: int = MAX_MACS_PER_VF

    @property
    def max_frame(self) -> int:
        return self.pf_mtu + FRAME_OVERHEAD

    def own_macs(self) -> set[str]:
        own = set(self.macs) | set(self.guest_macs)
        if self.guest_mac:
            own.add(self.guest_mac)
        return own


@dataclass(frozen=True)
class Decision:
    verdict: int
    actions: tuple[str, ...] = ()
    reason: str = ""
    macs: tuple[str, ...] = ()                 # MACs for register_* / unregister_* actions
    patch: tuple[int, bytes] | None = None     # (byte offset in the message, new bytes) written before the PF acts

    @property
    def verdict_name(self) -> str:
        return VERDICT_NAMES.get(self.verdict, str(self.verdict))

    def __str__(self) -> str:
        extra = f" {','.join(self.actions)}" if self.actions else ""
        return f"{self.verdict_name}{extra}: {self.reason}"


def _proceed(reason: str, *actions: str, **kw) -> Decision:
    return Decision(PROCEED, tuple(actions), reason, **kw)


def _nack(reason: str, *actions: str) -> Decision:
    return Decision(NOOP_NACK, tuple(actions), reason)


def _ack(reason: str, *actions: str) -> Decision:
    return Decision(NOOP_ACK, tuple(actions), reason)


UNMANAGED = "VF not managed by vfd: the PF driver decides"

# ---------------------------------------------------------------------------------------------------
# MAC addresses
# ---------------------------------------------------------------------------------------------------


def mac_str(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw[:6])


def is_zero_mac(mac: str) -> bool:
    return mac == "00:00:00:00:00:00"


def is_multicast_mac(mac: str) -> bool:
    return int(mac[0:2], 16) & 1 == 1


def mac_admissible(mac: str, view: VFView) -> tuple[bool, str]:
    """vfd's MAC rule for a guest request: a unicast, non-zero MAC no other VF of the PF uses, within the
    VF's limit of 64.  A MAC the VF already has is fine (a no-op)."""
    mac = mac.lower()
    if is_zero_mac(mac) or is_multicast_mac(mac):
        return False, f"{mac} is not a unicast MAC"
    owner = view.mac_owners.get(mac)
    if owner is not None and owner != view.vfid:
        return False, f"{mac} is in use by VF {owner}"
    own = view.own_macs()
    if mac in own:
        return True, f"{mac} already belongs to this VF"
    if len(own) + 1 > view.max_macs:
        return False, f"VF already has {len(own)} MACs (limit {view.max_macs})"
    return True, f"{mac} admissible"


def configured_mac_allowed(mac: str, view: VFView) -> tuple[bool, str]:
    """bnxt's rule (reference 6.3): a MAC from the VF's configured list, or any admissible MAC when the
    config names none."""
    mac = mac.lower()
    if view.macs:
        if mac in view.macs:
            return True, f"{mac} is configured for this VF"
        return False, f"{mac} is not one of the VF's configured MACs"
    return mac_admissible(mac, view)


# ---------------------------------------------------------------------------------------------------
# ixgbe (reference 6.1).  Message ids: DPDK drivers/net/ixgbe/base/ixgbe_mbx.h
# ---------------------------------------------------------------------------------------------------

IXGBEVF_XCAST_MODE_NONE = 0
IXGBEVF_XCAST_MODE_MULTI = 1
IXGBEVF_XCAST_MODE_ALLMULTI = 2
IXGBEVF_XCAST_MODE_PROMISC = 3


def decode_ixgbe(words: list[int]) -> dict:
    """The PMD's uint32_t msgbuf[16] -> payload: msg_type, info byte and what each message carries."""
    w = list(words) + [0] * max(0, 4 - len(words))
    w0 = w[0] & 0xFFFFFFFF
    msg_type = w0 & 0xFFFF
    raw = b"".join((x & 0xFFFFFFFF).to_bytes(4, "little") for x in w[:4])
    p = {"msg_type": msg_type, "info": (w0 >> 16) & 0xFF, "word1": w[1] & 0xFFFFFFFF}
    if msg_type in (IXGBE_VF_SET_MAC_ADDR, IXGBE_VF_SET_MACVLAN):
        p["mac"] = mac_str(raw[4:10])
    elif msg_type == IXGBE_VF_SET_VLAN:
        p["vlan"] = w[1] & 0xFFF
        p["add"] = bool(p["info"])
    elif msg_type == IXGBE_VF_SET_LPE:
        p["max_frame"] = w[1] & 0xFFFFFFFF
    elif msg_type == IXGBE_VF_UPDATE_XCAST_MODE:
        p["xcast_mode"] = w[1] & 0xFFFFFFFF
    elif msg_type == IXGBE_VF_SET_MULTICAST:
        p["count"] = p["info"]
    return p


def ixgbe_xcast_cap(view: VFView) -> int:
    """Highest ixgbevf xcast mode the config allows."""
    if view.uucast and view.mcast:
        return IXGBEVF_XCAST_MODE_PROMISC
    if view.mcast:
        return IXGBEVF_XCAST_MODE_ALLMULTI
    return IXGBEVF_XCAST_MODE_MULTI


def ixgbe(msg_type: int, payload: dict, view: VFView) -> Decision:
    if not view.managed:
        return _proceed(UNMANAGED)
    if msg_type == IXGBE_VF_RESET:
        # The 22.11 PMD resets the VF before asking and ignores the verdict; the refresh re-applies vfd's
        # settings once the guest driver is back.
        return _ack("VF reset: refresh queued", REFRESH, DROP_ENABLE, CLEAR_MACVLAN)
    if msg_type == IXGBE_VF_SET_MAC_ADDR:
        mac = payload.get("mac", "")
        if view.guest_mac == mac or (view.guest_mac is None and view.macs and view.macs[0] == mac):
            return _proceed(f"{mac} is already the VF's default MAC", REFRESH)
        ok, why = mac_admissible(mac, view)
        if not ok:
            return _nack(why)
        return _proceed(why, REGISTER_MAC, REFRESH, macs=(mac,))
    if msg_type == IXGBE_VF_SET_MACVLAN:
        mac = payload.get("mac", "00:00:00:00:00:00")
        if payload.get("info", 0) == 0 or is_zero_mac(mac):
            return _proceed("clear the VF's allow-list (default MAC kept)", CLEAR_MACVLAN)
        ok, why = mac_admissible(mac, view)
        if not ok:
            return _nack(why)
        return _proceed(why, REGISTER_MACVLAN, REFRESH, macs=(mac,))
    if msg_type == IXGBE_VF_SET_MULTICAST:
        return _proceed("multicast list", REFRESH)
    if msg_type == IXGBE_VF_SET_VLAN:
        vlan = payload.get("vlan", -1)
        if vlan in view.vlans or vlan == 0:
            return _ack(f"VLAN {vlan} is configured (vfd programs the filter)", REFRESH)
        return _nack(f"VLAN {vlan} is not in the VF's vlans {sorted(view.vlans)}", REFRESH)
    if msg_type == IXGBE_VF_SET_LPE:
        frame = payload.get("max_frame", -1)
        if 0 <= frame <= view.max_frame:
            return _proceed(f"max frame {frame} fits the PF (mtu {view.pf_mtu}, frame {view.max_frame})",
                            REAPPLY, REASSERT_PF, REFRESH)
        return _nack(f"max frame {frame} exceeds the PF's {view.max_frame} (mtu {view.pf_mtu})")
    if msg_type == IXGBE_VF_API_NEGOTIATE:
        return _proceed("API negotiation", REASSERT_PF, REAPPLY)
    if msg_type == IXGBE_VF_GET_QUEUES:
        return _proceed("queue query", REFRESH)
    if msg_type == IXGBE_VF_UPDATE_XCAST_MODE:
        mode = payload.get("xcast_mode", 0)
        cap = ixgbe_xcast_cap(view)
        if mode > cap:
            return _proceed(f"xcast mode {mode} capped at {cap} by the config", REFRESH,
                            patch=(4, cap.to_bytes(4, "little")))
        return _proceed(f"xcast mode {mode} within the config", REFRESH)
    return _nack(f"unknown ixgbe message 0x{msg_type:02x}", REAPPLY)


# ---------------------------------------------------------------------------------------------------
# i40e (reference 6.2).  virtchnl opcodes: DPDK drivers/common/iavf/virtchnl.h
# ---------------------------------------------------------------------------------------------------

FLAG_VF_UNICAST_PROMISC = 0x0001
FLAG_VF_MULTICAST_PROMISC = 0x0002

I40E_PASS = frozenset({VIRTCHNL_OP_VERSION, VIRTCHNL_OP_GET_VF_RESOURCES, VIRTCHNL_OP_CONFIG_TX_QUEUE,
                       VIRTCHNL_OP_CONFIG_RX_QUEUE, VIRTCHNL_OP_CONFIG_VSI_QUEUES, VIRTCHNL_OP_CONFIG_IRQ_MAP,
                       VIRTCHNL_OP_GET_STATS, VIRTCHNL_OP_EVENT, VIRTCHNL_OP_CONFIG_RSS_KEY,
                       VIRTCHNL_OP_CONFIG_RSS_LUT, VIRTCHNL_OP_GET_RSS_HENA_CAPS, VIRTCHNL_OP_SET_RSS_HENA})


def decode_i40e(opcode: int, data: bytes) -> dict:
    """virtchnl payloads the policy reads: ether-address lists, VLAN lists, promiscuous flags."""
    p: dict = {"opcode": opcode, "len": len(data)}
    if opcode in (VIRTCHNL_OP_ADD_ETH_ADDR, VIRTCHNL_OP_DEL_ETH_ADDR) and len(data) >= 4:
        n = int.from_bytes(data[2:4], "little")
        p["vsi_id"] = int.from_bytes(data[0:2], "little")
        p["macs"] = [mac_str(data[4 + 8 * i: 10 + 8 * i]) for i in range(n) if 10 + 8 * i <= len(data)]
        p["truncated"] = len(p["macs"]) != n
    elif opcode in (VIRTCHNL_OP_ADD_VLAN, VIRTCHNL_OP_DEL_VLAN) and len(data) >= 4:
        n = int.from_bytes(data[2:4], "little")
        p["vsi_id"] = int.from_bytes(data[0:2], "little")
        p["vlans"] = [int.from_bytes(data[4 + 2 * i: 6 + 2 * i], "little") for i in range(n)
                      if 6 + 2 * i <= len(data)]
        p["truncated"] = len(p["vlans"]) != n
    elif opcode == VIRTCHNL_OP_CONFIG_PROMISCUOUS_MODE and len(data) >= 4:
        p["vsi_id"] = int.from_bytes(data[0:2], "little")
        p["flags"] = int.from_bytes(data[2:4], "little")
    return p


def i40e_promisc_flags(requested: int, view: VFView) -> int:
    """The requested promiscuous flags with every flag the config forbids removed (and nothing else)."""
    allowed = (FLAG_VF_UNICAST_PROMISC if view.uucast else 0) | (FLAG_VF_MULTICAST_PROMISC if view.mcast else 0)
    return requested & allowed


def i40e(opcode: int, payload: dict, view: VFView) -> Decision:
    if not view.managed:
        return _proceed(UNMANAGED)
    if opcode == VIRTCHNL_OP_RESET_VF:
        return _proceed("VF reset: queues not ready", QUEUES_DOWN, CLEAR_MACVLAN)
    if opcode == VIRTCHNL_OP_ENABLE_QUEUES:
        return _proceed("queues enabled: refresh queued", QUEUES_READY, REFRESH)
    if opcode == VIRTCHNL_OP_DISABLE_QUEUES:
        return _proceed("queues disabled", QUEUES_DOWN)
    if opcode == VIRTCHNL_OP_ADD_ETH_ADDR:
        if payload.get("truncated"):
            return _nack("address list shorter than its count")
        unicast = []
        for mac in payload.get("macs", []):
            if is_multicast_mac(mac):
                continue          # multicast filters: governed by the multicast gate
            ok, why = mac_admissible(mac, view)
            if not ok:
                return _nack(why)
            unicast.append(mac)
        return _proceed(f"addresses {payload.get('macs', [])} admissible", REGISTER_MACVLAN, REFRESH,
                        macs=tuple(unicast))
    if opcode == VIRTCHNL_OP_DEL_ETH_ADDR:
        macs = tuple(m for m in payload.get("macs", []) if not is_multicast_mac(m))
        return _proceed("address removal (configured MACs come back with the refresh)", UNREGISTER_MACVLAN,
                        REFRESH, macs=macs)
    if opcode == VIRTCHNL_OP_ADD_VLAN:
        if payload.get("truncated"):
            return _nack("VLAN list shorter than its count")
        bad = [v for v in payload.get("vlans", []) if v != 0 and v not in view.vlans]
        if bad:
            return _nack(f"VLAN {bad[0]} is not in the VF's vlans {sorted(view.vlans)}")
        return _proceed(f"VLANs {payload.get('vlans', [])} configured")
    if opcode == VIRTCHNL_OP_DEL_VLAN:
        return _proceed("VLAN removal (configured VLANs come back with the refresh)", REFRESH)
    if opcode == VIRTCHNL_OP_CONFIG_PROMISCUOUS_MODE:
        flags = payload.get("flags", 0)
        new = i40e_promisc_flags(flags, view)
        if new != flags:
            return _proceed(f"promiscuous flags 0x{flags:x} reduced to 0x{new:x} by the config", REFRESH,
                            patch=(2, new.to_bytes(2, "little")))
        return _proceed(f"promiscuous flags 0x{flags:x} allowed", REFRESH)
    if opcode in (VIRTCHNL_OP_ENABLE_VLAN_STRIPPING, VIRTCHNL_OP_DISABLE_VLAN_STRIPPING):
        return _proceed("VLAN stripping change (vfd's strip setting comes back with the refresh)", REFRESH)
    if opcode in I40E_PASS:
        return _proceed("configuration or query message")
    return _nack(f"unknown virtchnl opcode {opcode}")


# ---------------------------------------------------------------------------------------------------
# bnxt (reference 6.3).  HWRM request types: DPDK drivers/net/bnxt/hsi_struct_def_dpdk.h
# ---------------------------------------------------------------------------------------------------

# struct hwrm_func_vf_cfg_input: header(16) enables@16 mtu@20 guest_vlan@22 async_event_cr@24 dflt_mac_addr@26
FUNC_VF_CFG_ENABLES_MTU = 0x1
FUNC_VF_CFG_ENABLES_GUEST_VLAN = 0x2
FUNC_VF_CFG_ENABLES_DFLT_MAC_ADDR = 0x8
# struct hwrm_cfa_l2_filter_alloc_input: flags@16 enables@20 l2_addr@24 l2_addr_mask@32
CFA_L2_FILTER_ALLOC_ENABLES_L2_ADDR = 0x1
CFA_L2_FILTER_ALLOC_ENABLES_L2_ADDR_MASK = 0x2
# struct hwrm_cfa_l2_set_rx_mask_input: vnic_id@16 mask@20
RX_MASK_OFFSET = 20
RX_MASK_MCAST = 0x2
RX_MASK_ALL_MCAST = 0x4
RX_MASK_BCAST = 0x8
RX_MASK_PROMISCUOUS = 0x10

# Configuration a VF may do to itself; vfd re-asserts its settings afterwards.
BNXT_CONFIG_REFRESH = frozenset({
    0x11,        # FUNC_RESET
    0x40, 0x41, 0x42, 0x44, 0x46, 0x48,   # VNIC_ALLOC/FREE/CFG, VNIC_TPA_CFG, VNIC_RSS_CFG, VNIC_PLCMODES_CFG
    0x70, 0x71,  # VNIC_RSS_COS_LB_CTX_ALLOC/FREE
    0x91, 0x92,  # CFA_L2_FILTER_FREE/CFG
    0xA1, 0xA2,  # TUNNEL_DST_PORT_ALLOC/FREE
})
# Queries, rings and statistics contexts.
BNXT_PASS = frozenset({
    0x00,        # VER_GET
    0x0E, 0x1F,  # FUNC_BUF_UNRGTR / FUNC_BUF_RGTR
    0x15, 0x16, 0x18,  # FUNC_QCAPS, FUNC_QCFG, FUNC_QSTATS
    0x1A, 0x1D, 0x1E,  # FUNC_DRV_UNRGTR, FUNC_DRV_RGTR, FUNC_DRV_QVER
    0x1C,        # FUNC_VF_VNIC_IDS_QUERY
    0x23, 0x24, 0x27, 0x28, 0x2A, 0x2E, 0x2F,  # PORT_QSTATS, PORT_LPBK_QSTATS, PORT_PHY_QCFG, PORT_MAC_QCFG,
                                               # PORT_PHY_QCAPS, PORT_LED_QCFG, PORT_LED_QCAPS
    0x30, 0x31, 0x34, 0x35, 0x37, 0x39,  # QUEUE_QPORTCFG, QUEUE_QCFG, FUNC_VLAN_QCFG, QUEUE_PFCENABLE_QCFG,
                                         # QUEUE_PRI2COS_QCFG, QUEUE_COS2BW_QCFG
    0x43, 0x47, 0x49, 0x4A,  # VNIC_QCFG, VNIC_RSS_QCFG, VNIC_PLCMODES_QCFG, VNIC_QCAPS
    0x50, 0x51, 0x52, 0x53, 0x5E, 0x60, 0x61,  # RING_ALLOC/FREE, RING_CMPL_RING_*AGGINT_PARAMS, RING_RESET,
                                               # RING_GRP_ALLOC/FREE
    0xA0,        # TUNNEL_DST_PORT_QUERY
    0xB0, 0xB1, 0xB2,  # STAT_CTX_ALLOC/FREE/QUERY
    0xC1,        # FW_QSTATUS
    0xE0,        # TEMP_MONITOR_QUERY
})


def _u16(data: bytes, off: int) -> int:
    return int.from_bytes(data[off:off + 2], "little") if len(data) >= off + 2 else 0


def _u32(data: bytes, off: int) -> int:
    return int.from_bytes(data[off:off + 4], "little") if len(data) >= off + 4 else 0


def decode_bnxt(data: bytes) -> tuple[int, dict]:
    """A forwarded HWRM request -> (req_type, payload)."""
    req_type = _u16(data, 0)
    p: dict = {"req_type": req_type, "len": len(data)}
    if req_type == HWRM_FUNC_VF_CFG:
        p["enables"] = _u32(data, 16)
        p["mtu"] = _u16(data, 20)
        p["guest_vlan"] = _u16(data, 22)
        if len(data) >= 32:
            p["mac"] = mac_str(data[26:32])
    elif req_type == HWRM_CFA_L2_FILTER_ALLOC:
        p["enables"] = _u32(data, 20)
        if len(data) >= 38:
            p["mac"] = mac_str(data[24:30])
            p["mask"] = mac_str(data[32:38])
    elif req_type == HWRM_CFA_L2_SET_RX_MASK:
        p["mask"] = _u32(data, RX_MASK_OFFSET)
    return req_type, p


def bnxt_rx_mask(requested: int, view: VFView) -> int:
    forbid = 0
    if not view.bcast:
        forbid |= RX_MASK_BCAST
    if not view.mcast:
        forbid |= RX_MASK_ALL_MCAST
    if not view.uucast:
        forbid |= RX_MASK_PROMISCUOUS
    return requested & ~forbid & 0xFFFFFFFF


def bnxt(req_type: int, payload: dict, view: VFView) -> Decision:
    if not view.managed:
        return _proceed(UNMANAGED)
    if req_type == HWRM_FUNC_VF_CFG:
        enables = payload.get("enables", 0)
        if enables & FUNC_VF_CFG_ENABLES_MTU and payload.get("mtu", 0) > view.max_frame:
            return _nack(f"MTU {payload.get('mtu')} exceeds the PF's frame {view.max_frame} (mtu {view.pf_mtu})")
        if enables & FUNC_VF_CFG_ENABLES_GUEST_VLAN:
            return _nack("the guest VLAN is vfd's to set")
        if enables & FUNC_VF_CFG_ENABLES_DFLT_MAC_ADDR:
            mac = payload.get("mac", "")
            ok, why = configured_mac_allowed(mac, view)
            if not ok:
                return _nack(why, REFRESH)
            return _proceed(why, REGISTER_MAC, REFRESH, macs=(mac,))
        return _proceed("VF configuration", REFRESH)
    if req_type == HWRM_CFA_L2_FILTER_ALLOC:
        if payload.get("enables", 0) & CFA_L2_FILTER_ALLOC_ENABLES_L2_ADDR_MASK and \
                payload.get("mask", "ff:ff:ff:ff:ff:ff") != "ff:ff:ff:ff:ff:ff":
            return _nack(f"L2 filter with a partial address mask {payload.get('mask')}", REFRESH)
        mac = payload.get("mac", "")
        if is_multicast_mac(mac):
            return _proceed(f"multicast filter {mac} (governed by the multicast gate)", REFRESH)
        ok, why = configured_mac_allowed(mac, view)
        if not ok:
            return _nack(why, REFRESH)
        return _proceed(why, REGISTER_MACVLAN, REFRESH, macs=(mac,))
    if req_type == HWRM_CFA_L2_SET_RX_MASK:
        mask = payload.get("mask", 0)
        new = bnxt_rx_mask(mask, view)
        if new != mask:
            return _proceed(f"rx mask 0x{mask:x} reduced to 0x{new:x} by the config", REFRESH,
                            patch=(RX_MASK_OFFSET, new.to_bytes(4, "little")))
        return _proceed(f"rx mask 0x{mask:x} allowed", REFRESH)
    if req_type in BNXT_CONFIG_REFRESH:
        return _proceed("VF configuration", REFRESH)
    if req_type in BNXT_PASS:
        return _proceed("query, ring or statistics context")
    return _nack(f"HWRM request 0x{req_type:x} is not allowed from a VF")


POLICIES = {"ixgbe": ixgbe, "i40e": i40e, "bnxt": bnxt}
