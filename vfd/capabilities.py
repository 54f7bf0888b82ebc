"""What a NIC family (driver) can do to a VF, declared once and checked at admission.

A backend reports a `DriverProfile` per PF; admission refuses any config needing a feature the
profile lacks, naming the feature and the driver. The sim backend uses these profiles as its
model of each NIC family (table in docs/sim.md); the kernel and dpdk backends narrow them to
what their interface can reach.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Feature(str, enum.Enum):
    VLAN_FILTER = "VLAN filter list"          # several VLANs, or one VLAN the guest tags itself
    VLAN_STRIP = "VLAN strip"
    VLAN_INSERT = "VLAN insert"
    STRIP_INSERT_SPLIT = "separate VLAN strip and insert"  # strip without insert or the reverse
    QINQ = "802.1ad (QinQ) outer VLAN"
    VLAN_PCP = "VLAN priority (PCP) on the port VLAN"
    CTAG_STRIP = "inner (C-tag) VLAN strip"
    MAC_ALLOWLIST = "MAC allow-list (more than one MAC)"
    MAC_ANTI_SPOOF = "MAC anti-spoof control"
    VLAN_ANTI_SPOOF = "VLAN anti-spoof control"
    BCAST_GATE = "broadcast admission control"
    MCAST_GATE = "multicast admission control"
    UUCAST_GATE = "unknown-unicast admission control"
    UNTAGGED_GATE = "untagged-frame admission control"
    MAX_RATE = "TX rate limit"
    MIN_RATE = "guaranteed TX rate"
    LINK_STATE = "forced VF link state"
    MIRROR = "VF mirroring"
    LOOPBACK = "PF TX loopback (VEB)"
    VF_STATS = "per-VF counters"
    MAILBOX = "VF mailbox policing"
    QOS = "per-TC QoS (DCB)"


@dataclass(frozen=True)
class DriverProfile:
    driver: str
    features: frozenset[Feature]
    max_vfs: int
    mac_table_size: int          # MAC filter entries for all VFs of one PF
    vlan_filter_size: int = 64   # distinct VLAN ids in the PF's VF VLAN filter
    # What the NIC does when a control is absent: {config field: fixed value}. A config asking
    # for another value is refused; one asking for this value (or leaving the default) is fine.
    fixed: dict[str, bool] = field(default_factory=dict)
    # Driver default for mac_anti_spoof when the config leaves it out.
    mac_anti_spoof_default: bool = False
    # Pairs of config fields driven by one hardware control (must be equal).
    coupled: tuple[tuple[str, str, str], ...] = ()
    # (field, requires-field, why): when field is true, requires-field must be true too.
    requires: tuple[tuple[str, str, str], ...] = ()

    def has(self, feature: Feature) -> bool:
        return feature in self.features

    def narrowed(self, keep: frozenset[Feature], driver: str | None = None, **changes) -> "DriverProfile":
        """The same NIC family seen through a narrower interface (kernel netlink, DPDK 22.11)."""
        values = dict(
            driver=driver or self.driver, features=self.features & keep, max_vfs=self.max_vfs,
            mac_table_size=self.mac_table_size, vlan_filter_size=self.vlan_filter_size,
            fixed=dict(self.fixed), mac_anti_spoof_default=self.mac_anti_spoof_default,
            coupled=self.coupled, requires=self.requires,
        )
        values.update(changes)
        return DriverProfile(**values)


F = Feature
_DPDK_COMMON = {F.VLAN_FILTER, F.VLAN_STRIP, F.VLAN_INSERT, F.STRIP_INSERT_SPLIT, F.VLAN_PCP, F.MAC_ALLOWLIST,
                F.MAC_ANTI_SPOOF, F.VLAN_ANTI_SPOOF, F.BCAST_GATE, F.MCAST_GATE, F.UUCAST_GATE,
                F.LOOPBACK, F.VF_STATS, F.MAILBOX, F.MIRROR}

# The NIC families the original VFd drove (reference 5.3) with the PF API each offers.
PROFILES: dict[str, DriverProfile] = {
    # Intel 82599/X540: 64 pools, 128 receive-address entries; VLAN anti-spoof only works with
    # MAC anti-spoof on (why the original forced it on).
    "ixgbe": DriverProfile(
        driver="ixgbe",
        features=frozenset(_DPDK_COMMON | {F.UNTAGGED_GATE, F.MAX_RATE, F.QOS}),
        max_vfs=63, mac_table_size=128, mac_anti_spoof_default=True,
        requires=(("vlan_anti_spoof", "mac_anti_spoof",
                   "82599 VLAN anti-spoof needs MAC anti-spoof on"),),
    ),
    "i40e": DriverProfile(
        driver="i40e",
        features=frozenset(_DPDK_COMMON | {F.UNTAGGED_GATE, F.MAX_RATE, F.QOS}),
        max_vfs=128, mac_table_size=512,
    ),
    "bnxt": DriverProfile(
        driver="bnxt",
        features=frozenset(_DPDK_COMMON | {F.MAX_RATE}),
        max_vfs=128, mac_table_size=256, fixed={"allow_untagged": False},
    ),
    # Mellanox ConnectX: driven through the kernel driver (ip link + OFED sriov sysfs); multicast
    # and unknown-unicast both follow the VF's trust bit; no broadcast gate, no loopback control.
    "mlx5": DriverProfile(
        driver="mlx5",
        features=frozenset({F.VLAN_FILTER, F.VLAN_STRIP, F.VLAN_INSERT, F.VLAN_PCP, F.QINQ, F.CTAG_STRIP,
                            F.MAC_ALLOWLIST, F.MAC_ANTI_SPOOF, F.MCAST_GATE, F.UUCAST_GATE,
                            F.UNTAGGED_GATE, F.MAX_RATE, F.MIN_RATE, F.LINK_STATE, F.MIRROR,
                            F.VF_STATS, F.QOS}),
        max_vfs=127, mac_table_size=1024,
        fixed={"allow_bcast": True, "vlan_anti_spoof": True},
        coupled=(("allow_mcast", "allow_un_ucast",
                  "mlx5 gates multicast and unknown unicast with one control, the VF trust bit"),),
    ),
}


def profile_for(driver: str) -> DriverProfile:
    try:
        return PROFILES[driver]
    except KeyError:
        raise KeyError(f"no capability profile for driver {driver!r}; known: {', '.join(PROFILES)}") from None


def check_pf_settings(pf_id: str, backend: str, profile: DriverProfile, *, enable_loopback: bool,
                      enable_qos: bool) -> None:
    """The PF-level settings of the main config against what the PF's driver can do. Pure: start-up
    calls it before programming a PF, `vfd --check` with the profile it can know without a NIC, so
    both refuse the same configs with the same message."""
    from vfd.errors import BackendError
    if enable_loopback and not profile.has(Feature.LOOPBACK):
        raise BackendError(pf_id, "enable_loopback", f"driver {profile.driver} has no PF TX loopback control")
    if enable_qos and not profile.has(Feature.QOS):
        raise BackendError(pf_id, "enable_qos", f"per-TC QoS (DCB) is not supported by driver {profile.driver} "
                                                f"on the {backend} backend")
