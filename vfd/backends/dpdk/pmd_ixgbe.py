"""ixgbe (Intel 82599 / X540 / X550, DPDK driver net_ixgbe): the original's vfd_ixgbe.c on the 22.11 API.

What 22.11 reaches (rte_pmd_ixgbe.h + ethdev): VLAN filter, default MAC, allow-list MACs (ethdev MAC filter
steered to the VF's pool / generic remove), VLAN and MAC anti-spoof, strip and insert, the VF rx modes
(BROADCAST, MULTICAST = multicast promiscuous, HASH_UC = unknown unicast with the PF's unicast hash table
set to accept all, UNTAG), TX rate limit, TX loopback, split-RX drop enable, VF ping, the mailbox.
QoS (enable_qos): VMDq+DCB in the port configuration (16 pools x 8 TCs, or 32 pools x 4 TCs), the PF's TC
weights with rte_pmd_ixgbe_set_tc_bw_alloc, and each VF's share of a TC as the TX rate limit of the VF's
queue for that TC (per-queue rate limits: the 82599's per-VF arbiter weights have no 22.11 call).
What it does not: mirroring (no rte_flow SAMPLE in the 22.11 ixgbe PMD), VF counters (the original read VF registers directly;
no 22.11 call), the PF's spoofed-frame counter (register 0x08780, no call), the per-VF queue-drop window
(PFQDE), disabling the default pool, VF queue-ready probe (RXDCTL), link state, guaranteed rate.
"""

from __future__ import annotations

from vfd.capabilities import Feature as F
from vfd.policy import mailbox as mbx

from vfd.errors import BackendError

from . import ffi as real_ffi
from .adapter import PmdAdapter, classes, narrowed_profile, percentages

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
    F.MAILBOX, F.QOS,
})
# The 82599's VMDq+DCB modes: (pools, traffic classes per pool); the PF's VFs must fit in the pools.
DCB_MODES = ((real_ffi.RTE_ETH_16_POOLS, 8), (real_ffi.RTE_ETH_32_POOLS, 4))


def dcb_mode(vfs_count: int) -> tuple[int, int] | None:
    return next((m for m in DCB_MODES if vfs_count <= m[0]), None)


class IxgbeAdapter(PmdAdapter):
    family = "ixgbe"
    driver = "net_ixgbe"
    profile = PROFILE
    nb_tcs = 0                          # traffic classes of the VMDq+DCB mode (0: QoS off)

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.tc_rates: dict[int, dict[int, int]] = {}   # vf -> tc -> queue rate (Mb/s) from the last apply_qos

    # ---- QoS -------------------------------------------------------------------------------------
    def port_conf(self, conf, pf, vfs_count, qos) -> None:
        """VMDq+DCB: one pool per VF with one queue per TC; user priority p goes to TC p when p is a configured
        class (any p < the mode's TCs when none is), else to the lowest class; ETS bandwidth (priority groups) on."""
        if not qos:
            return
        mode = dcb_mode(vfs_count)
        if mode is None:
            raise BackendError(self.pf_id, "enable_qos", f"driver {self.driver} runs VMDq+DCB with at most "
                               f"{DCB_MODES[-1][0]} pools; the PF has {vfs_count} VFs")
        pools, tcs = mode
        wide = [t.pri for t in pf.tclasses if t.pri >= tcs]
        if wide:
            raise BackendError(self.pf_id, "tclasses", f"traffic class {wide[0]}: with {vfs_count} VFs driver "
                               f"{self.driver} has {pools} pools of {tcs} traffic classes (0..{tcs - 1})")
        conf.rxmode.mq_mode = real_ffi.RTE_ETH_MQ_RX_VMDQ_DCB
        conf.txmode.mq_mode = real_ffi.RTE_ETH_MQ_TX_VMDQ_DCB
        rx, tx = conf.rx_adv_conf.vmdq_dcb_conf, conf.tx_adv_conf
        rx.nb_queue_pools = tx.nb_queue_pools = pools
        pris = sorted(t.pri for t in pf.tclasses)
        for up in range(real_ffi.RTE_ETH_DCB_NUM_USER_PRIORITIES):
            own = up < tcs and (up in pris or not pris)
            rx.dcb_tc[up] = tx.dcb_tc[up] = up if own else (pris[0] if pris else 0)
        conf.dcb_capability_en = real_ffi.RTE_ETH_DCB_PG_SUPPORT
        self.nb_tcs = tcs

    def apply_qos(self, tclasses, shares, link_speed, programs) -> None:
        """TC weights: the classes' min_bw as percentages over the mode's TCs (a TC with shares but no class
        weighs as a default class, min_bw 1; with no class at all every TC does).  Each VF's queue for TC t is limited to link x weight(t) x
        share(vf, t), so the limits add up to at most the link speed (which the PMD requires of the sum of all
        queue rates), and never above the class's max_bw or the VF's own rate.  Queues of TCs no priority maps
        to carry nothing and are left unlimited (0)."""
        if not self.nb_tcs:
            self.unsupported("enable_qos", None, "QoS without VMDq+DCB in the port configuration")
        if link_speed <= 0:
            raise BackendError(self.pf_id, "enable_qos", "the PF's link speed is unknown; set 'speed' (Mb/s) on the PF")
        by_tc = classes(tclasses, shares, self.nb_tcs)
        weights = percentages({tc: by_tc[tc]["min_bw"] if tc in by_tc else 0 for tc in range(self.nb_tcs)})
        self.call("enable_qos", None, "rte_pmd_ixgbe_set_tc_bw_alloc", self.port,
                  [weights[tc] for tc in range(self.nb_tcs)])
        gone = set(self.tc_rates) - set(shares)
        self.tc_rates = {}
        for vf in sorted(gone):              # deleted since the last pass: its queues lose their TC limits
            self.call("qos", vf, "rte_pmd_ixgbe_set_vf_rate_limit", self.port, vf, 0, RATE_QUEUE_MASK)
        for vf, share in sorted(shares.items()):
            rates = {}
            for tc, pct in share.items():
                if tc in by_tc:
                    cap = link_speed * by_tc[tc]["max_bw"] // 100
                    rates[tc] = max(1, min(cap, link_speed * weights[tc] * pct // 10000))
            self.tc_rates[vf] = rates
            prog = programs.get(vf)
            self._queue_rates(vf, prog.max_rate if prog is not None else 0)

    def _queue_rates(self, vfid: int, max_rate: int) -> None:
        """Without QoS one call caps every queue of the VF's pool; with QoS each TC's queue gets its own limit
        (the lower of the VF's rate and its TC share; 0, no limit, for a TC that carries nothing)."""
        rates = self.tc_rates.get(vfid)
        if not rates:
            self.call("max_rate", vfid, "rte_pmd_ixgbe_set_vf_rate_limit", self.port, vfid, max_rate, RATE_QUEUE_MASK)
            return
        for tc in range(self.nb_tcs):
            limit = min(rates[tc], max_rate) if tc in rates and max_rate else rates.get(tc, 0)
            self.call("qos", vfid, "rte_pmd_ixgbe_set_vf_rate_limit", self.port, vfid, limit, 1 << tc)

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
        self._queue_rates(vfid, max_rate)

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
