"""vfd.policy.mailbox: the guest mailbox policy of reference section 6, as pure functions (no DPDK needed)."""

from __future__ import annotations

import pytest

from vfd.backends.dpdk import ffi
from vfd.policy import mailbox as m

A, B, C, D = "02:00:00:00:00:0a", "02:00:00:00:00:0b", "02:00:00:00:00:0c", "02:00:00:00:00:0d"


def view(**kw) -> m.VFView:
    base = dict(vfid=1, managed=True, vlans=frozenset({10, 20}), macs=(A, B), pf_mtu=1500,
                mac_owners={A: 1, B: 1, C: 2}, bcast=True, mcast=True, uucast=False)
    base.update(kw)
    return m.VFView(**base)


def ixgbe_words(msg_type: int, info: int = 0, word1: int = 0, mac: str | None = None) -> list[int]:
    words = [msg_type | (info << 16), word1] + [0] * 14
    if mac:
        raw = bytes(int(x, 16) for x in mac.split(":")) + b"\0\0"
        words[1] = int.from_bytes(raw[0:4], "little")
        words[2] = int.from_bytes(raw[4:8], "little")
    return words


def ixgbe(msg_type, v=None, **kw):
    return m.ixgbe(msg_type, m.decode_ixgbe(ixgbe_words(msg_type, **kw)), v or view())


# ---- message ids (defined here, in the policy module; the verdicts are checked against the 22.11 headers by
# tests/dpdk/test_ffi_real.py::test_constants_match_headers) ---------------------------------------------

def test_message_constants():
    assert [m.IXGBE_VF_RESET, m.IXGBE_VF_SET_MAC_ADDR, m.IXGBE_VF_SET_MULTICAST, m.IXGBE_VF_SET_VLAN,
            m.IXGBE_VF_SET_LPE, m.IXGBE_VF_SET_MACVLAN, m.IXGBE_VF_API_NEGOTIATE, m.IXGBE_VF_GET_QUEUES,
            m.IXGBE_VF_UPDATE_XCAST_MODE] == [1, 2, 3, 4, 5, 6, 8, 9, 0x0C]
    assert m.VIRTCHNL_OP_NAMES[m.VIRTCHNL_OP_CONFIG_PROMISCUOUS_MODE] == "CONFIG_PROMISCUOUS_MODE"
    assert m.VIRTCHNL_OP_VERSION == 1 and m.VIRTCHNL_OP_EVENT == 17
    assert m.HWRM_MSG_NAMES[0x93] == "CFA_L2_SET_RX_MASK"
    assert m.HWRM_MSG_NAMES[m.HWRM_FUNC_VF_CFG] == "FUNC_VF_CFG"
    assert (m.NOOP_ACK, m.NOOP_NACK, m.PROCEED) == (0, 1, 2)
    assert not any(k.startswith(("IXGBE_VF_", "VIRTCHNL_OP_", "HWRM_")) for k in vars(ffi)), \
        "message ids belong to the policy module, not the binding"


# ---- MAC admissibility (vfd's rules) ---------------------------------------------------------------

def test_mac_admissible_rules():
    v = view()
    assert m.mac_admissible(D, v)[0]
    assert m.mac_admissible(A, v)[0]                      # already this VF's: a no-op success
    ok, why = m.mac_admissible(C, v)
    assert not ok and "VF 2" in why
    assert not m.mac_admissible("01:00:5e:00:00:01", v)[0]    # multicast
    assert not m.mac_admissible("00:00:00:00:00:00", v)[0]
    full = view(macs=tuple(f"02:00:00:00:01:{i:02x}" for i in range(64)))
    ok, why = m.mac_admissible(D, full)
    assert not ok and "limit 64" in why
    assert m.mac_admissible("02:00:00:00:01:05", full)[0]   # one it already has


# ---- ixgbe (6.1) -----------------------------------------------------------------------------------

def test_ixgbe_vlan():
    d = ixgbe(m.IXGBE_VF_SET_VLAN, info=1, word1=10)
    assert d.verdict == m.NOOP_ACK and m.REFRESH in d.actions
    d = ixgbe(m.IXGBE_VF_SET_VLAN, info=1, word1=99)
    assert d.verdict == m.NOOP_NACK and "99" in d.reason
    assert ixgbe(m.IXGBE_VF_SET_VLAN, info=0, word1=20).verdict == m.NOOP_ACK   # removal of a configured VLAN


def test_ixgbe_default_mac():
    d = ixgbe(m.IXGBE_VF_SET_MAC_ADDR, mac=D)
    assert d.verdict == m.PROCEED and d.macs == (D,) and {m.REGISTER_MAC, m.REFRESH} <= set(d.actions)
    d = ixgbe(m.IXGBE_VF_SET_MAC_ADDR, mac=C)
    assert d.verdict == m.NOOP_NACK and "in use by VF 2" in d.reason
    d = ixgbe(m.IXGBE_VF_SET_MAC_ADDR, mac=A)                    # its configured default
    assert d.verdict == m.PROCEED and m.REGISTER_MAC not in d.actions
    assert ixgbe(m.IXGBE_VF_SET_MAC_ADDR, mac="01:00:5e:00:00:01").verdict == m.NOOP_NACK


def test_ixgbe_macvlan():
    d = ixgbe(m.IXGBE_VF_SET_MACVLAN, info=1, mac=D)
    assert d.verdict == m.PROCEED and m.REGISTER_MACVLAN in d.actions and d.macs == (D,)
    assert ixgbe(m.IXGBE_VF_SET_MACVLAN, info=1, mac=C).verdict == m.NOOP_NACK
    d = ixgbe(m.IXGBE_VF_SET_MACVLAN, info=0)
    assert d.verdict == m.PROCEED and m.CLEAR_MACVLAN in d.actions


def test_ixgbe_max_frame():
    assert ixgbe(m.IXGBE_VF_SET_LPE, word1=1522).verdict == m.PROCEED          # 1500 + 22
    d = ixgbe(m.IXGBE_VF_SET_LPE, word1=1522)
    assert {m.REAPPLY, m.REASSERT_PF, m.REFRESH} <= set(d.actions)
    d = ixgbe(m.IXGBE_VF_SET_LPE, word1=1523)
    assert d.verdict == m.NOOP_NACK and "1522" in d.reason
    assert ixgbe(m.IXGBE_VF_SET_LPE, view(pf_mtu=9000), word1=9018).verdict == m.PROCEED


def test_ixgbe_other_messages():
    assert ixgbe(m.IXGBE_VF_RESET).verdict == m.NOOP_ACK
    assert m.REFRESH in ixgbe(m.IXGBE_VF_RESET).actions
    d = ixgbe(m.IXGBE_VF_API_NEGOTIATE)
    assert d.verdict == m.PROCEED and m.REAPPLY in d.actions and m.REASSERT_PF in d.actions
    assert ixgbe(m.IXGBE_VF_GET_QUEUES).verdict == m.PROCEED
    assert ixgbe(m.IXGBE_VF_SET_MULTICAST, info=2).verdict == m.PROCEED
    d = ixgbe(0x0A)                               # GET_RETA: not in the policy
    assert d.verdict == m.NOOP_NACK and m.REAPPLY in d.actions
    assert ixgbe(0x77).verdict == m.NOOP_NACK


def test_ixgbe_xcast_capped_by_config():
    d = ixgbe(m.IXGBE_VF_UPDATE_XCAST_MODE, word1=m.IXGBEVF_XCAST_MODE_PROMISC)       # uucast off
    assert d.verdict == m.PROCEED and d.patch == (4, m.IXGBEVF_XCAST_MODE_ALLMULTI.to_bytes(4, "little"))
    d = ixgbe(m.IXGBE_VF_UPDATE_XCAST_MODE, view(mcast=False), word1=m.IXGBEVF_XCAST_MODE_ALLMULTI)
    assert d.patch == (4, m.IXGBEVF_XCAST_MODE_MULTI.to_bytes(4, "little"))
    d = ixgbe(m.IXGBE_VF_UPDATE_XCAST_MODE, view(uucast=True), word1=m.IXGBEVF_XCAST_MODE_PROMISC)
    assert d.verdict == m.PROCEED and d.patch is None


def test_unmanaged_vf_proceeds_everywhere():
    v = view(managed=False, vlans=frozenset(), macs=())
    assert ixgbe(m.IXGBE_VF_SET_VLAN, v, info=1, word1=99).verdict == m.PROCEED
    assert m.i40e(m.VIRTCHNL_OP_ADD_VLAN, {"vlans": [99]}, v).verdict == m.PROCEED
    assert m.bnxt(0xFFF0, {}, v).verdict == m.PROCEED


# ---- i40e (6.2) ------------------------------------------------------------------------------------

def i40e_addr_list(macs):
    data = (0).to_bytes(2, "little") + len(macs).to_bytes(2, "little")
    for mac in macs:
        data += bytes(int(x, 16) for x in mac.split(":")) + b"\0\0"
    return data


def i40e_vlan_list(vlans):
    return (0).to_bytes(2, "little") + len(vlans).to_bytes(2, "little") + b"".join(
        v.to_bytes(2, "little") for v in vlans)


def i40e(op, data=b"", v=None):
    return m.i40e(op, m.decode_i40e(op, data), v or view())


def test_i40e_vlans():
    assert i40e(m.VIRTCHNL_OP_ADD_VLAN, i40e_vlan_list([10, 20])).verdict == m.PROCEED
    assert i40e(m.VIRTCHNL_OP_ADD_VLAN, i40e_vlan_list([0])).verdict == m.PROCEED
    d = i40e(m.VIRTCHNL_OP_ADD_VLAN, i40e_vlan_list([10, 99]))
    assert d.verdict == m.NOOP_NACK and "99" in d.reason
    assert i40e(m.VIRTCHNL_OP_ADD_VLAN, i40e_vlan_list([10])[:-2] + b"").verdict == m.NOOP_NACK  # truncated
    assert m.REFRESH in i40e(m.VIRTCHNL_OP_DEL_VLAN, i40e_vlan_list([10])).actions


def test_i40e_addresses():
    d = i40e(m.VIRTCHNL_OP_ADD_ETH_ADDR, i40e_addr_list([D, "33:33:00:00:00:01"]))
    assert d.verdict == m.PROCEED and d.macs == (D,) and m.REGISTER_MACVLAN in d.actions
    d = i40e(m.VIRTCHNL_OP_ADD_ETH_ADDR, i40e_addr_list([A, C]))
    assert d.verdict == m.NOOP_NACK and "VF 2" in d.reason
    d = i40e(m.VIRTCHNL_OP_DEL_ETH_ADDR, i40e_addr_list([D]))
    assert d.verdict == m.PROCEED and m.UNREGISTER_MACVLAN in d.actions and d.macs == (D,)


def test_i40e_queues_and_reset():
    d = i40e(m.VIRTCHNL_OP_ENABLE_QUEUES)
    assert d.verdict == m.PROCEED and {m.QUEUES_READY, m.REFRESH} <= set(d.actions)
    assert m.QUEUES_DOWN in i40e(m.VIRTCHNL_OP_DISABLE_QUEUES).actions
    assert m.QUEUES_DOWN in i40e(m.VIRTCHNL_OP_RESET_VF).actions


@pytest.mark.parametrize("uucast,mcast,requested,expected", [
    (False, True, 0x3, 0x2),     # the original's masking bug dropped the allowed multicast bit here
    (True, False, 0x3, 0x1),     # ... and the allowed unicast bit here
    (True, True, 0x3, 0x3),
    (False, False, 0x3, 0x0),
    (False, True, 0x2, 0x2),
    (True, False, 0x0, 0x0),
])
def test_i40e_promiscuous_masking_fixed(uucast, mcast, requested, expected):
    v = view(uucast=uucast, mcast=mcast)
    assert m.i40e_promisc_flags(requested, v) == expected
    data = (7).to_bytes(2, "little") + requested.to_bytes(2, "little")
    d = i40e(m.VIRTCHNL_OP_CONFIG_PROMISCUOUS_MODE, data, v)
    assert d.verdict == m.PROCEED and m.REFRESH in d.actions
    assert d.patch == (None if expected == requested else (2, expected.to_bytes(2, "little")))


def test_i40e_pass_and_unknown():
    for op in (m.VIRTCHNL_OP_VERSION, m.VIRTCHNL_OP_GET_VF_RESOURCES, m.VIRTCHNL_OP_CONFIG_VSI_QUEUES,
               m.VIRTCHNL_OP_GET_STATS, m.VIRTCHNL_OP_CONFIG_RSS_LUT):
        assert i40e(op).verdict == m.PROCEED
    assert m.REFRESH in i40e(m.VIRTCHNL_OP_ENABLE_VLAN_STRIPPING).actions
    assert i40e(99).verdict == m.NOOP_NACK
    assert i40e(29).verdict == m.NOOP_NACK     # REQUEST_QUEUES: not in the original's list


# ---- bnxt (6.3) ------------------------------------------------------------------------------------

def hwrm(req_type: int, fields: dict[int, bytes], size: int = 128) -> bytes:
    buf = bytearray(size)
    buf[0:2] = req_type.to_bytes(2, "little")
    for off, raw in fields.items():
        buf[off:off + len(raw)] = raw
    return bytes(buf)


def mac_bytes(mac):
    return bytes(int(x, 16) for x in mac.split(":"))


def bnxt(data, v=None):
    req, payload = m.decode_bnxt(data)
    return m.bnxt(req, payload, v or view())


def test_bnxt_default_mac():
    vf_cfg = lambda mac, en=m.FUNC_VF_CFG_ENABLES_DFLT_MAC_ADDR: hwrm(  # noqa: E731
        m.HWRM_FUNC_VF_CFG, {16: en.to_bytes(4, "little"), 26: mac_bytes(mac)})
    assert bnxt(vf_cfg(B)).verdict == m.PROCEED                      # one of the configured MACs
    d = bnxt(vf_cfg(D))
    assert d.verdict == m.NOOP_NACK and "configured" in d.reason
    d = bnxt(vf_cfg(D), view(macs=()))                               # no configured MACs: admissible
    assert d.verdict == m.PROCEED and m.REGISTER_MAC in d.actions
    assert bnxt(vf_cfg(C), view(macs=())).verdict == m.NOOP_NACK       # VF 2's


def test_bnxt_mtu_and_vlan():
    data = hwrm(m.HWRM_FUNC_VF_CFG, {16: m.FUNC_VF_CFG_ENABLES_MTU.to_bytes(4, "little"),
                                     20: (9000).to_bytes(2, "little")})
    assert bnxt(data).verdict == m.NOOP_NACK
    data = hwrm(m.HWRM_FUNC_VF_CFG, {16: m.FUNC_VF_CFG_ENABLES_MTU.to_bytes(4, "little"),
                                     20: (1522).to_bytes(2, "little")})
    assert bnxt(data).verdict == m.PROCEED
    data = hwrm(m.HWRM_FUNC_VF_CFG, {16: m.FUNC_VF_CFG_ENABLES_GUEST_VLAN.to_bytes(4, "little")})
    assert bnxt(data).verdict == m.NOOP_NACK


def test_bnxt_l2_filter():
    en = (m.CFA_L2_FILTER_ALLOC_ENABLES_L2_ADDR | m.CFA_L2_FILTER_ALLOC_ENABLES_L2_ADDR_MASK).to_bytes(4, "little")
    ok = hwrm(m.HWRM_CFA_L2_FILTER_ALLOC, {20: en, 24: mac_bytes(A), 32: b"\xff" * 6})
    assert bnxt(ok).verdict == m.PROCEED
    partial = hwrm(m.HWRM_CFA_L2_FILTER_ALLOC, {20: en, 24: mac_bytes(A), 32: b"\xff" * 5 + b"\0"})
    assert bnxt(partial).verdict == m.NOOP_NACK
    other = hwrm(m.HWRM_CFA_L2_FILTER_ALLOC, {20: en, 24: mac_bytes(D), 32: b"\xff" * 6})
    assert bnxt(other).verdict == m.NOOP_NACK


def test_bnxt_rx_mask_stripped():
    want = m.RX_MASK_BCAST | m.RX_MASK_ALL_MCAST | m.RX_MASK_PROMISCUOUS | m.RX_MASK_MCAST
    data = hwrm(m.HWRM_CFA_L2_SET_RX_MASK, {20: want.to_bytes(4, "little")})
    d = bnxt(data, view(bcast=False, mcast=True, uucast=False))
    expected = m.RX_MASK_ALL_MCAST | m.RX_MASK_MCAST
    assert d.verdict == m.PROCEED and d.patch == (20, expected.to_bytes(4, "little")) and m.REFRESH in d.actions
    assert bnxt(data, view(bcast=True, mcast=True, uucast=True)).patch is None


def test_bnxt_classes():
    assert bnxt(hwrm(0x40, {})).verdict == m.PROCEED and m.REFRESH in bnxt(hwrm(0x40, {})).actions   # VNIC_ALLOC
    assert bnxt(hwrm(0x50, {})).verdict == m.PROCEED            # RING_ALLOC
    assert bnxt(hwrm(0x00, {})).verdict == m.PROCEED            # VER_GET
    for nack in (0xFFF0, 0xC0, 0x19, 0x20, 0x36, 0xF0, 0x33):   # NVM, FW_RESET, FUNC_CLR_STATS, PORT_PHY_CFG,
        assert bnxt(hwrm(nack, {})).verdict == m.NOOP_NACK, hex(nack)   # PFCENABLE_CFG, WOL, FUNC_VLAN_CFG
