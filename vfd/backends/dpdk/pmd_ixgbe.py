"""ixgbe (Intel 82599 / X540 / X550, DPDK driver net_ixgbe): the original's vfd_ixgbe.c on the 22.11 API.

What 22.11 reaches (rte_pmd_ixgbe.h + ethdev): VLAN filter, default MAC, allow-list MACs (ethdev MAC filter
steered to the VF's pool / generic remove), VLAN and MAC anti-spoof, strip and insert, the VF rx modes
(BROADCAST, MULTICAST = multicast promiscuous, HASH_UC = unknown unicast with the PF's unicast hash table
set to accept all, UNTAG), TX rate limit, TX loopback, split-RX drop enable, VF ping, the mailbox.
What it does not: mirroring (API removed in 21.11), VF counters (the original read VF registers directly;
no 22.11 call), the PF's spoofed-frame counter (register 0x08780, no call), the per-VF queue-drop window
(PFQDE), disabling the default pool, VF queue-ready probe (RXDCTL), link state, guaranteed rate.
"""

from __future__ import annotations

from vfd.capabilities import Feature as F
from vfd.policy import mailbox as mbx

from . import ffi as real_ffi
from .adapter import PmdAdapter, narrowed_profile

RXMODE_BITS = {  # program gate -> RTE_ETH_VMDQ_ACCEPT_* (rte_ethdev.h)
    "bcast": real_ffi.RTE_ETH_VMDQ_ACCEPT_BROADCAST,
    "mcast": real_ffi.RTE_ETH_VMDQ_ACCEPT_MULTICAST,
    "uucast": real_ffi.RTE_ETH_VMDQ_ACCEPT_HASH_UC,
    "untagged": real_ffi.RTE_ETH_VMDQ_ACCEPT_UNTAG,
}
# Every queue of the VF's pool (2, 4 or 8 depending on the VF count; the PMD ignores bits past the pool).
# The 82599 limits each queue separately, as Linux's `ip link set vf N rate` does: a guest using n queues
# may send up to n x max_rate.  (The original set queue 0 only, leaving the other queues unlimited.)
RATE_QUEUE_MASK = 0xFF

PROFILE = narrowed_profile("ixgbe", "net_ixgbe", {
    F.VLAN_FILTER, F.VLAN_STRIP, F.VLAN_INSERT, F.STRIP_INSERT_SPLIT, F.MAC_ALLOWLIST, F.MAC_ANTI_SPOOF,
    F.VLAN_ANTI_SPOOF, F.BCAST_GATE, F.MCAST_GATE, F.UUCAST_GATE, F.UNTAGGED_GATE, F.MAX_RATE, F.LOOPBACK,
    F.MAILBOX,
})


class IxgbeAdapter(PmdAdapter):
    family = "ixgbe"
    driver = "net_ixgbe"
    profile = PROFILE

    # ---- PF ----------------------------------------------------------------------------------
    def pf_init(self, pf, vfs_count: int) -> None:
        # Split-RX drop enable for every VF (reference 1.4 step 8): a stalled guest never blocks the PF.
        for vf in range(vfs_count):
            self.call("split_drop_en", vf, "rte_pmd_ixgbe_set_vf_split_drop_en", self.port, vf, True)
        self.set_loopback(pf.enable_loopback)

    def pf_update(self) -> None:
        # "unicast hash table accept all": what makes HASH_UC mean unknown-unicast promiscuous (reference 5.1)
        self.call("uc_all_hash", None, "rte_eth_dev_uc_all_hash_table_set", self.port, 1)

    def set_loopback(self, on: bool) -> None:
        self.call("enable_loopback", None, "rte_pmd_ixgbe_set_tx_loopback", self.port, bool(on))

    def ping_vfs(self, vfids: list[int]) -> None:
        for vf in vfids:           # configured VFs only (reference 5.3)
            self.call("ping", vf, "rte_pmd_ixgbe_ping_vf", self.port, vf)

    # ---- VF ----------------------------------------------------------------------------------
    def set_vlan_filter(self, vfid, add, remove) -> None:
        for vlan in remove:
            self.call("vlans", vfid, "rte_pmd_ixgbe_set_vf_vlan_filter", self.port, vlan, 1 << vfid, False)
        for vlan in add:
            self.call("vlans", vfid, "rte_pmd_ixgbe_set_vf_vlan_filter", self.port, vlan, 1 << vfid, True)

    def set_macs(self, vfid, default, allow, added, removed, set_default, default_changed=True) -> None:
        for mac in removed:
            self.call("macs", vfid, "rte_eth_dev_mac_addr_remove", self.port, mac)
        for mac in reversed(added):
            self.call("macs", vfid, "rte_eth_dev_mac_addr_add", self.port, mac, vfid)
        if set_default and default:
            self.call("mac", vfid, "rte_pmd_ixgbe_set_vf_mac_addr", self.port, vfid, default)

    def set_rates(self, vfid, max_rate, min_rate) -> None:
        if min_rate:
            self.unsupported("min_rate", vfid, "guaranteed VF TX rate")
        self.call("max_rate", vfid, "rte_pmd_ixgbe_set_vf_rate_limit", self.port, vfid, max_rate, RATE_QUEUE_MASK)

    def set_anti_spoof(self, vfid, vlan=None, mac=None) -> None:
        if vlan is not None:
            self.call("vlan_anti_spoof", vfid, "rte_pmd_ixgbe_set_vf_vlan_anti_spoof", self.port, vfid, vlan)
        if mac is not None:
            self.call("mac_anti_spoof", vfid, "rte_pmd_ixgbe_set_vf_mac_anti_spoof", self.port, vfid, mac)

    def set_strip_insert(self, vfid, strip=None, insert=None) -> None:
        if strip is not None:
            self.call("strip", vfid, "rte_pmd_ixgbe_set_vf_vlan_stripq", self.port, vfid, strip)
        if insert is not None:
            self.call("insert", vfid, "rte_pmd_ixgbe_set_vf_vlan_insert", self.port, vfid, insert)

    def set_rxmode(self, vfid, bcast=None, mcast=None, uucast=None, untagged=None, insert=0) -> None:
        for gate, value in (("bcast", bcast), ("mcast", mcast), ("uucast", uucast), ("untagged", untagged)):
            if value is not None:
                self.call(gate, vfid, "rte_pmd_ixgbe_set_vf_rxmode", self.port, vfid, RXMODE_BITS[gate], value)

    # ---- mailbox -----------------------------------------------------------------------------
    def decode_mbox(self, ret_param):
        p = real_ffi.ixgbe_mb_param(ret_param)
        words = real_ffi.ixgbe_msg_words(p, mbx.IXGBE_VFMAILBOX_SIZE)
        payload = mbx.decode_ixgbe(words or [p.msg_type])
        return int(p.vfid), int(p.msg_type), payload, p.msg, 4 * mbx.IXGBE_VFMAILBOX_SIZE if p.msg else 0

    def _set_retval(self, ret_param, verdict) -> None:
        real_ffi.ixgbe_mb_param(ret_param).retval = verdict

    def msg_name(self, msg_type: int) -> str:
        return mbx.IXGBE_MBX_MSG_NAMES.get(msg_type, f"0x{msg_type:02x}")


ADAPTER = IxgbeAdapter
