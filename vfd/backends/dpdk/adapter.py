"""PMD adapters: the operations every PMD module implements (the original's vfd_ixgbe.c / vfd_i40e.c /
vfd_bnxt.c) and the shared apply / teardown order of reference 5.2 that drives them.

An adapter reaches DPDK only through the ffi object it is given (`vfd.backends.dpdk.ffi` in production, the
recording stand-in in tests), with `ffi.call(symbol, *args)`: the binding's prototype table checks every call.
"""

from __future__ import annotations

import ctypes
import dataclasses
import importlib
import logging
from dataclasses import dataclass, field

from vfd.capabilities import PROFILES, DriverProfile, Feature
from vfd.errors import BackendError
from vfd.model.mainconfig import PFConfig
from vfd.policy import mailbox as mbx
from vfd.policy.qos import normalise_shares
from vfd.program import APPLY_STEPS, VFProgram

from . import ffi as real_ffi

log = logging.getLogger("vfd.dpdk")


# ---------------------------------------------------------------------------------------------------
# Per-VF record: what vfd has put in the NIC, and what the guest was allowed to add
# ---------------------------------------------------------------------------------------------------
# The VF's program is not in it: the manager holds the one copy, handed to apply and teardown and
# asked for (NicBackend.desired) where the backend needs it otherwise (mailbox policing, read-back,
# QoS). The record keeps only what the manager cannot know: the filters that really reached the NIC
# (exact after a failure half-way, and after a restart once the restore's full apply ran) and the
# guest's mailbox registrations.

GATE_FIELDS = dict(APPLY_STEPS)["gates"]


@dataclass(frozen=True)
class _Diff:
    """The fields one apply changes (`VFProgram.changed_fields`); `full` without a previous program."""
    fields: set[str]
    full: bool

    def __call__(self, *names: str) -> bool:
        return self.full or not self.fields.isdisjoint(names)


@dataclass
class VFRecord:
    vlans: set[int] = field(default_factory=set)    # VLAN filters vfd set on the NIC
    allow: list[str] = field(default_factory=list)  # allow-list MACs vfd added on the NIC
    default: str | None = None             # default MAC vfd set
    guest_mac: str | None = None           # default MAC the guest set through the mailbox (approved)
    guest_macs: list[str] = field(default_factory=list)  # allow-list MACs the guest added (approved)
    queues_ready: bool | None = None       # i40e: from ENABLE/DISABLE_QUEUES messages
    mirror_flows: list[int] = field(default_factory=list)  # rte_flow handles of the VF's mirror rules
    last_mbox: float = 0.0                 # monotonic time of the VF's last mailbox message
    mbox_count: int = 0

    def all_macs(self, program: VFProgram | None) -> set[str]:
        """Every MAC the VF uses: vfd's allow-list, the guest's, the program's default (`program`, the
        manager's) and the guest's approved default."""
        macs = set(self.allow) | set(self.guest_macs)
        if program is not None and program.mac:
            macs.add(program.mac)
        if self.guest_mac:
            macs.add(self.guest_mac)
        return macs

    def effective_default(self, program: VFProgram | None) -> str | None:
        """The guest's approved default wins over the config's (reference 6.1: stored at index 0 and used on
        every later apply); a config change of the default MAC clears the guest's choice."""
        if self.guest_mac:
            return self.guest_mac
        return program.mac if program is not None else None


# ---------------------------------------------------------------------------------------------------
# PMD adapters
# ---------------------------------------------------------------------------------------------------


class PmdAdapter:
    """The operations every PMD module implements (the original's vfd_ixgbe.c / vfd_i40e.c / vfd_bnxt.c).

    `apply` and `teardown` are shared: they run the operations in the order of reference 5.2 and keep the
    VF record in step with what reached the NIC.  A PMD module overrides the operations with its calls.
    """

    family = "none"              # policy family: ixgbe / i40e / bnxt
    driver = ""                  # DPDK driver name, e.g. net_ixgbe
    has_vf_api = True
    has_mailbox = True
    pf_allmulti = True           # reference 5.1: all-multicast on the PF (off for bnxt)
    profile: DriverProfile

    def __init__(self, ffi, port: int, pf_id: str, driver: str | None = None):
        self.ffi = ffi
        self.port = port
        self.pf_id = pf_id
        if driver:
            self.driver = driver

    # ---- helpers -----------------------------------------------------------------------------
    def call(self, op: str, vfid: int | None, symbol: str, *args):
        """One DPDK call; a refusal becomes BackendError naming the operation, the C function and the errno."""
        try:
            return self.ffi.call(symbol, *args)
        except real_ffi.DpdkError as e:
            raise BackendError(self.pf_id, f"{op} ({e.func})", f"{e.code} {e.errname}", vfid) from None
        except (TypeError, ValueError) as e:      # the prototype table refused the arguments
            raise BackendError(self.pf_id, f"{op} ({symbol})", f"not sent: {e}", vfid) from None

    def unsupported(self, op: str, vfid: int | None, what: str):
        raise BackendError(self.pf_id, op, f"driver {self.driver} has no {what} in the DPDK 22.11 API", vfid)

    # ---- PF ----------------------------------------------------------------------------------
    def pf_init(self, pf: PFConfig, vfs_count: int) -> None:
        """PF settings after the port started (reference 5.1): loopback, drop enables, PMD-specific."""
        self.set_loopback(pf.enable_loopback)

    def pf_update(self) -> None:
        """Re-asserted on every update pass (reference 5.1 / 5.2 step 14), after the generic PF rx modes."""

    def set_loopback(self, on: bool) -> None:
        if on:
            self.unsupported("enable_loopback", None, "PF TX loopback (VEB) control")

    def ping_vfs(self, vfids: list[int]) -> None:
        """Tell the VFs the link changed (reference 7.1)."""

    # ---- VF operations (reference 5.2) -----------------------------------------------------------
    def set_mirror(self, vfid: int, program: VFProgram, rec: VFRecord) -> None:
        """Step 1: the VF's mirror rules (rte_flow, SAMPLE ratio 1 towards the target VF), replaced whenever the
        mirror or the MAC that identifies the VF's traffic changes."""
        self.remove_mirror(vfid, rec)
        if program.mirror is None:
            return
        if not self.mirror_capable:
            self.unsupported("mirror", vfid, "rte_flow SAMPLE rule it accepts (VF mirroring)")
        if not program.mac:
            raise BackendError(self.pf_id, "mirror", "DPDK 22.11 has no rte_flow item for a VF's traffic: vfd matches "
                               "the VF's MAC, so a mirrored VF needs a MAC in its config", vfid)
        target, direction = program.mirror
        for rule in mirror_rules(program.mac, target, direction):
            try:
                rec.mirror_flows.append(self.ffi.flow_create(self.port, *rule.args))
            except real_ffi.DpdkError as e:
                raise BackendError(self.pf_id, f"mirror ({e.func})", f"driver {self.driver}: {e}", vfid) from None

    def remove_mirror(self, vfid: int, rec: VFRecord) -> None:
        while rec.mirror_flows:
            rc = self.ffi.flow_destroy(self.port, rec.mirror_flows.pop(), check=False)
            if rc < 0:
                log.warning("PF %s VF %d: mirror rule not destroyed: %s", self.pf_id, vfid, real_ffi.errno_name(rc))

    mirror_capable = False       # set by probe_mirror: the PMD validated the SAMPLE rule

    def probe_mirror(self, vfs_count: int) -> str | None:
        """Ask the PMD (rte_flow_validate) whether it takes vfd's mirror rule; None when it does, else why not."""
        if not self.has_vf_api or vfs_count < 2:
            return "fewer than two VFs"
        try:
            for rule in mirror_rules("02:00:00:00:00:01", 1, "all"):
                self.ffi.flow_validate(self.port, *rule.args)
        except real_ffi.DpdkError as e:
            return str(e)
        self.mirror_capable = True
        self.profile = dataclasses.replace(self.profile, features=self.profile.features | {Feature.MIRROR})
        return None

    # ---- QoS (per-TC bandwidth) -------------------------------------------------------------------
    def port_conf(self, conf, pf: PFConfig, vfs_count: int, qos: bool) -> None:
        """What the PMD needs in rte_eth_conf before dev_configure (ixgbe: VMDq+DCB when QoS is on)."""

    def apply_qos(self, tclasses: list[dict], shares: dict[int, dict[int, int]], link_speed: int,
                  programs: dict[int, VFProgram]) -> None:
        """The PF's traffic classes and each VF's normalised shares (`shares[vf][tc]`, percent per TC)."""
        self.unsupported("enable_qos", None, "per-VF traffic-class bandwidth (QoS)")

    def set_vlan_filter(self, vfid: int, add: list[int], remove: list[int]) -> None:
        if add or remove:
            self.unsupported("vlans", vfid, "VF VLAN filter")

    def set_macs(self, vfid: int, default: str | None, allow: list[str], added: list[str], removed: list[str],
                 set_default: bool, default_changed: bool = True) -> None:
        """Allow-list MACs `added` (pushed in reverse order), `removed`, then the default MAC last when
        `set_default`.  `allow` is the whole desired allow-list; `default_changed` says the default differs
        from the one vfd set before (a full re-apply sets an unchanged default again)."""
        if added or removed or set_default:
            self.unsupported("macs", vfid, "VF MAC control")

    def set_rates(self, vfid: int, max_rate: int, min_rate: int) -> None:
        if max_rate:
            self.unsupported("max_rate", vfid, "VF TX rate limit")
        if min_rate:
            self.unsupported("min_rate", vfid, "VF guaranteed TX rate")

    def persist_stats(self, vfid: int) -> None:
        """bnxt: keep VF counters across VF driver reloads (reference 5.2 step 5)."""

    def set_anti_spoof(self, vfid: int, vlan: bool | None = None, mac: bool | None = None) -> None:
        if vlan or mac:
            self.unsupported("anti_spoof", vfid, "VF anti-spoof control")

    def set_strip_insert(self, vfid: int, strip: bool | None = None, insert: int | None = None) -> None:
        if strip or insert:
            self.unsupported("strip_insert", vfid, "VF VLAN strip/insert")

    def set_rxmode(self, vfid: int, bcast: bool | None = None, mcast: bool | None = None,
                   uucast: bool | None = None, untagged: bool | None = None, insert: int = 0) -> None:
        if any(v is not None for v in (bcast, mcast, uucast, untagged)):
            self.unsupported("rxmode", vfid, "VF receive-mode control")

    def set_link(self, vfid: int, link: str) -> None:
        if link != "auto":
            self.unsupported("link_status", vfid, "forced VF link state")

    def drop_enable(self, vfid: int, on: bool) -> None:
        """Reset window (reference 7.2): drop rather than stall the VF's RX queues.  No PMD exposes the
        per-VF queue drop enable (PFQDE) in 22.11; ixgbe sets split-RX drop for every VF at init instead."""

    # ---- probes and counters ---------------------------------------------------------------------
    def queue_ready(self, vfid: int, rec: VFRecord) -> bool | None:
        """True/False when the PMD can tell whether the VF's queues are up, None when it cannot."""
        return None

    def vf_stats(self, vfid: int) -> dict | None:
        return None

    # ---- read-back ---------------------------------------------------------------------------------
    verifiable: frozenset[str] = frozenset()   # program fields `read_back` reports from the PMD

    def read_back(self, vfid: int, rec: VFRecord, program: VFProgram | None) -> dict:
        """The `verifiable` program fields as the PMD reports them (`program`, the manager's, only says in
        which spelling).  DPDK 22.11 has no VF getters on ixgbe and bnxt, so by default nothing: the
        backend marks every other field unverifiable."""
        return {}

    def spoof_count(self, vfids: list[int]) -> int:
        return 0

    # ---- mailbox --------------------------------------------------------------------------------
    def decode_mbox(self, ret_param: int) -> tuple[int, int, dict, int | None, int]:
        """-> (vfid, message type, payload, message address, message length)."""
        raise NotImplementedError

    def answer_mbox(self, ret_param: int, msg_addr: int | None, msg_len: int, decision: mbx.Decision) -> None:
        if decision.patch is not None and msg_addr:
            off, data = decision.patch
            if off + len(data) <= msg_len:
                ctypes.memmove(msg_addr + off, data, len(data))
        self._set_retval(ret_param, decision.verdict)

    def _set_retval(self, ret_param: int, verdict: int) -> None:
        raise NotImplementedError

    def msg_name(self, msg_type: int) -> str:
        return f"0x{msg_type:x}"

    # ---- the shared sequences ------------------------------------------------------------------
    def apply(self, vfid: int, rec: VFRecord, program: VFProgram, previous: VFProgram | None) -> None:
        """Reference 5.2 steps 1-12, the steps of `vfd.program.APPLY_STEPS` in their order.  With `previous`,
        only what differs (`VFProgram.changed_fields`); without, everything (the NIC may have lost it).
        `rec` follows each step that succeeded, so a later teardown or re-apply knows what is in the NIC
        even after a failure half-way."""
        diff = _Diff(set(program.changed_fields(previous)), previous is None)
        if previous is not None and previous.mac != program.mac:
            rec.guest_mac = None            # the operator changed the default: the guest's choice goes
        for step, _ in APPLY_STEPS:
            getattr(self, f"_step_{step}")(vfid, rec, program, previous, diff)

    def _step_mirror(self, vfid, rec, program, previous, diff) -> None:
        if diff("mirror", "mac") and (program.mirror is not None or rec.mirror_flows):
            self.set_mirror(vfid, program, rec)     # its rule matches the VF's MAC

    def _step_vlans(self, vfid, rec, program, previous, diff) -> None:
        if diff("vlans") or rec.vlans != set(program.vlans):
            remove = sorted(v for v in rec.vlans if v not in program.vlans)
            add = list(program.vlans) if diff.full else [v for v in program.vlans if v not in rec.vlans]
            for vlan in remove:                     # one at a time: the record stays exact on a failure
                self.set_vlan_filter(vfid, add=[], remove=[vlan])
                rec.vlans.discard(vlan)
            for vlan in add:
                self.set_vlan_filter(vfid, add=[vlan], remove=[])
                rec.vlans.add(vlan)

    def _step_macs(self, vfid, rec, program, previous, diff) -> None:
        """Allow-list first (reverse order), default last."""
        default = rec.effective_default(program)
        allow = list(program.macs)
        if diff.full or allow != rec.allow or default != rec.default:
            added = allow if diff.full else [m for m in allow if m not in rec.allow]
            removed = [m for m in rec.allow if m not in allow]
            set_default = default is not None and (diff.full or default != rec.default)
            rec.allow = rec.allow + [m for m in added if m not in rec.allow]   # a superset until it succeeds
            self.set_macs(vfid, default, allow, added, removed, set_default,
                          default_changed=default is not None and default != rec.default)
            rec.allow = allow
            if default is not None:
                rec.default = default

    def _step_rates(self, vfid, rec, program, previous, diff) -> None:
        if diff("max_rate", "min_rate"):
            self.set_rates(vfid, program.max_rate, program.min_rate)
        if diff.full:
            self.persist_stats(vfid)                # step 5: persistent VF counters (bnxt)

    def _step_anti_spoof(self, vfid, rec, program, previous, diff) -> None:
        if diff("vlan_anti_spoof", "mac_anti_spoof"):
            self.set_anti_spoof(vfid, vlan=program.vlan_anti_spoof if diff("vlan_anti_spoof") else None,
                                mac=program.mac_anti_spoof if diff("mac_anti_spoof") else None)

    def _step_strip_insert(self, vfid, rec, program, previous, diff) -> None:
        if diff("strip", "insert"):
            self.set_strip_insert(vfid, strip=program.strip if diff("strip") else None,
                                  insert=program.insert if diff("insert") else None)

    def _step_gates(self, vfid, rec, program, previous, diff) -> None:
        gates = {g: getattr(program, g) for g in GATE_FIELDS if diff(g)}
        if gates:
            self.set_rxmode(vfid, insert=program.insert, **gates)

    def _step_link(self, vfid, rec, program, previous, diff) -> None:
        if diff("link") and (program.link != "auto" or previous is not None):
            self.set_link(vfid, program.link)

    def teardown(self, vfid: int, rec: VFRecord, prog: VFProgram | None, random_mac: str) -> None:
        """Reference 5.2 delete, fixed where the original left settings behind: VLAN filters off, MAC
        anti-spoof off, allow-list removed and a random default MAC, rate 0, insert and strip off, link auto,
        unicast and multicast promiscuity off, then (not reset by the original) broadcast back on, untagged
        back to the NIC default and VLAN anti-spoof off. `prog` is the program the VF had (the manager's);
        None (a VF vfd never programmed) resets every setting but the filters the record does not know."""
        known = prog is not None
        self.remove_mirror(vfid, rec)
        if rec.vlans:
            self.set_vlan_filter(vfid, add=[], remove=sorted(rec.vlans))
            rec.vlans = set()
        if not known or prog.mac_anti_spoof:
            self.set_anti_spoof(vfid, mac=False)
        if rec.allow or rec.default or rec.guest_mac:
            self.set_macs(vfid, random_mac, [], [], list(rec.allow), True)
            rec.allow, rec.default = [], random_mac
        if (not known or prog.max_rate or prog.min_rate) and self.profile.has(Feature.MAX_RATE):
            self.set_rates(vfid, 0, 0)
        if not known or prog.insert or prog.strip:
            self.set_strip_insert(vfid, strip=False, insert=0)
        if known and prog.link != "auto":
            self.set_link(vfid, "auto")
        if not known or prog.uucast:
            self.set_rxmode(vfid, uucast=False)
        if not known or prog.mcast:
            self.set_rxmode(vfid, mcast=False)
        if self.profile.has(Feature.BCAST_GATE) and (not known or not prog.bcast):
            self.set_rxmode(vfid, bcast=True)
        if self.profile.has(Feature.UNTAGGED_GATE) and (not known or prog.untagged):
            self.set_rxmode(vfid, untagged=False)
        if not known or prog.vlan_anti_spoof:
            self.set_anti_spoof(vfid, vlan=False)
        rec.guest_mac, rec.guest_macs = None, []


class NoVfApiAdapter(PmdAdapter):
    """A PMD with no PF-side VF API in 22.11 (net_null, iavf, ice, mlx5, ...): a profile with no VF
    feature, so admission refuses every VF on it, naming the driver and the first feature the config
    needs.  Nothing is ever silently skipped: every VF operation raises."""

    has_vf_api = False
    has_mailbox = False

    def __init__(self, ffi, port: int, pf_id: str, driver: str | None = None):
        super().__init__(ffi, port, pf_id, driver)
        self.driver = driver or "unknown"
        self.profile = DriverProfile(driver=self.driver, features=frozenset(), max_vfs=0, mac_table_size=0,
                                     vlan_filter_size=0)

    def apply(self, vfid, rec, program, previous):
        raise BackendError(self.pf_id, "apply", f"driver {self.driver} has no VF API in DPDK 22.11", vfid)

    def teardown(self, vfid, rec, prog, random_mac):
        """Nothing can have been programmed."""


ADAPTER_MODULES = {"net_ixgbe": "pmd_ixgbe", "net_i40e": "pmd_i40e", "net_bnxt": "pmd_bnxt"}


def adapter_class(driver: str):
    """The adapter class for a DPDK driver name; NoVfApiAdapter for any driver without a VF API."""
    mod = ADAPTER_MODULES.get(driver)
    if mod is None:
        return NoVfApiAdapter
    return importlib.import_module(f"vfd.backends.dpdk.{mod}").ADAPTER


def make_adapter(ffi, port: int, pf_id: str, driver: str) -> PmdAdapter:
    return adapter_class(driver)(ffi, port, pf_id, driver)


def percentages(values: dict[int, int]) -> dict[int, int]:
    """Integer percentages of `values` that total exactly 100, by vfd's one normalisation rule
    (vfd.policy.qos.normalise_shares, applied to a single column)."""
    return {k: v[0] for k, v in normalise_shares({k: {0: w} for k, w in values.items()}, [0]).items()}


DEFAULT_CLASS = {"min_bw": 1, "max_bw": 100, "lsp": False}    # TrafficClass defaults (vfd.model.mainconfig)


def classes(tclasses: list[dict], shares: dict[int, dict[int, int]], all_tcs: int = 0) -> dict[int, dict]:
    """The traffic classes by TC number: the PF's classes, plus a default class for a TC that VFs have shares in
    without a class (the manager's default TCs); with neither, `all_tcs` default classes."""
    out = {t["pri"]: dict(DEFAULT_CLASS, **t) for t in tclasses}
    for tc in sorted({tc for share in shares.values() for tc in share} - set(out)):
        out[tc] = dict(DEFAULT_CLASS, pri=tc)
    if not out:
        out = {tc: dict(DEFAULT_CLASS, pri=tc) for tc in range(all_tcs)}
    return out


@dataclass
class MirrorRule:
    """One rte_flow rule and the C objects it points into (kept alive with it)."""

    attr: object
    pattern: object
    actions: object
    keep: tuple

    @property
    def args(self) -> tuple:
        return self.attr, self.pattern, self.actions


def mirror_rules(src_mac: str, target: int, direction: str) -> list[MirrorRule]:
    """The rules mirroring a VF's traffic to VF `target`: transfer (e-switch) rules matching the source VF's
    MAC as destination ("in": what it receives) and/or source ("out": what it sends), each with
    SAMPLE{ratio 1, actions [VF{target}, END]}: a copy of every packet goes to the target, the packet itself
    continues.  Pure: builds ctypes objects, calls nothing."""
    rules = []
    for field_name, wanted in (("dst", ("in", "all")), ("src", ("out", "all"))):
        if direction not in wanted:
            continue
        spec, mask = real_ffi.RteFlowItemEth(), real_ffi.RteFlowItemEth()
        setattr(spec, field_name, real_ffi.mac_addr(src_mac))
        setattr(mask, field_name, real_ffi.mac_addr("ff:ff:ff:ff:ff:ff"))
        pattern = (real_ffi.RteFlowItem * 2)()
        pattern[0].type = real_ffi.RTE_FLOW_ITEM_TYPE_ETH
        pattern[0].spec, pattern[0].mask = ctypes.addressof(spec), ctypes.addressof(mask)
        pattern[1].type = real_ffi.RTE_FLOW_ITEM_TYPE_END
        vf = real_ffi.RteFlowActionVf(id=target)
        copy_to = (real_ffi.RteFlowAction * 2)()
        copy_to[0].type, copy_to[0].conf = real_ffi.RTE_FLOW_ACTION_TYPE_VF, ctypes.addressof(vf)
        copy_to[1].type = real_ffi.RTE_FLOW_ACTION_TYPE_END
        sample = real_ffi.RteFlowActionSample(ratio=1, actions=ctypes.addressof(copy_to))
        actions = (real_ffi.RteFlowAction * 2)()
        actions[0].type, actions[0].conf = real_ffi.RTE_FLOW_ACTION_TYPE_SAMPLE, ctypes.addressof(sample)
        actions[1].type = real_ffi.RTE_FLOW_ACTION_TYPE_END
        attr = real_ffi.RteFlowAttr(transfer=1)
        rules.append(MirrorRule(attr, pattern, actions, (spec, mask, vf, copy_to, sample)))
    return rules


def narrowed_profile(family: str, driver: str, keep: set[Feature], **changes) -> DriverProfile:
    return PROFILES[family].narrowed(frozenset(keep), driver=driver, **changes)

