"""Issue 11.2: one drift check. `status` and the periodic reconcile compare through the same
`vfd.program.compare`, and a field a backend cannot read back is shown as unverifiable, never as in
sync and never as drift (the DPDK backend reads back little; before, status compared the program
with itself there and could never show drift)."""

import pytest

from tests.integration.test_transactions import PF, Rig
from vfd.program import compare
from tests.vfdlab import vf_config


@pytest.fixture
def rig(tmp_path):
    return Rig(tmp_path)


def _add(rig, port="p1", vfid=1, **extra):
    rig.drop(port, vf_config(PF, vfid, vlans=(10,), macs=["02:00:00:00:00:11"], strip_stag=True, **extra))
    reply = rig.m.add(port, requester_uid=0)
    assert reply.ok, reply.lines
    return reply


def test_compare_values_not_spelling():
    from vfd.program import VFProgram
    prog = VFProgram(mac=None, macs=(), vlans=(10,), strip=True, insert=10, vlan_proto="802.1q",
                     mac_anti_spoof=True, vlan_anti_spoof=True, bcast=True, mcast=True, uucast=False,
                     untagged=False, max_rate=0, min_rate=0, link="auto", mirror=(3, "all"))
    actual = {**prog.to_state(), "mac": "02:00:00:00:00:99", "mirror": {"direction": "all", "target": 3}}
    checks = {c.field: c for c in compare(prog, actual)}
    assert all(c.state == "ok" for c in checks.values())     # key order of mirror; mac None = leave alone
    del actual["pcp"]
    actual["vlans"] = [10, 20]
    states = {c.field: c.state for c in compare(prog, actual, frozenset({"link"}))}
    assert states["pcp"] == "differs" and states["vlans"] == "differs" and states["link"] == "unverifiable"


def test_status_and_reconcile_agree_on_drift(rig):
    _add(rig)
    assert rig.m.status("p1").data["in_sync"] is True
    assert rig.m.reconcile() == 0
    rig.sim._pf(PF).vf(1)["vlans"] = [10, 99]            # changed behind vfd's back
    st = rig.m.status("p1")
    assert st.data["in_sync"] is False
    assert [f["field"] for f in st.data["fields"] if f["differs"]] == ["vlans"]
    assert rig.m.reconcile() == 1
    assert rig.m.status("p1").data["in_sync"] is True


def test_unverifiable_fields_are_reported_not_trusted(rig, monkeypatch):
    _add(rig)
    monkeypatch.setattr(type(rig.sim), "unverifiable_fields", lambda self, pf_id: frozenset({"vlans", "strip"}))
    rig.sim._pf(PF).vf(1)["vlans"] = [10, 99]            # drift the backend could not see
    st = rig.m.status("p1")
    assert st.ok and st.data["in_sync"] is True
    assert sorted(st.data["unverifiable"]) == ["strip", "vlans"]
    assert {f["field"]: f["state"] for f in st.data["fields"]}["vlans"] == "unverifiable"
    assert "cannot be read back" in st.lines[-1] and st.lines[-1] != "in sync"
    assert rig.m.reconcile() == 0                          # nothing re-applied forever


def test_not_live_refusal_carries_a_rule_for_programs(rig):
    for reply in (rig.m.delete("ghost", requester_uid=0), rig.m.status("ghost"), rig.m.update("ghost", requester_uid=0)):
        assert not reply.ok and reply.data == {"rule": "not_live", "port": "ghost"}, reply
