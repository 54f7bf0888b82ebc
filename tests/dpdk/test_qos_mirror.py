"""QoS (issue 13, DPDK part) and mirroring through the PMD APIs, against the stateful recording stand-in: which
calls, in which order, with which arguments, and what the NIC state ends up as.  The symbols and prototypes
of these calls are checked against the real 22.11 libraries and headers by test_ffi_real.py (readelf exports,
gcc prototype asserts, and the smoke run calling every rte_pmd_* entry on net_null)."""

from __future__ import annotations

import pytest

from vfd.backends.dpdk import ffi
from vfd.backends.dpdk.backend import DpdkBackend
from vfd.backends.dpdk.eal import PREFIX_ENV
from vfd.capabilities import Feature
from vfd.errors import BackendError, CapabilityError
from vfd.model.vfconfig import VFConfig
from vfd.program import build_program

from .fakes import fake_port, main_config, opened  # noqa: F401 - opened is a fixture
from .test_pmd_sequences import A, B, PORT

PF = "0000:07:00.0"
# the worked example of docs/dpdk.md: two classes on a 10 Gb/s PF
TCLASSES = [{"pri": 0, "name": "bulk", "min_bw": 40, "max_bw": 100, "lsp": False, "bsp": False, "bwg": 0},
            {"pri": 1, "name": "voice", "min_bw": 60, "max_bw": 50, "lsp": True, "bsp": False, "bwg": 0}]
SHARES = {1: {0: 50, 1: 25}, 2: {0: 50, 1: 75}}


@pytest.fixture
def backend(opened):
    """A PF with the worked example's classes."""
    def make(f, **main):
        pf = {"id": PF, "vfs_count": main.pop("vfs_count", 4),
              "tclasses": [{k: t[k] for k in ("pri", "name", "min_bw", "max_bw", "lsp")} for t in TCLASSES]}
        return opened(f, pciids=[pf], **main)
    return make


def prog(b, vfid, **cfg):
    return build_program(VFConfig.model_validate({"pciid": PF, "vfid": vfid, **cfg}), b.ports[PF].adapter.profile,
                         "dpdk", 10000)


# ---- ixgbe: VMDq+DCB, TC weights, per-queue rate limits ---------------------------------------------------

def test_ixgbe_qos_port_configuration_has_dcb(backend):
    f = fake_port("net_ixgbe", max_vfs=4)
    backend(f, enable_qos=True)
    conf = next(a for n, a in f.calls if n == "rte_eth_dev_configure")[3]
    assert conf.rxmode.mq_mode == ffi.RTE_ETH_MQ_RX_VMDQ_DCB and conf.txmode.mq_mode == ffi.RTE_ETH_MQ_TX_VMDQ_DCB
    rx, tx = conf.rx_adv_conf.vmdq_dcb_conf, conf.tx_adv_conf
    assert rx.nb_queue_pools == tx.nb_queue_pools == 16                     # 4 VFs: 16 pools x 8 TCs
    assert list(rx.dcb_tc) == list(tx.dcb_tc) == [0, 1, 0, 0, 0, 0, 0, 0]     # priorities without a class: TC 0
    assert conf.dcb_capability_en == ffi.RTE_ETH_DCB_PG_SUPPORT
    f2 = fake_port("net_ixgbe", max_vfs=4)
    backend(f2)                                                             # QoS off: no DCB
    conf2 = next(a for n, a in f2.calls if n == "rte_eth_dev_configure")[3]
    assert conf2.rxmode.mq_mode == 0 and conf2.dcb_capability_en == 0


def test_ixgbe_qos_weights_then_queue_rates(backend):
    f = fake_port("net_ixgbe", max_vfs=4)
    b = backend(f, enable_qos=True)
    b.apply_vf(PF, 1, prog(b, 1, vlans=[10], macs=[A], rate=0.1), None)     # VF 1: 1000 Mb/s of its own
    f.clear()
    b.apply_qos(PF, TCLASSES, SHARES)
    assert f.calls[0] == ("rte_pmd_ixgbe_set_tc_bw_alloc", (PORT, [40, 60, 0, 0, 0, 0, 0, 0]))
    # VF 1: tc0 10000 x 40% x 50% = 2000, tc1 10000 x 60% x 25% = 1500, both under its own 1000 Mb/s
    # VF 2: tc0 2000, tc1 10000 x 60% x 75% = 4500 (under voice's max_bw 50% = 5000); TCs 2-7 carry nothing: 0
    assert f.calls[1:] == [("rte_pmd_ixgbe_set_vf_rate_limit", (PORT, 1, r, 1 << tc))
                           for tc, r in enumerate([1000, 1000] + [0] * 6)] + [
        ("rte_pmd_ixgbe_set_vf_rate_limit", (PORT, 2, r, 1 << tc)) for tc, r in enumerate([2000, 4500] + [0] * 6)]
    assert f.vf(PORT, 2)["queue_rate"] == {0: 2000, 1: 4500, **{tc: 0 for tc in range(2, 8)}}
    total = sum(sum(f.vf(PORT, vf)["queue_rate"].values()) for vf in (1, 2))
    assert total == 2000 + 6500 <= 10000                                    # the PMD's rule: the sum fits the link
    assert f.port(PORT)["tc_bw"] == [40, 60, 0, 0, 0, 0, 0, 0]
    # the VF's own rate changes: its queues get min(rate, TC limit) again, TC by TC
    f.clear()
    b.apply_vf(PF, 1, prog(b, 1, vlans=[10], macs=[A], rate=0.5), prog(b, 1, vlans=[10], macs=[A], rate=0.1))
    assert [a for n, a in f.calls if n == "rte_pmd_ixgbe_set_vf_rate_limit"] == [
        (PORT, 1, r, 1 << tc) for tc, r in enumerate([2000, 1500] + [0] * 6)]
    # VF 1 deleted: the manager's next pass has only VF 2; VF 1's queues lose their TC limits
    b.clear_vf(PF, 1, prog(b, 1, vlans=[10], macs=[A], rate=0.5))
    b.apply_qos(PF, TCLASSES, {2: {0: 100, 1: 100}})
    assert set(f.vf(PORT, 1)["queue_rate"].values()) == {0}
    assert f.vf(PORT, 2)["queue_rate"] == {0: 4000, 1: 5000, **{tc: 0 for tc in range(2, 8)}}


def test_ixgbe_qos_refusals_name_the_pmd(backend):
    with pytest.raises(BackendError, match="net_ixgbe runs VMDq\\+DCB with at most 32 pools; the PF has 40 VFs"):
        backend(fake_port("net_ixgbe", max_vfs=40), enable_qos=True, vfs_count=40)
    f = fake_port("net_ixgbe", max_vfs=20)
    b = DpdkBackend(main_config(enable_qos=True, pciids=[{"id": PF, "vfs_count": 20, "tclasses": [{"pri": 5}]}]),
                    ffi=f)
    try:
        with pytest.raises(BackendError, match="traffic class 5: with 20 VFs driver net_ixgbe has 32 pools of 4"):
            b.open_pf(b.main.pciids[0])
        assert "rte_eth_dev_configure" not in f.names()                    # refused before the port is touched
    finally:
        b.close()
    b = backend(fake_port("net_ixgbe"))                                    # QoS off
    with pytest.raises(BackendError, match="net_ixgbe has no QoS without VMDq\\+DCB"):
        b.apply_qos(PF, TCLASSES, SHARES)


# ---- i40e: per-VF TC weights and caps, strict priority --------------------------------------------------

def test_i40e_qos_calls_in_order(backend):
    f = fake_port("net_i40e", max_vfs=4)
    b = backend(f, enable_qos=True)
    conf = next(a for n, a in f.calls if n == "rte_eth_dev_configure")[3]
    assert conf.rxmode.mq_mode == 0                                        # TCs come from the NIC's DCB (DCBX)
    f.clear()
    b.apply_qos(PF, TCLASSES, SHARES)
    # VF 1 guaranteed: bulk 40% x 50% = 20, voice 60% x 25% = 15 -> 57/43 of its bandwidth; VF 2: 20 vs 45
    assert f.calls == [
        ("rte_pmd_i40e_set_vf_tc_bw_alloc", (PORT, 1, [58, 42])),
        ("rte_pmd_i40e_set_vf_tc_max_bw", (PORT, 1, 0, 10000)),
        ("rte_pmd_i40e_set_vf_tc_max_bw", (PORT, 1, 1, 5000)),
        ("rte_pmd_i40e_set_vf_tc_bw_alloc", (PORT, 2, [31, 69])),
        ("rte_pmd_i40e_set_vf_tc_max_bw", (PORT, 2, 0, 10000)),
        ("rte_pmd_i40e_set_vf_tc_max_bw", (PORT, 2, 1, 5000)),
        ("rte_pmd_i40e_set_tc_strict_prio", (PORT, 0b10)),                  # voice is strict (lsp)
    ]
    assert f.vf(PORT, 1)["tc_bw"] == [58, 42] and f.vf(PORT, 2)["tc_max_bw"] == {0: 10000, 1: 5000}
    # the VF's overall cap stays rte_pmd_i40e_set_vf_max_bw, its rate (step 4)
    f.clear()
    b.apply_vf(PF, 1, prog(b, 1, vlans=[10], macs=[A], rate=0.2), None)
    assert ("rte_pmd_i40e_set_vf_max_bw", (PORT, 1, 2000)) in f.calls


def test_i40e_weights_stay_at_least_one_and_total_100(backend):
    b = backend(fake_port("net_i40e"), enable_qos=True)
    f = b.ffi
    f.clear()
    classes = [dict(TCLASSES[0], pri=p, min_bw=m, lsp=False) for p, m in ((0, 1), (1, 1), (2, 98))]
    b.apply_qos(PF, classes, {1: {0: 1, 1: 1, 2: 100}})
    weights = f.calls[0][1][2]
    assert sum(weights) == 100 and min(weights) >= 1


# ---- bnxt and others: refused naming the PMD ---------------------------------------------------------------

@pytest.mark.parametrize("driver", ["net_bnxt", "net_null"])
def test_qos_refused_naming_the_pmd(driver, backend):
    b = backend(fake_port(driver, max_vfs=4))
    assert not b.ports[PF].adapter.profile.has(Feature.QOS)
    with pytest.raises(BackendError, match=f"driver {driver}"):
        b.apply_qos(PF, TCLASSES, SHARES)


# ---- mirroring: rte_flow SAMPLE (ratio 1) to the target VF where the PMD takes it -----------------------------

def test_mirror_refused_naming_the_pmd_when_the_sample_rule_is_refused(backend):
    """None of the 22.11 ixgbe / i40e / bnxt PMDs takes the SAMPLE rule: the probe says so and admission refuses
    mirroring naming the driver."""
    for driver in ("net_ixgbe", "net_i40e", "net_bnxt"):
        b = backend(fake_port(driver))
        assert not b.ports[PF].adapter.profile.has(Feature.MIRROR)
        with pytest.raises(CapabilityError, match=f"VF mirroring is not supported by driver {driver}"):
            prog(b, 1, vlans=[10], macs=[A], mirror={"target": 2, "direction": "all"})


def test_mirror_rules_follow_the_program(backend):
    f = fake_port("net_i40e", sample=True)                                  # a PMD that validates the rule
    b = backend(f)
    assert b.ports[PF].adapter.profile.has(Feature.MIRROR)
    p1 = prog(b, 1, vlans=[10], macs=[A], mirror={"target": 2, "direction": "all"})
    b.apply_vf(PF, 1, p1, None)
    assert sorted(f.flows.values(), key=str) == sorted([
        (PORT, {"transfer": 1, "match": {"dst": A}, "ratio": 1, "to_vf": 2}),   # what VF 1 receives
        (PORT, {"transfer": 1, "match": {"src": A}, "ratio": 1, "to_vf": 2}),   # what VF 1 sends
    ], key=str)
    p2 = prog(b, 1, vlans=[10], macs=[B], mirror={"target": 3, "direction": "in"})
    b.apply_vf(PF, 1, p2, p1)                                               # new MAC, new target, one direction
    assert list(f.flows.values()) == [(PORT, {"transfer": 1, "match": {"dst": B}, "ratio": 1, "to_vf": 3})]
    p3 = prog(b, 1, vlans=[10], macs=[B])
    b.apply_vf(PF, 1, p3, p2)                                               # mirror off
    assert f.flows == {}
    b.apply_vf(PF, 1, p2, p3)
    b.clear_vf(PF, 1, p2)                                                   # delete removes the rules
    assert f.flows == {}
    with pytest.raises(BackendError, match="needs a MAC"):
        b.apply_vf(PF, 1, prog(b, 1, vlans=[10], mirror={"target": 2, "direction": "all"}), None)



def test_qos_at_start_without_classes_or_vfs(monkeypatch):
    """The daemon applies QoS at start, before any VF: no class configured means every TC weighs the same (the
    PMD wants the weights to total 100), and i40e only sets the strict-priority map."""
    monkeypatch.setenv(PREFIX_ENV, "vfdtest-qos0")
    for driver, expected in (("net_ixgbe", [("rte_pmd_ixgbe_set_tc_bw_alloc", (PORT, [13, 13, 13, 13, 12, 12, 12, 12]))]),
                             ("net_i40e", [("rte_pmd_i40e_set_tc_strict_prio", (PORT, 0))])):
        f = fake_port(driver)
        b = DpdkBackend(main_config(enable_qos=True), ffi=f)
        try:
            b.open_pf(b.main.pciids[0])
            f.clear()
            b.apply_qos(PF, [], {})
            assert f.calls == expected
            f.clear()
            b.apply_qos(PF, [], {1: {tc: 25 for tc in range(4)}})         # the manager's default TCs 0-3
            assert len(f.calls) > 1 and "DpdkError" not in str(f.calls)
        finally:
            b.close()
