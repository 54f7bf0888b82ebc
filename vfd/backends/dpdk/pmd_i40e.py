"""i40e (Intel X710 / XL710 "Fortville", DPDK driver net_i40e): the original's vfd_i40e.c on the 22.11 API.

What 22.11 reaches (rte_pmd_i40e.h): VLAN filter, default MAC, allow-list add, VLAN and MAC anti-spoof,
strip and insert, broadcast / multicast-promiscuous / unicast-promiscuous per VF, TX max bandwidth
(multiples of 50 Mb/s; the original had no rate on i40e), TX loopback, VF counters, VF ping, the mailbox.

Allow-list removal: rte_pmd_i40e_remove_vf_mac_addr is declared in the 22.11 header but not exported by
librte_net_i40e.so.23, and ethdev's generic mac_addr_remove works on the PF's own VSI, not the VF's.  What
22.11 does offer: rte_pmd_i40e_set_vf_mac_addr "will remove all existing MAC filters" of the VF.  So when an
allow-list MAC must go (update or delete) or the default changes, this adapter sets the default (wiping the
VF's MAC filters) and adds back the default and every remaining allow-list MAC.  Side effect: filters the
guest added itself (multicast addresses) are wiped too until the guest re-adds them; plain re-applies (link
up, refresh after reset) do not wipe.

QoS (enable_qos): per VF, rte_pmd_i40e_set_vf_tc_bw_alloc (how the VF's bandwidth splits over its TCs) and
rte_pmd_i40e_set_vf_tc_max_bw (each TC's cap), then rte_pmd_i40e_set_tc_strict_prio for the PF; the VF's
overall cap stays rte_pmd_i40e_set_vf_max_bw (its rate, step 4).  The TCs themselves come from the NIC's DCB
configuration (firmware DCBX); the PMD refuses (EINVAL) weights for a different number of TCs.

Read-back: only the default MAC (rte_pmd_i40e_query_vfid_by_mac); no other VF setting has a getter.

Not reached: mirroring (no SAMPLE action in the 22.11 i40e flow engine: the start-up probe refuses it), an
untagged-frame receive gate (rte_pmd_i40e_set_vf_vlan_tag selects which frames
the VF may *send*; the original left it commented out), link state, guaranteed rate, the PF spoof counter
other than the sum of VF TX errors (what the original showed), a queue probe other than the
ENABLE/DISABLE_QUEUES messages.
"""

from __future__ import annotations

import errno

from vfd.capabilities import Feature as F
from vfd.errors import BackendError
from vfd.policy import mailbox as mbx

from . import ffi as real_ffi
from .adapter import PmdAdapter, classes, narrowed_profile, percentages

RATE_GRANULARITY = 50   # I40E_QOS_BW_GRANULARITY: rte_pmd_i40e_set_vf_max_bw refuses other values

PROFILE = narrowed_profile("i40e", "net_i40e", {
    F.VLAN_FILTER, F.VLAN_STRIP, F.VLAN_INSERT, F.STRIP_INSERT_SPLIT, F.MAC_ALLOWLIST, F.MAC_ANTI_SPOOF,
    F.VLAN_ANTI_SPOOF, F.BCAST_GATE, F.MCAST_GATE, F.UUCAST_GATE, F.MAX_RATE, F.LOOPBACK, F.VF_STATS, F.MAILBOX,
    F.QOS,
}, fixed={"allow_untagged": False})


def rate_to_bw(max_rate: int) -> int:
    """Mb/s -> the nearest multiple of 50 (at least 50 when a limit is asked for)."""
    if max_rate <= 0:
        return 0
    return max(RATE_GRANULARITY, int(round(max_rate / RATE_GRANULARITY)) * RATE_GRANULARITY)


class I40eAdapter(PmdAdapter):
    family = "i40e"
    driver = "net_i40e"
    profile = PROFILE

    def set_loopback(self, on: bool) -> None:
        self.call("enable_loopback", None, "rte_pmd_i40e_set_tx_loopback", self.port, bool(on))

    def ping_vfs(self, vfids: list[int]) -> None:
        for vf in vfids:
            self.call("ping", vf, "rte_pmd_i40e_ping_vfs", self.port, vf)

    def set_vlan_filter(self, vfid, add, remove) -> None:
        for vlan in remove:
            self.call("vlans", vfid, "rte_pmd_i40e_set_vf_vlan_filter", self.port, vlan, 1 << vfid, False)
        for vlan in add:
            self.call("vlans", vfid, "rte_pmd_i40e_set_vf_vlan_filter", self.port, vlan, 1 << vfid, True)

    def set_macs(self, vfid, default, allow, added, removed, set_default, default_changed=True) -> None:
        if set_default and default and not default_changed and not removed:
            # a full re-apply (refresh, drift repair) keeps the guest's filters unless the PMD lost the default
            default_changed = self.ffi.call("rte_pmd_i40e_query_vfid_by_mac", self.port, default,
                                            check=False) != vfid
        if removed or (set_default and default_changed):
            # set_vf_mac_addr wipes every MAC filter of the VF: add back the default and the whole allow-list
            if default:
                self.call("mac", vfid, "rte_pmd_i40e_set_vf_mac_addr", self.port, vfid, default)
            for mac in reversed(allow):
                self.call("macs", vfid, "rte_pmd_i40e_add_vf_mac_addr", self.port, vfid, mac)
            if default:
                self.call("mac", vfid, "rte_pmd_i40e_add_vf_mac_addr", self.port, vfid, default)
            return
        for mac in reversed(added):
            self.call("macs", vfid, "rte_pmd_i40e_add_vf_mac_addr", self.port, vfid, mac)
        if set_default and default:     # unchanged default on a full re-apply: make sure its filter is there
            self.call("mac", vfid, "rte_pmd_i40e_add_vf_mac_addr", self.port, vfid, default)

    def set_rates(self, vfid, max_rate, min_rate) -> None:
        if min_rate:
            self.unsupported("min_rate", vfid, "guaranteed VF TX rate")
        self.call("max_rate", vfid, "rte_pmd_i40e_set_vf_max_bw", self.port, vfid, rate_to_bw(max_rate))

    def set_anti_spoof(self, vfid, vlan=None, mac=None) -> None:
        if vlan is not None:
            self.call("vlan_anti_spoof", vfid, "rte_pmd_i40e_set_vf_vlan_anti_spoof", self.port, vfid, vlan)
        if mac is not None:
            self.call("mac_anti_spoof", vfid, "rte_pmd_i40e_set_vf_mac_anti_spoof", self.port, vfid, mac)

    def set_strip_insert(self, vfid, strip=None, insert=None) -> None:
        if strip is not None:
            self.call("strip", vfid, "rte_pmd_i40e_set_vf_vlan_stripq", self.port, vfid, strip)
        if insert is not None:
            self.call("insert", vfid, "rte_pmd_i40e_set_vf_vlan_insert", self.port, vfid, insert)

    def set_rxmode(self, vfid, bcast=None, mcast=None, uucast=None, untagged=None, insert=0) -> None:
        if bcast is not None:
            self.call("bcast", vfid, "rte_pmd_i40e_set_vf_broadcast", self.port, vfid, bcast)
        if mcast is not None:
            self.call("mcast", vfid, "rte_pmd_i40e_set_vf_multicast_promisc", self.port, vfid, mcast)
        if uucast is not None:
            self.call("uucast", vfid, "rte_pmd_i40e_set_vf_unicast_promisc", self.port, vfid, uucast)
        if untagged:
            self.unsupported("allow_untagged", vfid, "untagged-frame receive gate")

    # ---- QoS -------------------------------------------------------------------------------------
    def apply_qos(self, tclasses, shares, link_speed, programs) -> None:
        """Per VF: its TC weights are its guaranteed bandwidth in each class (class min_bw x the VF's share),
        as percentages of their sum (each at least 1: the PMD refuses 0); each TC capped at the class's max_bw
        (multiples of 50 Mb/s).  Then the PF's strict-priority TCs (`lsp`).  TC numbers are the classes' order."""
        if link_speed <= 0:
            raise BackendError(self.pf_id, "enable_qos", "the PF's link speed is unknown; set 'speed' (Mb/s) on the PF")
        order = [c for _, c in sorted(classes(tclasses, shares).items())]
        for vf, share in sorted(shares.items()):
            pct = percentages({i: max(1, t["min_bw"] * share.get(t["pri"], 0)) for i, t in enumerate(order)})
            weights = [pct[i] for i in range(len(order))]
            while 0 in weights:             # at least 1 each, still 100 in total
                weights[weights.index(max(weights))] -= 1
                weights[weights.index(0)] = 1
            self.call("enable_qos", vf, "rte_pmd_i40e_set_vf_tc_bw_alloc", self.port, vf, weights)
            for i, t in enumerate(order):
                self.call("enable_qos", vf, "rte_pmd_i40e_set_vf_tc_max_bw", self.port, vf, i,
                          rate_to_bw(link_speed * t["max_bw"] // 100))
        strict = sum(1 << i for i, t in enumerate(order) if t.get("lsp"))
        self.call("enable_qos", None, "rte_pmd_i40e_set_tc_strict_prio", self.port, strict)

    # ---- read-back -----------------------------------------------------------------------------------
    verifiable = frozenset({"mac"})

    def read_back(self, vfid, rec, program):
        """The default MAC, confirmed by rte_pmd_i40e_query_vfid_by_mac ("find VF index based on VF MAC
        address"): reported when the PMD maps it to this VF, None when it does not.  A guest-approved default
        stands for the configured one (it is what every apply sets)."""
        candidate = rec.effective_default(program) or rec.default
        if candidate is None:
            return {"mac": None}
        rc = self.ffi.call("rte_pmd_i40e_query_vfid_by_mac", self.port, candidate, check=False)
        if rc == -errno.EINVAL or (rc >= 0 and rc != vfid):
            return {"mac": None}
        if rc < 0:
            raise real_ffi.DpdkError("rte_pmd_i40e_query_vfid_by_mac", rc)
        configured = program.mac if program is not None else None
        return {"mac": configured if configured and candidate in (configured, rec.guest_mac) else candidate}

    def queue_ready(self, vfid, rec):
        return rec.queues_ready

    def vf_stats(self, vfid):
        s = real_ffi.stats_dict(self.call("vf_stats", vfid, "rte_pmd_i40e_get_vf_stats", self.port, vfid))
        return {"rx_pkts": s["ipackets"], "rx_bytes": s["ibytes"], "rx_errors": s["ierrors"], "rx_dropped": 0,
                "tx_pkts": s["opackets"], "tx_bytes": s["obytes"], "tx_errors": s["oerrors"], "spoofed": 0}

    def spoof_count(self, vfids):
        """The original's i40e Spoofed column: the sum of the VFs' TX errors."""
        return sum(int(self.call("vf_stats", vf, "rte_pmd_i40e_get_vf_stats", self.port, vf).oerrors) for vf in vfids)

    def decode_mbox(self, ret_param):
        p = real_ffi.i40e_mb_param(ret_param)
        data = real_ffi.msg_bytes(p.msg, p.msglen)
        return int(p.vfid), int(p.msg_type), mbx.decode_i40e(int(p.msg_type), data), p.msg, int(p.msglen)

    def _set_retval(self, ret_param, verdict) -> None:
        real_ffi.i40e_mb_param(ret_param).retval = verdict

    def msg_name(self, msg_type: int) -> str:
        return mbx.VIRTCHNL_OP_NAMES.get(msg_type, str(msg_type))


ADAPTER = I40eAdapter
