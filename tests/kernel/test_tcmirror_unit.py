"""tc mirror filters on representors (vfd/backends/kernel/tcmirror.py) against a fake parsing the kernel's layout."""

from __future__ import annotations

from tests.kernel.fake_switchdev import FakeTc
from vfd.backends.kernel.tcmirror import PREF, MirrorRule, TcMirror


def make():
    fake = FakeTc()
    return fake, TcMirror(sock=fake)


def test_out_is_the_representor_ingress_and_mirrors_to_the_target_representor():
    fake, tc = make()
    tc.set(11, "out", 12)
    assert 11 in fake.clsact
    assert list(fake.filters) == [(11, "ingress", PREF)]
    # mirred, egress mirror (2), pipe (3), towards the target representor's ifindex
    assert fake.filters[(11, "ingress", PREF)]["actions"] == [("mirred", 2, 3, 12)]
    assert tc.rules(11) == [MirrorRule("ingress", 12)]


def test_in_is_the_representor_egress_and_all_is_both():
    fake, tc = make()
    tc.set(11, "in", 13)
    assert list(fake.filters) == [(11, "egress", PREF)]
    tc.set(11, "all", 13)
    assert sorted(fake.filters) == [(11, "egress", PREF), (11, "ingress", PREF)]
    assert sorted(r.hook for r in tc.rules(11)) == ["egress", "ingress"]


def test_changing_target_or_direction_replaces_only_what_differs_and_off_removes_all():
    fake, tc = make()
    tc.set(11, "all", 12)
    tc.set(11, "out", 13)
    assert fake.filters == {(11, "ingress", PREF): {"kind": "matchall", "handle": 1,
                                                    "actions": [("mirred", 2, 3, 13)]}}
    n = len(fake.requests)
    tc.set(11, "out", 13)                      # unchanged: only reads
    assert {r["type"] for r in fake.requests[n:]} == {46}
    tc.set(11, "off", None)
    assert fake.filters == {}
    tc.set(11, None, None)                     # nothing there: nothing fails


def test_filters_of_others_are_left_alone():
    fake, tc = make()
    tc.ensure_clsact(11)
    fake.filters[(11, "ingress", 1)] = {"kind": "matchall", "handle": 1, "actions": [("mirred", 2, 3, 10)]}
    tc.set(11, "out", 12)
    tc.set(11, "off", None)
    assert list(fake.filters) == [(11, "ingress", 1)]
