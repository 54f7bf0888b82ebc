"""bnxt (Broadcom NetXtreme-C/E, DPDK driver net_bnxt): the original's vfd_bnxt.c on the 22.11 API.

What 22.11 reaches (rte_pmd_bnxt.h): VLAN filter, default MAC, VLAN and MAC anti-spoof, strip and insert,
the VF rx mask (BROADCAST, MULTICAST = all-multicast, HASH_UC = promiscuous), TX rate limit, persistent
VF counters, VF counters, the VF's TX drop count (the Spoofed column), VF rx-queue status (the queue probe),
TX loopback, the mailbox (forwarded HWRM requests).

Not reached: an allow-list.  rte_pmd_bnxt_mac_addr_add adds a MAC filter for a VF, but nothing in 22.11
removes one (ethdev's generic mac_addr_remove works on the PF's own VNICs; the original called it anyway),
so a MAC added for one VF would stay after the VF is deleted.  Configs with more than one MAC are refused
on bnxt.  Also not reached: mirroring, an untagged gate (set_vf_rxmode refuses UNTAG with ENOTSUP), VF
ping, link state, guaranteed rate.  PF all-multicast stays off (reference 5.1).
"""

from __future__ import annotations

from vfd.capabilities import Feature as F
from vfd.policy import mailbox as mbx

from . import ffi as real_ffi
from .adapter import PmdAdapter, narrowed_profile

RXMODE_BITS = {
    "bcast": real_ffi.RTE_ETH_VMDQ_ACCEPT_BROADCAST,
    "mcast": real_ffi.RTE_ETH_VMDQ_ACCEPT_MULTICAST,
    "uucast": real_ffi.RTE_ETH_VMDQ_ACCEPT_HASH_UC,
}
RATE_QUEUE_MASK = 0x1   # the bnxt PMD adds tx_rate once per mask bit and caps the whole VF with the sum

PROFILE = narrowed_profile("bnxt", "net_bnxt", {
    F.VLAN_FILTER, F.VLAN_STRIP, F.VLAN_INSERT, F.STRIP_INSERT_SPLIT, F.MAC_ANTI_SPOOF, F.VLAN_ANTI_SPOOF,
    F.BCAST_GATE, F.MCAST_GATE, F.UUCAST_GATE, F.MAX_RATE, F.LOOPBACK, F.VF_STATS, F.MAILBOX,
})


class BnxtAdapter(PmdAdapter):
    family = "bnxt"
    driver = "net_bnxt"
    profile = PROFILE
    pf_allmulti = False

    def set_loopback(self, on: bool) -> None:
        self.call("enable_loopback", None, "rte_pmd_bnxt_set_tx_loopback", self.port, bool(on))

    def set_vlan_filter(self, vfid, add, remove) -> None:
        for vlan in remove:
            self.call("vlans", vfid, "rte_pmd_bnxt_set_vf_vlan_filter", self.port, vlan, 1 << vfid, False)
        for vlan in add:
            self.call("vlans", vfid, "rte_pmd_bnxt_set_vf_vlan_filter", self.port, vlan, 1 << vfid, True)

    def set_macs(self, vfid, default, allow, added, removed, set_default, default_changed=True) -> None:
        if removed:
            self.unsupported("macs", vfid, "call that removes a VF MAC filter")
        for mac in reversed(added):
            self.call("macs", vfid, "rte_pmd_bnxt_mac_addr_add", self.port, mac, vfid)
        if set_default and default:
            self.call("mac", vfid, "rte_pmd_bnxt_set_vf_mac_addr", self.port, vfid, default)

    def set_rates(self, vfid, max_rate, min_rate) -> None:
        if min_rate:
            self.unsupported("min_rate", vfid, "guaranteed VF TX rate")
        self.call("max_rate", vfid, "rte_pmd_bnxt_set_vf_rate_limit", self.port, vfid, max_rate, RATE_QUEUE_MASK)

    def persist_stats(self, vfid) -> None:
        self.call("persist_stats", vfid, "rte_pmd_bnxt_set_vf_persist_stats", self.port, vfid, True)

    def set_anti_spoof(self, vfid, vlan=None, mac=None) -> None:
        if vlan is not None:
            self.call("vlan_anti_spoof", vfid, "rte_pmd_bnxt_set_vf_vlan_anti_spoof", self.port, vfid, vlan)
        if mac is not None:
            self.call("mac_anti_spoof", vfid, "rte_pmd_bnxt_set_vf_mac_anti_spoof", self.port, vfid, mac)

    def set_strip_insert(self, vfid, strip=None, insert=None) -> None:
        if strip is not None:
            self.call("strip", vfid, "rte_pmd_bnxt_set_vf_vlan_stripq", self.port, vfid, strip)
        if insert is not None:
            self.call("insert", vfid, "rte_pmd_bnxt_set_vf_vlan_insert", self.port, vfid, insert)

    def set_rxmode(self, vfid, bcast=None, mcast=None, uucast=None, untagged=None, insert=0) -> None:
        for gate, value in (("bcast", bcast), ("mcast", mcast), ("uucast", uucast)):
            if value is not None:
                self.call(gate, vfid, "rte_pmd_bnxt_set_vf_rxmode", self.port, vfid, RXMODE_BITS[gate], value)
        if untagged:
            self.unsupported("allow_untagged", vfid, "untagged-frame receive gate")

    def queue_ready(self, vfid, rec):
        return self.call("queue_probe", vfid, "rte_pmd_bnxt_get_vf_rx_status", self.port, vfid) > 0

    def vf_stats(self, vfid):
        s = real_ffi.stats_dict(self.call("vf_stats", vfid, "rte_pmd_bnxt_get_vf_stats", self.port, vfid))
        drops = self.call("vf_stats", vfid, "rte_pmd_bnxt_get_vf_tx_drop_count", self.port, vfid)
        return {"rx_pkts": s["ipackets"], "rx_bytes": s["ibytes"], "rx_errors": s["ierrors"], "rx_dropped": 0,
                "tx_pkts": s["opackets"], "tx_bytes": s["obytes"], "tx_errors": s["oerrors"], "spoofed": drops}

    def spoof_count(self, vfids):
        """The original's bnxt Spoofed column for the PF: the xstat tx_drop_pkts."""
        try:
            return int(self.ffi.xstats(self.port).get("tx_drop_pkts", 0))
        except real_ffi.DpdkError:
            return 0

    def decode_mbox(self, ret_param):
        p = real_ffi.bnxt_mb_param(ret_param)
        # The forwarded HWRM request: its length is not passed; 128 bytes covers every request vfd reads
        # (the PMD's forward buffer is larger).
        data = real_ffi.msg_bytes(p.msg, 128)
        req_type, payload = mbx.decode_bnxt(data)
        return int(p.vf_id), req_type, payload, p.msg, 128 if p.msg else 0

    def _set_retval(self, ret_param, verdict) -> None:
        real_ffi.bnxt_mb_param(ret_param).retval = verdict

    def msg_name(self, msg_type: int) -> str:
        return mbx.HWRM_MSG_NAMES.get(msg_type, f"0x{msg_type:x}")


ADAPTER = BnxtAdapter
