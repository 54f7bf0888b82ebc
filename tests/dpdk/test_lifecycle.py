"""The dpdk backend through a VF's life (add, update, refused update, delete, restart, drift) over the stateful
recording stand-in: the NIC state the stand-in kept is compared with the program, not with what the backend
says about itself.  Also: read-back reports only what the PMD can read, and every PMD call holds the lock."""

from __future__ import annotations

import ctypes
import errno

import pytest

from vfd.backends.dpdk import ffi
from vfd.backends.dpdk.backend import PROGRAM_FIELDS
from vfd.errors import BackendError
from vfd.policy import mailbox as mbx
from vfd.program import cleared_state

from .fakes import fake_port, opened  # noqa: F401 - opened is a fixture
from .test_pmd_sequences import DRIVERS, PORT, VF, canonical

PF = "0000:07:00.0"
RATE_CALL = {"ixgbe": "rte_pmd_ixgbe_set_vf_rate_limit", "i40e": "rte_pmd_i40e_set_vf_max_bw",
             "bnxt": "rte_pmd_bnxt_set_vf_rate_limit"}
NIC_FIELDS = ("mac", "vlans", "strip", "insert", "mac_anti_spoof", "vlan_anti_spoof", "bcast", "mcast", "uucast",
              "untagged", "max_rate")


def nic(f) -> dict:
    """The VF as the stand-in's NIC state has it, in the program vocabulary (allow-list without the default)."""
    st = f.vf(PORT, VF)
    out = {k: st[k] for k in NIC_FIELDS}
    out["macs"] = st["macs"] - {st["mac"]}
    return out


def want(p) -> dict:
    d = p.to_state()
    out = {k: d[k] for k in NIC_FIELDS}
    out["vlans"], out["macs"] = set(p.vlans), set(p.macs)
    return out


@pytest.mark.parametrize("family", ["ixgbe", "i40e", "bnxt"])
def test_lifecycle(family, opened):
    f = fake_port(DRIVERS[family])
    b = opened(f)
    # add
    p1 = canonical(family)
    b.apply_vf(PF, VF, p1, None)
    assert nic(f) == want(p1)
    # update: only the difference is sent, the NIC ends up as the new program says
    p2 = canonical(family, vlans=[10, 30], allow_bcast=False, allow_mcast=True, rate=0.2)
    f.clear()
    b.apply_vf(PF, VF, p2, p1)
    assert nic(f) == want(p2)
    assert not any(n.endswith(("_vlan_anti_spoof", "_vlan_stripq")) for n in f.names())
    # refused update: the NIC refuses the rate half way; the manager puts the previous program back in full
    f.fail[RATE_CALL[family]] = -errno.EINVAL
    p3 = canonical(family, vlans=[40], rate=0.3)
    with pytest.raises(BackendError, match=RATE_CALL[family]):
        b.apply_vf(PF, VF, p3, p2)
    assert nic(f)["vlans"] == {40}                            # half applied: exactly what the record knows
    f.fail.clear()
    b.apply_vf(PF, VF, p2, None)
    assert nic(f) == want(p2)
    # restart: a new backend over the same NIC re-applies in full and the NIC is unchanged
    b.close()
    b2 = opened(f)
    b2.apply_vf(PF, VF, p2, None)
    assert nic(f) == want(p2)
    # delete: everything back to the power-on state, with a fresh locally administered MAC
    b2.clear_vf(PF, VF, p2)
    after = nic(f)
    cleared = {k: v for k, v in cleared_state(None).items() if k in NIC_FIELDS}
    assert {k: after[k] for k in cleared if k != "mac"} == {k: v for k, v in cleared.items() if k != "mac"} | {
        "vlans": set()}
    assert after["macs"] == set() and after["mac"] not in (p2.mac, None) and int(after["mac"][:2], 16) & 2


def test_read_back_reports_only_what_the_pmd_can_read(opened):
    """ixgbe and bnxt have no VF getter: read_vf is empty and every field unverifiable.  i40e reads the default
    MAC back (query_vfid_by_mac), so a MAC changed behind vfd's back shows as drift and re-apply repairs it."""
    for family in ("ixgbe", "bnxt"):
        f = fake_port(DRIVERS[family])
        b = opened(f)
        b.apply_vf(PF, VF, canonical(family), None)
        assert b.read_vf(PF, VF) == {} and b.unverifiable_fields(PF) == PROGRAM_FIELDS
    f = fake_port("net_i40e")
    b = opened(f)
    p = canonical("i40e")
    b.apply_vf(PF, VF, p, None)
    assert b.unverifiable_fields(PF) == PROGRAM_FIELDS - {"mac"}
    assert b.read_vf(PF, VF) == {"mac": p.mac}
    f.vf(PORT, VF)["mac"] = "02:00:00:00:00:99"               # changed by hand on the NIC
    assert b.read_vf(PF, VF) == {"mac": None}                 # drift: the PMD no longer maps it to this VF
    b.apply_vf(PF, VF, p, None)                               # the manager's repair
    assert b.read_vf(PF, VF) == {"mac": p.mac}


def test_every_pmd_call_holds_the_lock(opened):
    """Programming, PF settings, counters, probes, read-back, link events and the mailbox thread's port lookup:
    every DPDK call runs under the backend's lock (callback_unregister excepted: it waits for a running
    callback, which may itself be waiting for the lock)."""
    f = fake_port("net_bnxt")
    b = opened(f)
    unlocked: list[str] = []
    lookups: list[bool] = []

    def check(name):
        if not b.lock._is_owned() and name != "callback_unregister":
            unlocked.append(name)
    f.on_call = check
    real_port_state = b.port_state

    def port_state(port):
        st = real_port_state(port)
        lookups.append(True)
        return st
    b.port_state = port_state
    p = canonical("bnxt")
    b.apply_vf(PF, VF, p, None)
    b.pf_stats(PF)
    b.vf_stats(PF, VF)
    b.read_vf(PF, VF)
    b._on_lsc(PF)
    b.reassert_pf(PF)
    buf = (ctypes.c_uint8 * 128)()
    buf[0] = mbx.HWRM_FUNC_RESET
    param = ffi.RtePmdBnxtMbEventParam(vf_id=VF, retval=mbx.PROCEED, msg=ctypes.addressof(buf))
    b.mailbox.callback(PORT, ffi.RTE_ETH_EVENT_VF_MBOX, ctypes.addressof(param))
    assert lookups and list(b.mailbox.refresh) == [(PF, VF)]
    b.mailbox._tick()                                         # the bnxt queue probe
    b.clear_vf(PF, VF, p)
    b.close()
    names = f.names()
    assert {"stats_get", "link_get_nowait", "rte_pmd_bnxt_get_vf_stats", "rte_pmd_bnxt_get_vf_rx_status",
            "rte_eth_dev_close", "eal_cleanup"} <= set(names)
    assert unlocked == []


def test_the_backend_asks_the_manager_for_programs_and_keeps_no_copy(opened):
    """The manager holds the one copy of the programs (NicBackend.desired). The mailbox policing judges a
    guest's request by the program the manager holds now: also on a VF this process has not programmed
    yet (a restart, before the restore's re-apply), and a VF whose program the manager dropped is no
    longer policed, whatever the backend last programmed. QoS and the spoof counters ask the same way."""
    f = fake_port("net_ixgbe")
    b = opened(f)
    st = b.ports[PF]
    p = canonical("ixgbe", vlans=[10])
    programs = {VF: p}
    b.desired = lambda pf_id: dict(programs) if pf_id == PF else {}

    def set_vlan(vlan: int) -> int:
        words = (ctypes.c_uint32 * 16)(mbx.IXGBE_VF_SET_VLAN | (1 << 16), vlan)
        param = ffi.RtePmdIxgbeMbEventParam(vfid=VF, msg_type=mbx.IXGBE_VF_SET_VLAN, retval=mbx.PROCEED,
                                            msg=ctypes.addressof(words))
        b.mailbox.callback(st.port, ffi.RTE_ETH_EVENT_VF_MBOX, ctypes.addressof(param))
        return param.retval
    assert "rte_pmd_ixgbe_set_vf_vlan_filter" not in f.names()          # nothing programmed by this process
    assert set_vlan(10) == mbx.NOOP_ACK and set_vlan(99) == mbx.NOOP_NACK   # policed by the manager's program
    b.apply_vf(PF, VF, p, None)
    programs.clear()                                                  # the manager dropped it
    assert set_vlan(99) == mbx.PROCEED                                # not managed: the PF driver decides
