"""A recording, stateful stand-in for vfd.backends.dpdk.ffi.

`call(symbol, *args)` (and `ffi.<symbol>(...)`) is accepted only for symbols in the binding's prototype table,
and each call is validated by that table's own `Proto.convert` (arity, types, ranges): an adapter calling a
misspelt function or passing a VLAN of 5000 fails here as it would against DPDK.  The composed helpers
(`ffi.COMPOSED`) are checked against the real helper's signature.  Constants, structures and pure helpers come
from the real module.

Stateful: the PMD calls that set something per port / VF are remembered in `self.ports[port]` (PF settings)
and `self.vfs[(port, vf)]` (a dict in the program vocabulary), so lifecycle tests compare the NIC's state with
the program, and read-back (`rte_pmd_i40e_query_vfid_by_mac`) answers from it.  `fail` makes named
functions return -errno (-EINVAL by default), as a NIC refusing an operation would.
"""

from __future__ import annotations

import errno
import functools
import inspect

from vfd.backends.dpdk import ffi

PASS_THROUGH = {"make_eth_conf", "mac_addr", "errno_name", "errno_text", "stats_dict", "ixgbe_mb_param", "i40e_mb_param",
                "bnxt_mb_param", "ixgbe_msg_words", "msg_bytes", "hwrm_req_type"}

RXMODE = {ffi.RTE_ETH_VMDQ_ACCEPT_BROADCAST: "bcast", ffi.RTE_ETH_VMDQ_ACCEPT_MULTICAST: "mcast",
          ffi.RTE_ETH_VMDQ_ACCEPT_HASH_UC: "uucast", ffi.RTE_ETH_VMDQ_ACCEPT_UNTAG: "untagged"}


# what a composed helper returns unless `returns` says otherwise
DEFAULTS = {"stats_get": lambda port: dict.fromkeys(ffi.STATS_FIELDS, 0), "xstats": lambda port: {},
            "list_ports": lambda: [0], "link_get_nowait": lambda port: ffi.LinkStatus(10000, True, True, True)}


def power_on() -> dict:
    """A VF as the NIC leaves it after reset, in the program vocabulary (plus the per-TC state)."""
    return {"mac": None, "macs": set(), "vlans": set(), "strip": False, "insert": 0, "mac_anti_spoof": False,
            "vlan_anti_spoof": False, "bcast": True, "mcast": False, "uucast": False, "untagged": False,
            "max_rate": 0, "tc_bw": None, "tc_max_bw": {}, "queue_rate": {}}


class RecordingFfi:
    def __init__(self, returns: dict | None = None, fail: dict | None = None, sample: bool = False):
        self.calls: list[tuple[str, tuple]] = []
        self.returns = dict(returns or {})
        self.fail = dict(fail or {})          # symbol -> negative errno (0: -EINVAL)
        self.vfs: dict[tuple[int, int], dict] = {}
        self.ports: dict[int, dict] = {}
        self.on_call = None                   # optional hook: on_call(name) before every recorded call
        self.sample = sample                  # the PMD accepts the rte_flow SAMPLE rule (none of the 22.11 three)
        self.flows: dict[int, tuple] = {}     # live rte_flow rules: handle -> (port, rule summary)
        self._next_flow = 0x1000

    # ---- the table-driven call ----------------------------------------------------------------------
    def call(self, symbol: str, *args, check: bool = True):
        proto = ffi.PROTOTYPES.get(symbol)
        if proto is None:
            raise AttributeError(f"vfd.backends.dpdk.ffi has no prototype {symbol}")
        _cargs, outs = proto.convert(args)          # TypeError / ValueError exactly as the real binding
        if self.on_call is not None:
            self.on_call(symbol)
        self.calls.append((symbol, args))
        if symbol in self.fail:
            rc = self.fail[symbol] or -errno.EINVAL
            if check or outs:
                raise ffi.DpdkError(symbol, rc)
            return rc
        if symbol in self.returns:
            r = self.returns[symbol]
            return r(*args) if callable(r) else r
        rc = self._effect(symbol, args)
        if proto.ret is None:
            return None
        if outs:
            return proto.results(outs)
        if rc < 0 and check:
            raise ffi.DpdkError(symbol, rc)
        return rc

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        if name in ffi.PROTOTYPES:
            return functools.partial(self.call, name)
        real = getattr(ffi, name, None)
        if real is None:
            raise AttributeError(f"vfd.backends.dpdk.ffi has no {name}")
        if name not in ffi.COMPOSED:
            if callable(real) and not isinstance(real, type) and name not in PASS_THROUGH:
                raise AttributeError(f"{name} is neither in the prototype table nor a composed helper")
            return real                      # constants, structure classes, pure helpers
        sig = inspect.signature(real)

        def record(*args, **kwargs):
            sig.bind(*args, **kwargs)        # TypeError when the call would not fit the real helper
            if self.on_call is not None:
                self.on_call(name)
            self.calls.append((name, args))
            if name in self.fail:
                raise ffi.DpdkError(name, self.fail[name] or -errno.EINVAL)
            if name not in self.returns and hasattr(self, f"_{name}"):
                return getattr(self, f"_{name}")(*args, **kwargs)
            r = self.returns.get(name, DEFAULTS.get(name, 0))
            return r(*args) if callable(r) else r
        record.__name__ = name
        return record

    # ---- state --------------------------------------------------------------------------------------
    def vf(self, port: int, vf: int) -> dict:
        return self.vfs.setdefault((port, vf), power_on())

    def port(self, port: int) -> dict:
        return self.ports.setdefault(port, {})

    def _effect(self, symbol: str, args: tuple) -> int:
        """What a setter leaves in the NIC; getters answer from it.  Returns the C return value."""
        name = symbol.split("_", 3)[-1] if symbol.startswith("rte_pmd_") else symbol
        family = symbol.split("_")[2] if symbol.startswith("rte_pmd_") else None
        if name == "set_vf_vlan_filter":
            port, vlan, mask, on = args
            for vf in range(64):
                if mask >> vf & 1:
                    (self.vf(port, vf)["vlans"].add if on else self.vf(port, vf)["vlans"].discard)(vlan)
        elif name == "set_vf_mac_addr":
            port, vf, mac = args
            st = self.vf(port, vf)
            st["mac"] = mac
            if family == "i40e":                       # 22.11: "will remove all existing MAC filters"
                st["macs"] = set()
        elif name == "add_vf_mac_addr":
            self.vf(args[0], args[1])["macs"].add(args[2])
        elif symbol == "rte_eth_dev_mac_addr_add":
            self.vf(args[0], args[2])["macs"].add(args[1])
        elif symbol == "rte_pmd_bnxt_mac_addr_add":
            self.vf(args[0], args[2])["macs"].add(args[1])
        elif symbol == "rte_eth_dev_mac_addr_remove":
            for (port, _vf), st in self.vfs.items():
                if port == args[0]:
                    st["macs"].discard(args[1])
        elif name in ("set_vf_vlan_anti_spoof", "set_vf_mac_anti_spoof"):
            self.vf(args[0], args[1])[name[len("set_vf_"):]] = bool(args[2])
        elif name == "set_vf_vlan_stripq":
            self.vf(args[0], args[1])["strip"] = bool(args[2])
        elif name == "set_vf_vlan_insert":
            self.vf(args[0], args[1])["insert"] = args[2]
        elif name == "set_vf_rxmode":
            port, vf, mask, on = args
            for bit, gate in RXMODE.items():
                if mask & bit:
                    self.vf(port, vf)[gate] = bool(on)
        elif name in ("set_vf_broadcast", "set_vf_multicast_promisc", "set_vf_unicast_promisc"):
            gate = {"set_vf_broadcast": "bcast", "set_vf_multicast_promisc": "mcast",
                    "set_vf_unicast_promisc": "uucast"}[name]
            self.vf(args[0], args[1])[gate] = bool(args[2])
        elif name in ("set_vf_rate_limit", "set_vf_max_bw"):
            self.vf(args[0], args[1])["max_rate"] = args[2]
            if symbol == "rte_pmd_ixgbe_set_vf_rate_limit":
                for q in range(8):
                    if args[3] >> q & 1:
                        self.vf(args[0], args[1])["queue_rate"][q] = args[2]
        elif name == "set_vf_tc_bw_alloc":
            self.vf(args[0], args[1])["tc_bw"] = list(args[2])
        elif name == "set_vf_tc_max_bw":
            self.vf(args[0], args[1])["tc_max_bw"][args[2]] = args[3]
        elif name == "set_tc_strict_prio":
            self.port(args[0])["strict_tcs"] = args[1]
        elif name == "set_tc_bw_alloc":
            self.port(args[0])["tc_bw"] = list(args[1])
        elif name == "set_tx_loopback":
            self.port(args[0])["loopback"] = bool(args[1])
        elif name == "query_vfid_by_mac":
            port, mac = args
            for (p, vf), st in sorted(self.vfs.items()):
                if p == port and st["mac"] == mac:
                    return vf
            return -errno.EINVAL
        return 0

    # ---- rte_flow (composed helpers in the binding) ---------------------------------------------------
    def _flow_validate(self, port, attr, pattern, actions):
        if not self.sample:
            raise ffi.DpdkError("rte_flow_validate", -errno.ENOTSUP, "Not supported action.")
        return None

    def _flow_create(self, port, attr, pattern, actions):
        self._flow_validate(port, attr, pattern, actions)
        self._next_flow += 1
        self.flows[self._next_flow] = (port, flow_summary(attr, pattern, actions))
        return self._next_flow

    def _flow_destroy(self, port, handle, check=True):
        return 0 if self.flows.pop(handle, None) is not None else -errno.ENOENT

    # ---- inspection ---------------------------------------------------------------------------------
    def names(self) -> list[str]:
        return [n for n, _ in self.calls]

    def clear(self) -> None:
        self.calls.clear()


def flow_summary(attr, pattern, actions) -> dict:
    """What a mirror rule says, read back from its C structures: the matched MAC field, sample ratio, target VF."""
    import ctypes
    eth = ffi.RteFlowItemEth.from_address(pattern[0].spec)
    mask = ffi.RteFlowItemEth.from_address(pattern[0].mask)
    match = {f: str(getattr(eth, f)) for f in ("dst", "src") if str(getattr(mask, f)) == "ff:ff:ff:ff:ff:ff"}
    sample = ffi.RteFlowActionSample.from_address(actions[0].conf)
    inner = (ffi.RteFlowAction * 2).from_address(sample.actions)
    vf = ffi.RteFlowActionVf.from_address(inner[0].conf)
    assert pattern[0].type == ffi.RTE_FLOW_ITEM_TYPE_ETH and pattern[1].type == ffi.RTE_FLOW_ITEM_TYPE_END
    assert actions[0].type == ffi.RTE_FLOW_ACTION_TYPE_SAMPLE and actions[1].type == ffi.RTE_FLOW_ACTION_TYPE_END
    assert inner[0].type == ffi.RTE_FLOW_ACTION_TYPE_VF and inner[1].type == ffi.RTE_FLOW_ACTION_TYPE_END
    del ctypes
    return {"transfer": attr.transfer, "match": match, "ratio": sample.ratio, "to_vf": vf.id}
