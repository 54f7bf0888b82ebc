"""Normalisation of per-TC queue shares (reference 8.1)."""

from vfd.policy.qos import normalise_shares


def test_oversubscribed_shares_scale_to_100():
    out = normalise_shares({1: {0: 50}, 2: {0: 50}, 3: {0: 20}}, [0])
    assert [out[v][0] for v in (1, 2, 3)] == [42, 42, 16]


def test_each_tc_totals_100_and_rounding_goes_in_slot_order():
    req = {v: {0: 3, 1: 10 + v} for v in range(7)}
    out = normalise_shares(req, [0, 1])
    for tc in (0, 1):
        assert sum(out[v][tc] for v in req) == 100
    assert [out[v][0] for v in range(7)] == [15, 15, 14, 14, 14, 14, 14]


def test_empty_and_zero():
    assert normalise_shares({}, [0, 1]) == {}
    assert normalise_shares({4: {}}, [0]) == {4: {0: 0}}


def test_backends_without_qos_refuse_it():
    import pytest
    from vfd.backends.base import NicBackend
    from vfd.errors import BackendError

    class Bare(NicBackend):
        name = "bare"
        open_pf = apply_vf = clear_vf = read_vf = pf_stats = vf_stats = lambda *a: None

    with pytest.raises(BackendError, match="per-TC QoS .* not supported by the bare backend"):
        Bare(None).apply_qos("pf0", [], {})
