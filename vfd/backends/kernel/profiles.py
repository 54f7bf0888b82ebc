"""What each PF driver can do to a VF through rtnetlink (`ip link set PF vf N ...`), as a DriverProfile.

rtnetlink reaches one default MAC, one port VLAN (strip and insert together, with a PCP and a TPID),
spoofchk, trust, a max and a min TX rate and a forced link state per VF. It has no VLAN filter list,
no separate strip/insert, no broadcast / multicast / unknown-unicast / untagged gates, no loopback,
no mirroring and no MAC allow-list, so the kernel profile of every driver lacks those features, and
admission refuses configs that need them, naming the feature and the driver. Switchdev mode
(`switchdev_profile`, below) adds rates, mirroring and QoS through devlink, tc and dcbnl.

Per driver, the table below says which of the reachable ops the driver implements (its
`ndo_set_vf_*`) and which it refuses. Source: the drivers of Debian's 6.1 kernel
(`linux-source-6.1`, drivers/net/ethernet/...), read for this table; netdevsim was also run
(tools/kernel-lab). See docs/kernel.md for the table in prose and its sources.

The trust mapping (docs/kernel.md): the VF trust bit is what lets a guest turn on promiscuous or
all-multicast mode (and lifts the untrusted VF's MAC / multicast filter budget). vfd turns it on
exactly when the config asks for unknown unicast (`allow_un_ucast: true`); multicast is then
allowed as well. Without trust a guest still receives broadcast and the multicast groups it joins
(within the driver's budget), so `allow_bcast` and `allow_mcast` are fixed `true` on this backend
and an explicit `false` is refused rather than silently not enforced.
"""

from __future__ import annotations

from dataclasses import dataclass

from vfd.capabilities import PROFILES, DriverProfile, Feature

F = Feature

# What rtnetlink can express at all, for any driver.
RTNETLINK_FEATURES = frozenset({
    F.VLAN_STRIP, F.VLAN_INSERT,      # the port VLAN: always both (no STRIP_INSERT_SPLIT)
    F.VLAN_PCP,                       # its qos (802.1p priority)
    F.QINQ,                           # IFLA_VF_VLAN_LIST proto 802.1ad
    F.MAC_ANTI_SPOOF,                 # spoofchk
    F.VLAN_ANTI_SPOOF,                # only where spoofchk also switches VLAN anti-spoof (ixgbe)
    F.UUCAST_GATE,                    # trust (see the trust mapping above)
    F.MAX_RATE, F.MIN_RATE,           # IFLA_VF_RATE
    F.LINK_STATE,                     # IFLA_VF_LINK_STATE
    F.VF_STATS,                       # IFLA_VF_STATS (read only)
})

# Behaviour of the controls rtnetlink lacks; a config asking for the other value is refused.
KERNEL_FIXED = {
    "allow_bcast": True,       # no broadcast gate: VFs always receive broadcast
    "allow_mcast": True,       # joined multicast groups always reach the VF; trust lifts the budget
    "allow_untagged": False,   # no untagged-frame control (the port VLAN tags what the VF sends)
    "vlan_anti_spoof": True,   # with a port VLAN the NIC tags every frame: the guest cannot pick a VLAN
}


@dataclass(frozen=True)
class KernelDriver:
    """One row of the capability table (docs/kernel.md)."""
    name: str
    qinq: bool                 # 802.1ad port VLAN accepted
    min_rate: bool             # min_tx_rate accepted
    link_state: bool           # ndo_set_vf_link_state present
    vf_stats: bool             # ndo_get_vf_stats present (otherwise counters read 0)
    spoofchk_default: bool     # spoofchk of a fresh VF
    max_vfs: int               # when sysfs has no sriov_totalvfs
    spoofchk_is_vlan_too: bool = False
    verified: str = "driver source (Debian linux-source-6.1)"
    notes: str = ""


DRIVERS: dict[str, KernelDriver] = {d.name: d for d in (
    KernelDriver("ice", qinq=True, min_rate=True, link_state=True, vf_stats=True, spoofchk_default=True,
                 max_vfs=256, notes="802.1ad needs the NIC in double VLAN mode (else EPROTONOSUPPORT); "
                                    "min_tx_rate refused while DCB is active"),
    KernelDriver("i40e", qinq=False, min_rate=False, link_state=True, vf_stats=True, spoofchk_default=True,
                 max_vfs=128, notes="min_tx_rate gives EINVAL (sriov-cni PR #107); 802.1ad EPROTONOSUPPORT"),
    KernelDriver("ixgbe", qinq=False, min_rate=False, link_state=True, vf_stats=True, spoofchk_default=True,
                 max_vfs=63, spoofchk_is_vlan_too=True,
                 notes="min_tx_rate gives EINVAL; spoofchk switches MAC and VLAN anti-spoofing together"),
    KernelDriver("igb", qinq=False, min_rate=False, link_state=False, vf_stats=False, spoofchk_default=True,
                 max_vfs=7, notes="no ndo_set_vf_link_state (sriov-cni docs); min_tx_rate EINVAL"),
    KernelDriver("mlx5_core", qinq=False, min_rate=True, link_state=True, vf_stats=True, spoofchk_default=False,
                 max_vfs=127, notes="upstream legacy-mode VF VLAN refuses 802.1ad (EPROTONOSUPPORT); "
                                    "vendor (OFED) drivers may differ"),
    KernelDriver("bnxt_en", qinq=False, min_rate=True, link_state=True, vf_stats=False, spoofchk_default=False,
                 max_vfs=128, notes="802.1ad EPROTONOSUPPORT; no ndo_get_vf_stats; min_tx_rate <= link speed"),
    KernelDriver("netdevsim", qinq=True, min_rate=True, link_state=True, vf_stats=False, spoofchk_default=False,
                 max_vfs=4, verified="run in tools/kernel-lab (Debian 6.1 kernel) and its source",
                 notes="stores and echoes every setting; VF stats always 0; no VF netdevs or PCI functions"),
)}

# sysfs driver names -> table row and the vfd.capabilities family (for MAC/VLAN table sizes).
ALIASES = {"mlx5": "mlx5_core", "bnxt": "bnxt_en"}
FAMILY = {"ixgbe": "ixgbe", "i40e": "i40e", "bnxt_en": "bnxt", "mlx5_core": "mlx5"}

# A driver not in the table: everything rtnetlink reaches is tried; a refusal at run time is
# reported (BackendError naming the op and the driver) and the VF is left as it was.
UNKNOWN = KernelDriver("?", qinq=True, min_rate=True, link_state=True, vf_stats=True, spoofchk_default=False,
                       max_vfs=256, verified="not in the table", notes="ops the driver lacks fail at run time")


def driver_row(driver: str) -> KernelDriver:
    return DRIVERS.get(ALIASES.get(driver, driver), UNKNOWN)


def kernel_profile(driver: str, max_vfs: int | None = None) -> DriverProfile:
    """The DriverProfile of a PF on `driver` seen through rtnetlink."""
    row = driver_row(driver)
    keep = set(RTNETLINK_FEATURES)
    if not row.qinq:
        keep.discard(F.QINQ)
    if not row.min_rate:
        keep.discard(F.MIN_RATE)
    if not row.link_state:
        keep.discard(F.LINK_STATE)
    if not row.vf_stats:
        keep.discard(F.VF_STATS)
    fixed = dict(KERNEL_FIXED)
    coupled: tuple[tuple[str, str, str], ...] = ()
    if row.spoofchk_is_vlan_too:
        fixed.pop("vlan_anti_spoof")
        coupled = (("mac_anti_spoof", "vlan_anti_spoof",
                    f"{driver}'s spoofchk switches MAC and VLAN anti-spoofing together"),)
    else:
        keep.discard(F.VLAN_ANTI_SPOOF)
    vfs = max_vfs if max_vfs else row.max_vfs
    family = PROFILES.get(FAMILY.get(ALIASES.get(driver, driver), ""))
    # One MAC per VF (no allow-list); port VLANs are per VF, except ixgbe's shared 64-entry VLVF table.
    vlan_size = family.vlan_filter_size if (family is not None and row.name == "ixgbe") else 4095
    base = family or DriverProfile(driver=driver, features=frozenset(), max_vfs=vfs, mac_table_size=vfs)
    return base.narrowed(
        frozenset(keep), driver=driver, features=frozenset(keep), max_vfs=vfs,
        mac_table_size=max(vfs, 1), vlan_filter_size=vlan_size, fixed=fixed,
        mac_anti_spoof_default=row.spoofchk_default, coupled=coupled, requires=(),
    )


# What switchdev mode adds (switchdev.py): rates through devlink rate leaves, mirrors through tc on
# the VF representors, per-TC QoS through dcbnl and devlink rate tc-bw (refused at start-up where
# the kernel or the driver lacks them).
SWITCHDEV_FEATURES = frozenset({F.MAX_RATE, F.MIN_RATE, F.MIRROR, F.QOS})


def switchdev_profile(profile: DriverProfile) -> DriverProfile:
    """The PF's kernel profile with what switchdev mode reaches."""
    return DriverProfile(**{**profile.__dict__, "features": profile.features | SWITCHDEV_FEATURES})
