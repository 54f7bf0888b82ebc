"""The binding's prototype table is the only declaration of a C function, and every call is checked against it:
by the real `ffi.call` (before any library is loaded) and by the recording stand-in the other tests use.
No DPDK library is needed."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from vfd.backends.dpdk import ffi

from .recording_ffi import RecordingFfi

ROOT = Path(__file__).resolve().parents[2]
DPDK = ROOT / "vfd" / "backends" / "dpdk"


@pytest.mark.parametrize("caller", ["real", "stand-in"])
@pytest.mark.parametrize("args,exc,words", [
    ((0, 5000, 1 << 3, True), ValueError, ["vlan_id=5000", "0..4095"]),          # range
    ((0, 10, 0, True), ValueError, ["vf_mask=0"]),                                # an empty VF mask
    ((0, 10, 1 << 3, 2), TypeError, ["on=2", "bool"]),                             # not a flag
    ((0, "10", 1 << 3, True), TypeError, ["vlan_id='10'", "integer"]),            # type
    ((0, 10, 1 << 3), TypeError, ["takes 4 arguments, got 3"]),                   # arity
    ((40, 10, 1 << 3, True), ValueError, ["port=40", "0..31"]),                   # beyond RTE_MAX_ETHPORTS
])
def test_bad_calls_are_refused_by_the_table(caller, args, exc, words):
    """The same rule refuses the call in production and in the tests, naming function, parameter and value;
    the real binding refuses before loading anything."""
    target = ffi if caller == "real" else RecordingFfi()
    with pytest.raises(exc) as e:
        target.call("rte_pmd_ixgbe_set_vf_vlan_filter", *args)
    assert "rte_pmd_ixgbe_set_vf_vlan_filter" in str(e.value)
    for w in words:
        assert w in str(e.value)
    if caller == "stand-in":
        assert target.calls == []                            # a refused call is not recorded


def test_other_argument_kinds():
    f = RecordingFfi()
    with pytest.raises(ValueError, match="mac_addr='02:00:00:00:0a'.*MAC"):
        f.call("rte_pmd_i40e_set_vf_mac_addr", 0, 1, "02:00:00:00:0a")
    with pytest.raises(ValueError, match="bw_weight=.*0..100"):
        f.call("rte_pmd_ixgbe_set_tc_bw_alloc", 0, [50, 150])
    with pytest.raises(ValueError, match="1..8 traffic classes"):
        f.call("rte_pmd_i40e_set_vf_tc_bw_alloc", 0, 1, [10] * 9)
    with pytest.raises(ValueError, match="tc_no=8"):
        f.call("rte_pmd_i40e_set_vf_tc_max_bw", 0, 1, 8, 1000)
    with pytest.raises(TypeError, match="eth_conf=None: must be a RteEthConf"):
        f.call("rte_eth_dev_configure", 0, 1, 1, None)
    with pytest.raises(AttributeError, match="no prototype rte_pmd_ixgbe_set_vf_multicast_promisc"):
        f.call("rte_pmd_ixgbe_set_vf_multicast_promisc", 0, 1, True)   # VFd's own DPDK patch, not in 22.11
    with pytest.raises(AttributeError, match="neither in the prototype table nor a composed helper"):
        f.eth_dev_layout_ok(0)
    # conversion: a flag travels as 0/1, a weight list as (count, array), an output parameter comes back
    cargs, outs = ffi.PROTOTYPES["rte_pmd_ixgbe_set_tc_bw_alloc"].convert((0, [60, 40]))
    assert cargs[:2] == [0, 2] and list(cargs[2]) == [60, 40] and outs == []
    assert ffi.PROTOTYPES["rte_pmd_i40e_set_vf_broadcast"].convert((0, 1, True))[0] == [0, 1, 1]
    assert isinstance(f.call("rte_pmd_i40e_get_vf_stats", 0, 1), ffi.RteEthStats)
    assert f.rte_pmd_bnxt_get_vf_tx_drop_count(0, 1) == 0             # attribute access = call()


def test_pmd_functions_are_port_guarded():
    """Several 22.11 rte_pmd_bnxt_* functions index rte_eth_devices[port] unchecked: every PMD entry is guarded."""
    pmd = [p for p in ffi.PROTOTYPES.values() if p.symbol.startswith("rte_pmd_")]
    assert pmd and all(p.guard and isinstance(p.args[0], ffi.Port) for p in pmd)
    assert ffi.PROTOTYPES["rte_pmd_bnxt_set_vf_persist_stats"].driver == "net_bnxt"


def _literals(path: Path) -> set[str]:
    """C symbols named in code; in ffi.py only inside functions (the table itself does not count as a use)."""
    tree = ast.parse(path.read_text())
    roots = [n for n in tree.body if isinstance(n, ast.FunctionDef)] if path.name == "ffi.py" else [tree]
    return {n.value for r in roots for n in ast.walk(r) if isinstance(n, ast.Constant)
            and isinstance(n.value, str) and re.fullmatch(r"rte_[a-z0-9_]+", n.value)}


def test_the_table_is_the_only_declaration_and_has_no_unused_entry():
    used = set()
    for path in DPDK.glob("*.py"):
        used |= _literals(path)
    data_symbols = {"rte_eth_devices", "rte_pmd_"}         # an array read through c_char.in_dll; a prefix
    assert used - set(ffi.PROTOTYPES) - data_symbols == set(), "called but not declared"
    assert set(ffi.PROTOTYPES) - used == set(), "declared but never called"
    # no hand-written wrapper per C function any more: the binding's public functions are the composed ones
    funcs = {n.name for n in ast.parse((DPDK / "ffi.py").read_text()).body if isinstance(n, ast.FunctionDef)
             and not n.name.startswith("_")}
    assert not {f for f in funcs if f.startswith(("ixgbe_set", "i40e_set", "bnxt_set"))}
    assert set(ffi.COMPOSED) <= funcs
    # nothing loads the libraries a second time for extra bindings
    for path in DPDK.glob("*.py"):
        if path.name != "ffi.py":
            assert "CDLL" not in path.read_text(), path.name
