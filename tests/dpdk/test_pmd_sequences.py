"""Per-PMD apply and teardown sequences (reference 5.2) and PF start-up (reference 5.1), against a recording
stand-in of the ffi layer: what each adapter would call in DPDK 22.11, in which order, with which arguments.

No DPDK library is loaded: tests/dpdk/recording_ffi.RecordingFfi has the real binding's function names and
checks each call against the real wrapper's signature.
"""

from __future__ import annotations

import ctypes
import errno

import pytest

from tests.vfdlab import keep_programs
from vfd.backends.dpdk import ffi
from vfd.backends.dpdk.adapter import NoVfApiAdapter, VFRecord, adapter_class, make_adapter
from vfd.backends.dpdk.backend import PROGRAM_FIELDS, DpdkBackend
from vfd.backends.dpdk.eal import PREFIX_ENV, eal_args
from vfd.capabilities import Feature
from vfd.errors import BackendError, CapabilityError
from vfd.model.mainconfig import MainConfig
from vfd.model.vfconfig import VFConfig
from vfd.policy import mailbox as mbx
from vfd.program import build_program

from .fakes import fake_port, main_config
from .recording_ffi import RecordingFfi

A, B, C, D, E = ("02:00:00:00:00:0a", "02:00:00:00:00:0b", "02:00:00:00:00:0c", "02:00:00:00:00:0d",
                 "02:00:00:00:00:0e")
PORT, VF, MASK = 0, 3, 1 << 3
BC, MC, UC, UT = (ffi.RTE_ETH_VMDQ_ACCEPT_BROADCAST, ffi.RTE_ETH_VMDQ_ACCEPT_MULTICAST,
                  ffi.RTE_ETH_VMDQ_ACCEPT_HASH_UC, ffi.RTE_ETH_VMDQ_ACCEPT_UNTAG)
DRIVERS = {"ixgbe": "net_ixgbe", "i40e": "net_i40e", "bnxt": "net_bnxt"}

# 5.2 step of every function an adapter may call (14 = PF re-assert after a VF change)
STEP = {
    "rte_pmd_ixgbe_set_vf_vlan_filter": 2, "rte_pmd_i40e_set_vf_vlan_filter": 2, "rte_pmd_bnxt_set_vf_vlan_filter": 2,
    "rte_eth_dev_mac_addr_add": 3, "rte_eth_dev_mac_addr_remove": 3, "rte_pmd_ixgbe_set_vf_mac_addr": 3, "rte_pmd_i40e_set_vf_mac_addr": 3,
    "rte_pmd_i40e_add_vf_mac_addr": 3, "rte_pmd_bnxt_set_vf_mac_addr": 3, "rte_pmd_bnxt_mac_addr_add": 3,
    "rte_pmd_ixgbe_set_vf_rate_limit": 4, "rte_pmd_i40e_set_vf_max_bw": 4, "rte_pmd_bnxt_set_vf_rate_limit": 4,
    "rte_pmd_bnxt_set_vf_persist_stats": 5,
    "rte_pmd_ixgbe_set_vf_vlan_anti_spoof": 6, "rte_pmd_i40e_set_vf_vlan_anti_spoof": 6, "rte_pmd_bnxt_set_vf_vlan_anti_spoof": 6,
    "rte_pmd_ixgbe_set_vf_mac_anti_spoof": 7, "rte_pmd_i40e_set_vf_mac_anti_spoof": 7, "rte_pmd_bnxt_set_vf_mac_anti_spoof": 7,
    "rte_pmd_ixgbe_set_vf_vlan_stripq": 8, "rte_pmd_ixgbe_set_vf_vlan_insert": 8, "rte_pmd_i40e_set_vf_vlan_stripq": 8,
    "rte_pmd_i40e_set_vf_vlan_insert": 8, "rte_pmd_bnxt_set_vf_vlan_stripq": 8, "rte_pmd_bnxt_set_vf_vlan_insert": 8,
    "rte_pmd_i40e_set_vf_broadcast": 9, "rte_pmd_i40e_set_vf_multicast_promisc": 10, "rte_pmd_i40e_set_vf_unicast_promisc": 11,
    "rte_eth_promiscuous_enable": 14, "rte_eth_promiscuous_disable": 14, "rte_eth_allmulticast_enable": 14, "rte_eth_dev_uc_all_hash_table_set": 14,
}
RXMODE_STEP = {BC: 9, MC: 10, UC: 11, UT: 11.5}


def step(call) -> float:
    name, args = call
    if name in ("rte_pmd_ixgbe_set_vf_rxmode", "rte_pmd_bnxt_set_vf_rxmode"):
        return RXMODE_STEP[args[2]]
    return STEP[name]


def program(family: str, speed: int = 10000, **cfg):
    data = {"pciid": "0000:07:00.0", "vfid": VF, **cfg}
    profile = adapter_class(DRIVERS[family]).profile
    return build_program(VFConfig.model_validate(data), profile, "dpdk", speed)


# the canonical program: two VLANs the guest tags, default MAC + allow-list (bnxt: default only), 10% rate,
# MAC anti-spoof on, broadcast on, multicast and unknown unicast off
def canonical(family: str, **over):
    cfg = dict(vlans=[10, 20], macs=[A, B, C] if family != "bnxt" else [A], rate=0.1, mac_anti_spoof=True,
               allow_bcast=True, allow_mcast=False, allow_un_ucast=False)
    cfg.update(over)
    return program(family, **cfg)


def adapter(family: str):
    f = RecordingFfi()
    return make_adapter(f, PORT, "0000:07:00.0", DRIVERS[family]), f


# ---- full apply: every step, in the order of reference 5.2 -------------------------------------------------

EXPECTED_FULL = {
    "ixgbe": [
        ("rte_pmd_ixgbe_set_vf_vlan_filter", (PORT, 10, MASK, True)),
        ("rte_pmd_ixgbe_set_vf_vlan_filter", (PORT, 20, MASK, True)),
        ("rte_eth_dev_mac_addr_add", (PORT, C, VF)),                     # allow-list in reverse order ...
        ("rte_eth_dev_mac_addr_add", (PORT, B, VF)),
        ("rte_pmd_ixgbe_set_vf_mac_addr", (PORT, VF, A)),            # ... the default last
        ("rte_pmd_ixgbe_set_vf_rate_limit", (PORT, VF, 1000, 0xFF)),
        ("rte_pmd_ixgbe_set_vf_vlan_anti_spoof", (PORT, VF, True)),
        ("rte_pmd_ixgbe_set_vf_mac_anti_spoof", (PORT, VF, True)),
        ("rte_pmd_ixgbe_set_vf_vlan_stripq", (PORT, VF, False)),
        ("rte_pmd_ixgbe_set_vf_vlan_insert", (PORT, VF, 0)),
        ("rte_pmd_ixgbe_set_vf_rxmode", (PORT, VF, BC, True)),
        ("rte_pmd_ixgbe_set_vf_rxmode", (PORT, VF, MC, False)),
        ("rte_pmd_ixgbe_set_vf_rxmode", (PORT, VF, UC, False)),
        ("rte_pmd_ixgbe_set_vf_rxmode", (PORT, VF, UT, False)),
    ],
    "i40e": [
        ("rte_pmd_i40e_set_vf_vlan_filter", (PORT, 10, MASK, True)),
        ("rte_pmd_i40e_set_vf_vlan_filter", (PORT, 20, MASK, True)),
        ("rte_pmd_i40e_set_vf_mac_addr", (PORT, VF, A)),             # 22.11: wipes the VF's MAC filters first ...
        ("rte_pmd_i40e_add_vf_mac_addr", (PORT, VF, C)),             # ... allow-list in reverse order ...
        ("rte_pmd_i40e_add_vf_mac_addr", (PORT, VF, B)),
        ("rte_pmd_i40e_add_vf_mac_addr", (PORT, VF, A)),             # ... the default's filter last
        ("rte_pmd_i40e_set_vf_max_bw", (PORT, VF, 1000)),
        ("rte_pmd_i40e_set_vf_vlan_anti_spoof", (PORT, VF, True)),
        ("rte_pmd_i40e_set_vf_mac_anti_spoof", (PORT, VF, True)),
        ("rte_pmd_i40e_set_vf_vlan_stripq", (PORT, VF, False)),
        ("rte_pmd_i40e_set_vf_vlan_insert", (PORT, VF, 0)),
        ("rte_pmd_i40e_set_vf_broadcast", (PORT, VF, True)),
        ("rte_pmd_i40e_set_vf_multicast_promisc", (PORT, VF, False)),
        ("rte_pmd_i40e_set_vf_unicast_promisc", (PORT, VF, False)),
    ],
    "bnxt": [
        ("rte_pmd_bnxt_set_vf_vlan_filter", (PORT, 10, MASK, True)),
        ("rte_pmd_bnxt_set_vf_vlan_filter", (PORT, 20, MASK, True)),
        ("rte_pmd_bnxt_set_vf_mac_addr", (PORT, VF, A)),
        ("rte_pmd_bnxt_set_vf_rate_limit", (PORT, VF, 1000, 0x1)),
        ("rte_pmd_bnxt_set_vf_persist_stats", (PORT, VF, True)),
        ("rte_pmd_bnxt_set_vf_vlan_anti_spoof", (PORT, VF, True)),
        ("rte_pmd_bnxt_set_vf_mac_anti_spoof", (PORT, VF, True)),
        ("rte_pmd_bnxt_set_vf_vlan_stripq", (PORT, VF, False)),
        ("rte_pmd_bnxt_set_vf_vlan_insert", (PORT, VF, 0)),
        ("rte_pmd_bnxt_set_vf_rxmode", (PORT, VF, BC, True)),
        ("rte_pmd_bnxt_set_vf_rxmode", (PORT, VF, MC, False)),
        ("rte_pmd_bnxt_set_vf_rxmode", (PORT, VF, UC, False)),
    ],
}


@pytest.mark.parametrize("family", ["ixgbe", "i40e", "bnxt"])
def test_full_apply_sequence(family):
    ad, f = adapter(family)
    ad.apply(VF, VFRecord(), canonical(family), None)
    assert f.calls == EXPECTED_FULL[family]
    steps = [step(c) for c in f.calls]
    assert steps == sorted(steps), "calls out of reference 5.2 order"


@pytest.mark.parametrize("family", ["ixgbe", "i40e", "bnxt"])
def test_port_vlan_strip_and_insert(family):
    ad, f = adapter(family)
    ad.apply(VF, VFRecord(), program(family, vlans=[100], strip_stag=True), None)
    names = f.names()
    strip = names.index(f"rte_pmd_{family}_set_vf_vlan_stripq")
    assert f.calls[strip][1] == (PORT, VF, True)
    assert f.calls[strip + 1] == (f"rte_pmd_{family}_set_vf_vlan_insert", (PORT, VF, 100))


def test_strip_without_insert_has_no_insert():
    ad, f = adapter("ixgbe")
    ad.apply(VF, VFRecord(), program("ixgbe", vlans=[100], strip_stag=True, insert_stag=False), None)
    assert ("rte_pmd_ixgbe_set_vf_vlan_insert", (PORT, VF, 0)) in f.calls
    assert ("rte_pmd_ixgbe_set_vf_vlan_stripq", (PORT, VF, True)) in f.calls


# ---- update: only the differences -----------------------------------------------------------------------

@pytest.mark.parametrize("family", ["ixgbe", "i40e", "bnxt"])
def test_update_touches_only_differences(family):
    ad, f = adapter(family)
    rec = VFRecord()
    old = canonical(family)
    ad.apply(VF, rec, old, None)
    f.clear()
    new = canonical(family, vlans=[10, 30], allow_bcast=False)
    ad.apply(VF, rec, new, old)
    bcast = {"ixgbe": ("rte_pmd_ixgbe_set_vf_rxmode", (PORT, VF, BC, False)),
             "i40e": ("rte_pmd_i40e_set_vf_broadcast", (PORT, VF, False)),
             "bnxt": ("rte_pmd_bnxt_set_vf_rxmode", (PORT, VF, BC, False))}[family]
    assert f.calls == [(f"rte_pmd_{family}_set_vf_vlan_filter", (PORT, 20, MASK, False)),
                       (f"rte_pmd_{family}_set_vf_vlan_filter", (PORT, 30, MASK, True)), bcast]
    assert rec.vlans == {10, 30}
    f.clear()
    ad.apply(VF, rec, new, new)
    assert f.calls == []                                      # nothing differs: nothing touched


def test_update_allow_list_ixgbe_adds_and_removes():
    ad, f = adapter("ixgbe")
    rec = VFRecord()
    old = canonical("ixgbe")
    ad.apply(VF, rec, old, None)
    f.clear()
    ad.apply(VF, rec, canonical("ixgbe", macs=[A, B, D]), old)
    assert f.calls == [("rte_eth_dev_mac_addr_remove", (PORT, C)), ("rte_eth_dev_mac_addr_add", (PORT, D, VF))]
    f.clear()
    ad.apply(VF, rec, canonical("ixgbe", macs=[E, B, D]), canonical("ixgbe", macs=[A, B, D]))
    assert f.calls == [("rte_pmd_ixgbe_set_vf_mac_addr", (PORT, VF, E))]


def test_update_allow_list_i40e_removal_rebuilds_filters():
    """No per-VF MAC removal in 22.11: set_vf_mac_addr wipes the VF's filters, the rest is added back."""
    ad, f = adapter("i40e")
    rec = VFRecord()
    old = canonical("i40e")
    ad.apply(VF, rec, old, None)
    f.clear()
    ad.apply(VF, rec, canonical("i40e", macs=[A, B, D]), old)
    assert f.calls == [("rte_pmd_i40e_set_vf_mac_addr", (PORT, VF, A)), ("rte_pmd_i40e_add_vf_mac_addr", (PORT, VF, D)),
                       ("rte_pmd_i40e_add_vf_mac_addr", (PORT, VF, B)), ("rte_pmd_i40e_add_vf_mac_addr", (PORT, VF, A))]
    f.clear()                                                 # a pure addition does not wipe
    ad.apply(VF, rec, canonical("i40e", macs=[A, B, D, E]), canonical("i40e", macs=[A, B, D]))
    assert f.calls == [("rte_pmd_i40e_add_vf_mac_addr", (PORT, VF, E))]


def test_full_reapply_i40e_keeps_guest_filters():
    """A refresh (full re-apply, default unchanged) must not wipe what the guest added."""
    ad, f = adapter("i40e")
    rec = VFRecord()
    p = canonical("i40e")
    ad.apply(VF, rec, p, None)
    f.clear()
    ad.apply(VF, rec, p, None)
    assert "rte_pmd_i40e_set_vf_mac_addr" not in f.names()
    assert f.calls[2:6] == [("rte_pmd_i40e_query_vfid_by_mac", (PORT, A)),  # the PMD still has the default
                            ("rte_pmd_i40e_add_vf_mac_addr", (PORT, VF, C)), ("rte_pmd_i40e_add_vf_mac_addr", (PORT, VF, B)),
                            ("rte_pmd_i40e_add_vf_mac_addr", (PORT, VF, A))]


def test_guest_default_mac_kept_until_config_changes_it():
    ad, f = adapter("ixgbe")
    rec = VFRecord()
    p = canonical("ixgbe")
    ad.apply(VF, rec, p, None)
    rec.guest_mac = D                                         # approved SET_MAC_ADDR
    f.clear()
    ad.apply(VF, rec, p, None)                                # refresh: the guest's default stays
    assert ("rte_pmd_ixgbe_set_vf_mac_addr", (PORT, VF, D)) in f.calls
    f.clear()
    ad.apply(VF, rec, canonical("ixgbe", macs=[E]), p)        # the operator changes the default
    assert ("rte_pmd_ixgbe_set_vf_mac_addr", (PORT, VF, E)) in f.calls and rec.guest_mac is None


# ---- teardown ---------------------------------------------------------------------------------------------

def busy(family):
    """A program that turns on everything teardown must turn off."""
    macs = [A, B] if family != "bnxt" else [A]
    return program(family, vlans=[100], strip_stag=True, macs=macs, rate=0.1, mac_anti_spoof=True,
                   allow_bcast=False, allow_mcast=True, allow_un_ucast=True)


EXPECTED_TEARDOWN = {
    "ixgbe": [
        ("rte_pmd_ixgbe_set_vf_vlan_filter", (PORT, 100, MASK, False)),
        ("rte_pmd_ixgbe_set_vf_mac_anti_spoof", (PORT, VF, False)),
        ("rte_eth_dev_mac_addr_remove", (PORT, B)),
        ("rte_pmd_ixgbe_set_vf_mac_addr", (PORT, VF, "RANDOM")),
        ("rte_pmd_ixgbe_set_vf_rate_limit", (PORT, VF, 0, 0xFF)),
        ("rte_pmd_ixgbe_set_vf_vlan_stripq", (PORT, VF, False)),
        ("rte_pmd_ixgbe_set_vf_vlan_insert", (PORT, VF, 0)),
        ("rte_pmd_ixgbe_set_vf_rxmode", (PORT, VF, UC, False)),
        ("rte_pmd_ixgbe_set_vf_rxmode", (PORT, VF, MC, False)),
        ("rte_pmd_ixgbe_set_vf_rxmode", (PORT, VF, BC, True)),
        ("rte_pmd_ixgbe_set_vf_vlan_anti_spoof", (PORT, VF, False)),
    ],
    "i40e": [
        ("rte_pmd_i40e_set_vf_vlan_filter", (PORT, 100, MASK, False)),
        ("rte_pmd_i40e_set_vf_mac_anti_spoof", (PORT, VF, False)),
        ("rte_pmd_i40e_set_vf_mac_addr", (PORT, VF, "RANDOM")),       # wipes A and B
        ("rte_pmd_i40e_add_vf_mac_addr", (PORT, VF, "RANDOM")),
        ("rte_pmd_i40e_set_vf_max_bw", (PORT, VF, 0)),
        ("rte_pmd_i40e_set_vf_vlan_stripq", (PORT, VF, False)),
        ("rte_pmd_i40e_set_vf_vlan_insert", (PORT, VF, 0)),
        ("rte_pmd_i40e_set_vf_unicast_promisc", (PORT, VF, False)),
        ("rte_pmd_i40e_set_vf_multicast_promisc", (PORT, VF, False)),
        ("rte_pmd_i40e_set_vf_broadcast", (PORT, VF, True)),
        ("rte_pmd_i40e_set_vf_vlan_anti_spoof", (PORT, VF, False)),
    ],
    "bnxt": [
        ("rte_pmd_bnxt_set_vf_vlan_filter", (PORT, 100, MASK, False)),
        ("rte_pmd_bnxt_set_vf_mac_anti_spoof", (PORT, VF, False)),
        ("rte_pmd_bnxt_set_vf_mac_addr", (PORT, VF, "RANDOM")),
        ("rte_pmd_bnxt_set_vf_rate_limit", (PORT, VF, 0, 0x1)),
        ("rte_pmd_bnxt_set_vf_vlan_stripq", (PORT, VF, False)),
        ("rte_pmd_bnxt_set_vf_vlan_insert", (PORT, VF, 0)),
        ("rte_pmd_bnxt_set_vf_rxmode", (PORT, VF, UC, False)),
        ("rte_pmd_bnxt_set_vf_rxmode", (PORT, VF, MC, False)),
        ("rte_pmd_bnxt_set_vf_rxmode", (PORT, VF, BC, True)),
        ("rte_pmd_bnxt_set_vf_vlan_anti_spoof", (PORT, VF, False)),
    ],
}


@pytest.mark.parametrize("family", ["ixgbe", "i40e", "bnxt"])
def test_teardown_sequence(family):
    ad, f = adapter(family)
    rec = VFRecord()
    p = busy(family)
    ad.apply(VF, rec, p, None)
    f.clear()
    rnd = "06:11:22:33:44:55"
    ad.teardown(VF, rec, p, rnd)
    expected = [(n, tuple(rnd if a == "RANDOM" else a for a in args)) for n, args in EXPECTED_TEARDOWN[family]]
    assert f.calls == expected
    assert rec.vlans == set() and rec.allow == [] and rec.default == rnd


def test_teardown_of_unknown_vf_resets_gates_without_touching_macs():
    """clear_vf(previous=None) on a VF vfd never programmed (start-up): gates to defaults, no MAC change."""
    ad, f = adapter("ixgbe")
    ad.teardown(VF, VFRecord(), None, "06:11:22:33:44:55")
    assert "rte_pmd_ixgbe_set_vf_mac_addr" not in f.names() and "rte_pmd_ixgbe_set_vf_vlan_filter" not in f.names()
    assert f.names() == ["rte_pmd_ixgbe_set_vf_mac_anti_spoof", "rte_pmd_ixgbe_set_vf_rate_limit", "rte_pmd_ixgbe_set_vf_vlan_stripq",
                         "rte_pmd_ixgbe_set_vf_vlan_insert", "rte_pmd_ixgbe_set_vf_rxmode", "rte_pmd_ixgbe_set_vf_rxmode",
                         "rte_pmd_ixgbe_set_vf_rxmode", "rte_pmd_ixgbe_set_vf_rxmode", "rte_pmd_ixgbe_set_vf_vlan_anti_spoof"]


# ---- refusals: never silent -------------------------------------------------------------------------------

def test_no_vf_api_adapter_refuses_everything():
    f = RecordingFfi()
    ad = make_adapter(f, PORT, "net_null0", "net_null")
    assert isinstance(ad, NoVfApiAdapter) and ad.profile.driver == "net_null" and not ad.profile.features
    with pytest.raises(CapabilityError) as e:
        build_program(VFConfig.model_validate({"pciid": "net_null0", "vfid": 1, "vlans": [10]}), ad.profile,
                      "dpdk", 10000)
    assert "net_null" in str(e.value) and "VLAN filter" in str(e.value)
    with pytest.raises(BackendError, match="net_null has no VF API"):
        ad.apply(1, VFRecord(), canonical("ixgbe"), None)
    ad.teardown(1, VFRecord(), None, "06:00:00:00:00:01")
    assert f.calls == []


@pytest.mark.parametrize("family,feature", [("ixgbe", Feature.MIRROR), ("i40e", Feature.MIRROR),
                                            ("bnxt", Feature.MIRROR), ("bnxt", Feature.MAC_ALLOWLIST),
                                            ("i40e", Feature.UNTAGGED_GATE), ("bnxt", Feature.UNTAGGED_GATE),
                                            ("ixgbe", Feature.VF_STATS), ("ixgbe", Feature.LINK_STATE),
                                            ("i40e", Feature.MIN_RATE), ("bnxt", Feature.QOS)])
def test_profiles_lack_what_22_11_cannot_reach(family, feature):
    assert not adapter_class(DRIVERS[family]).profile.has(feature)


def test_profiles_refuse_with_driver_name():
    with pytest.raises(CapabilityError, match="VF mirroring is not supported by driver net_ixgbe"):
        program("ixgbe", vlans=[10], mirror={"target": 2, "direction": "all"})
    with pytest.raises(CapabilityError, match="MAC allow-list .* driver net_bnxt"):
        program("bnxt", vlans=[10], macs=[A, B])
    with pytest.raises(CapabilityError, match="driver net_i40e"):
        program("i40e", vlans=[10], allow_untagged=True)


def test_failure_half_way_is_recorded_and_undone():
    f = RecordingFfi(fail={"rte_pmd_ixgbe_set_vf_rate_limit": -errno.EINVAL})
    ad = make_adapter(f, PORT, "0000:07:00.0", "net_ixgbe")
    rec = VFRecord()
    with pytest.raises(BackendError) as e:
        ad.apply(VF, rec, canonical("ixgbe"), None)
    assert "rte_pmd_ixgbe_set_vf_rate_limit" in str(e.value) and "EINVAL" in str(e.value) and "vf 3" in str(e.value)
    assert rec.vlans == {10, 20} and rec.allow == [B, C]          # what reached the NIC before the failure
    f.fail.clear()
    f.clear()
    ad.teardown(VF, rec, canonical("ixgbe"), "06:11:22:33:44:55")     # the manager's undo: clear with it
    assert ("rte_pmd_ixgbe_set_vf_vlan_filter", (PORT, 10, MASK, False)) in f.calls
    assert ("rte_eth_dev_mac_addr_remove", (PORT, C)) in f.calls


# ---- the backend around the adapters (no EAL) ----------------------------------------------------------------

@pytest.fixture(autouse=True)
def _isolated_backends(monkeypatch, tmp_path):
    """Backends built here see a fake runtime dir and are all closed (their atexit hook would run too)."""
    monkeypatch.setenv(PREFIX_ENV, "vfdtest-seq")
    made = []
    real_init = DpdkBackend.__init__

    def init(self, *a, **kw):
        real_init(self, *a, **kw)
        made.append(self)
    monkeypatch.setattr(DpdkBackend, "__init__", init)
    yield
    for b in made:
        b.close()


def test_open_pf_follows_reference_5_1(monkeypatch, tmp_path):
    f = fake_port()
    main = main_config(pciids=[{"id": "0000:07:00.0", "vfs_count": 4, "mtu": 9000, "enable_loopback": True,
                                "promiscuous": True}])
    b = DpdkBackend(main, ffi=f)
    info = b.open_pf(main.pciids[0])
    assert info.driver == "net_ixgbe" and info.vfs_count == 4 and info.link_speed == 10000
    assert info.profile.has(Feature.VLAN_FILTER) and not info.profile.has(Feature.MIRROR)
    eal = [a for n, a in f.calls if n == "eal_init"]
    assert eal[0][0] == ["vfd", "-c", "0x1", "-n", "4", "--file-prefix", "vfdtest-seq", "--log-level", "1",
                         "--no-huge", "-m", "64", "--no-shconf", "--no-telemetry", "-a", "0000:07:00.0"]
    names = [n for n in f.names() if n not in ("rte_version", "list_ports", "rte_eth_dev_get_name_by_port", "port_info",
                                               "rte_eth_dev_info_get", "rte_log_set_global_level", "eal_init",
                                               "link_get_nowait", "rte_eth_dev_socket_id")]
    assert names == ["rte_eth_dev_configure", "pktmbuf_pool_create", "rte_eth_rx_queue_setup", "rte_eth_tx_queue_setup",
                     "callback_register", "callback_register", "rte_eth_dev_start", "rte_eth_promiscuous_enable",
                     "rte_eth_allmulticast_enable", "rte_eth_stats_reset", "rte_eth_dev_flow_ctrl_get", "rte_eth_dev_flow_ctrl_set",
                     "rte_pmd_ixgbe_set_vf_split_drop_en", "rte_pmd_ixgbe_set_vf_split_drop_en", "rte_pmd_ixgbe_set_vf_split_drop_en",
                     "rte_pmd_ixgbe_set_vf_split_drop_en", "rte_pmd_ixgbe_set_tx_loopback", "rte_eth_dev_uc_all_hash_table_set",
                     "flow_validate"]                   # the mirror probe: refused, so no MIRROR
    calls = dict((n, a) for n, a in f.calls)
    conf = calls["rte_eth_dev_configure"][3]
    assert calls["rte_eth_dev_configure"][:3] == (0, 1, 1)
    assert conf.rxmode.mtu == 9000 and conf.intr_conf.lsc == 1
    assert conf.rxmode.offloads == ffi.RTE_ETH_RX_OFFLOAD_VLAN_STRIP | ffi.RTE_ETH_RX_OFFLOAD_CHECKSUM
    assert calls["rte_eth_rx_queue_setup"][2] == 128 and calls["rte_eth_rx_queue_setup"][4].rx_drop_en == 1
    assert calls["rte_eth_tx_queue_setup"][2] == 64
    regs = [a[1] for n, a in f.calls if n == "callback_register"]
    assert regs == [ffi.RTE_ETH_EVENT_INTR_LSC, ffi.RTE_ETH_EVENT_VF_MBOX]
    assert calls["rte_pmd_ixgbe_set_tx_loopback"] == (0, True)
    b.close()
    f.clear()
    b.close()                                                 # twice: nothing more
    assert f.calls == []


def test_backend_apply_then_pf_reassert_and_read_back(monkeypatch, tmp_path):
    f = fake_port()
    main = main_config()
    b = DpdkBackend(main, ffi=f)
    b.open_pf(main.pciids[0])
    f.clear()
    p = canonical("ixgbe")
    b.apply_vf("0000:07:00.0", VF, p, None)
    assert f.calls[:len(EXPECTED_FULL["ixgbe"])] == EXPECTED_FULL["ixgbe"]
    tail = f.names()[len(EXPECTED_FULL["ixgbe"]):]
    assert tail == ["rte_eth_promiscuous_disable", "rte_eth_allmulticast_enable", "rte_eth_dev_uc_all_hash_table_set"]   # step 14
    # ixgbe has no VF getter in 22.11: nothing is echoed from the program, everything is unverifiable
    assert b.read_vf("0000:07:00.0", VF) == {}
    assert b.unverifiable_fields("0000:07:00.0") == PROGRAM_FIELDS == set(p.to_state())
    f.clear()
    b.clear_vf("0000:07:00.0", VF, p)
    assert f.names()[0] == "rte_pmd_ixgbe_set_vf_vlan_filter"
    assert f.vf(PORT, VF)["vlans"] == set() and f.vf(PORT, VF)["max_rate"] == 0
    b.close()


def test_vfs_count(monkeypatch, tmp_path):
    f = fake_port(max_vfs=2)
    main = main_config(pciids=[{"id": "0000:07:00.0", "vfs_count": 8}])
    assert DpdkBackend(main, ffi=f).open_pf(main.pciids[0]).vfs_count == 2      # the PF has only 2
    f = fake_port(max_vfs=6)
    main = main_config(pciids=[{"id": "0000:07:00.0"}])
    assert DpdkBackend(main, ffi=f).open_pf(main.pciids[0]).vfs_count == 6      # not configured: max_vfs
    f = fake_port(driver="net_iavf", max_vfs=0)
    main = main_config(pciids=[{"id": "0000:07:00.0", "vfs_count": 8}])
    info = DpdkBackend(main, ffi=f).open_pf(main.pciids[0])
    assert info.vfs_count == 8 and info.driver == "net_iavf" and not info.profile.features


def test_loopback_on_a_pmd_without_vf_api_is_refused(monkeypatch, tmp_path):
    f = fake_port(driver="net_ice", max_vfs=0)
    main = main_config(pciids=[{"id": "0000:07:00.0", "enable_loopback": True}])
    with pytest.raises(BackendError, match="net_ice has no PF TX loopback"):
        DpdkBackend(main, ffi=f).open_pf(main.pciids[0])


def test_missing_port_is_named(monkeypatch, tmp_path):
    f = fake_port()
    main = main_config(pciids=[{"id": "0000:81:00.1"}])
    with pytest.raises(BackendError, match="no DPDK port named 0000:81:00.1"):
        DpdkBackend(main, ffi=f).open_pf(main.pciids[0])


# ---- EAL arguments ---------------------------------------------------------------------------------------

def test_eal_args_huge_pages_and_allow_list():
    main = MainConfig.model_validate({"pciids": [{"id": "0000:07:00.0"}, {"id": "0000:07:00.1"}],
                                      "dpdk_init_log_level": 5, "numa_mem": "128"})
    args = eal_args(main, ["0000:07:00.0", "0000:07:00.1"], allowed_cores={0, 1, 2, 3})
    assert args == ["vfd", "-c", "0x4", "-n", "4", "--file-prefix", "vfd", "--log-level", "5",
                    "--socket-mem", "128", "--no-telemetry", "-a", "0000:07:00.0", "-a", "0000:07:00.1"]


def test_eal_args_vdev_no_huge_and_core_fallback():
    main = MainConfig.model_validate({"pciids": [{"id": "net_null0"}], "huge_pages": False, "cpu_mask": "0x08"})
    args = eal_args(main, ["net_null0", "07:00.0"], prefix="t1", allowed_cores={0, 1})
    assert args[:3] == ["vfd", "-c", "0x1"]                 # core 3 unavailable: lowest allowed
    assert "--no-huge" in args and args[args.index("-m") + 1] == "64" and "--no-shconf" in args
    assert "--socket-mem" not in args and "--no-pci" not in args
    assert args[-4:] == ["--vdev", "net_null0", "-a", "0000:07:00.0"]
    assert eal_args(main, ["net_null0"], prefix="t1")[-1] == "--no-pci"


def test_qos_is_refused_not_ignored():
    """bnxt has no per-TC call in 22.11: its profile lacks QoS (the manager refuses enable_qos at start naming the
    driver) and the backend refuses too, naming the PMD, without a call."""
    f = fake_port("net_bnxt")
    main = main_config(enable_qos=True)
    b = DpdkBackend(main, ffi=f)
    info = b.open_pf(main.pciids[0])
    assert not info.profile.has(Feature.QOS)
    f.clear()
    with pytest.raises(BackendError, match="driver net_bnxt has no per-VF traffic-class bandwidth"):
        b.apply_qos("0000:07:00.0", [{"pri": 0, "min_bw": 100, "max_bw": 100, "lsp": False}], {1: {0: 100}})
    assert f.calls == []


def test_keep_crc_when_hw_strip_crc_false():
    f = fake_port()
    f.keep[0].rx_offload_capa |= ffi.RTE_ETH_RX_OFFLOAD_KEEP_CRC
    main = main_config(pciids=[{"id": "0000:07:00.0", "hw_strip_crc": False}])
    DpdkBackend(main, ffi=f).open_pf(main.pciids[0])
    conf = [a for n, a in f.calls if n == "rte_eth_dev_configure"][0][3]
    assert conf.rxmode.offloads & ffi.RTE_ETH_RX_OFFLOAD_KEEP_CRC


def test_mailbox_fails_closed(monkeypatch):
    """A request the policy could not judge (here: a decoding crash) is refused, never let through."""
    f = fake_port()
    main = main_config()
    b = DpdkBackend(main, ffi=f)
    b.open_pf(main.pciids[0])
    st = b.ports["0000:07:00.0"]
    param = ffi.RtePmdIxgbeMbEventParam(vfid=1, msg_type=mbx.IXGBE_VF_SET_VLAN, retval=mbx.PROCEED)

    def boom(ret_param):
        raise ValueError("bad message")
    monkeypatch.setattr(st.adapter, "decode_mbox", boom)
    b.mailbox.callback(st.port, ffi.RTE_ETH_EVENT_VF_MBOX, ctypes.addressof(param))
    assert param.retval == mbx.NOOP_NACK


def test_mailbox_through_the_backend_without_eal():
    """The Python side of the callback: decode, policy on the backend's records, verdict written in place."""
    f = fake_port()
    main = main_config(pciids=[{"id": "0000:07:00.0", "vfs_count": 4, "mtu": 1500}])
    b = DpdkBackend(main, ffi=f)
    keep_programs(b)
    b.open_pf(main.pciids[0])
    p1 = program("ixgbe", vlans=[10], macs=[A])
    b.apply_vf("0000:07:00.0", 1, p1, None)
    b.apply_vf("0000:07:00.0", 2, program("ixgbe", vlans=[10], macs=[C]), None)
    st = b.ports["0000:07:00.0"]
    words = (ctypes.c_uint32 * 16)(mbx.IXGBE_VF_SET_MACVLAN | (1 << 16), int.from_bytes(bytes.fromhex("02000000"),
                                                                                          "little"),
                                   int.from_bytes(bytes.fromhex("000d0000"), "little"))
    param = ffi.RtePmdIxgbeMbEventParam(vfid=1, msg_type=mbx.IXGBE_VF_SET_MACVLAN,
                                        retval=mbx.PROCEED, msg=ctypes.addressof(words))
    b.mailbox.callback(st.port, ffi.RTE_ETH_EVENT_VF_MBOX, ctypes.addressof(param))
    assert param.retval == mbx.PROCEED
    assert b.guest_macs("0000:07:00.0") == {D: 1}
    # the same MAC from VF 2 is now in use
    param2 = ffi.RtePmdIxgbeMbEventParam(vfid=2, msg_type=mbx.IXGBE_VF_SET_MACVLAN,
                                         retval=mbx.PROCEED, msg=ctypes.addressof(words))
    b.mailbox.callback(st.port, ffi.RTE_ETH_EVENT_VF_MBOX, ctypes.addressof(param2))
    assert param2.retval == mbx.NOOP_NACK
    assert list(b.mailbox.refresh) == [("0000:07:00.0", 1)]
    b.clear_vf("0000:07:00.0", 1, p1)                        # delete forgets the guest's MACs and the refresh
    assert b.guest_macs("0000:07:00.0") == {} and not b.mailbox.refresh


def test_vlan_failure_half_way_keeps_the_record_exact():
    def refuse_20(port, vlan, mask, on, check=True):
        if vlan == 20:
            raise ffi.DpdkError("rte_pmd_ixgbe_set_vf_vlan_filter", -errno.ENOSPC)
        return 0
    f = RecordingFfi(returns={"rte_pmd_ixgbe_set_vf_vlan_filter": refuse_20})
    ad = make_adapter(f, PORT, "0000:07:00.0", "net_ixgbe")
    rec = VFRecord()
    with pytest.raises(BackendError, match="ENOSPC"):
        ad.apply(VF, rec, canonical("ixgbe"), None)
    assert rec.vlans == {10}                                  # 10 reached the NIC, 20 did not
    f.returns.clear()
    f.clear()
    ad.teardown(VF, rec, canonical("ixgbe"), "06:11:22:33:44:55")     # the program's 20 is not removed
    assert [a for n, a in f.calls if n == "rte_pmd_ixgbe_set_vf_vlan_filter"] == [(PORT, 10, MASK, False)]
