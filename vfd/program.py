"""The VF program: what must be in the NIC for one VF, derived from its config and the PF's driver.

Backends consume programs, never configs: one translation (here) decides strip/insert, effective
anti-spoof and admission gates and rates in Mb/s, so every backend programs the same meaning.
The field names are the sim NIC's state format (docs/sim.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from functools import cached_property
from typing import NamedTuple

from vfd.capabilities import DriverProfile, Feature
from vfd.errors import AdmissionError, CapabilityError
from vfd.model.vfconfig import VFConfig

# config field -> (program field, feature that controls it, behaviour of a NIC without the control)
GATES = {
    "allow_bcast": ("bcast", Feature.BCAST_GATE, True),
    "allow_mcast": ("mcast", Feature.MCAST_GATE, True),
    "allow_un_ucast": ("uucast", Feature.UUCAST_GATE, False),
    "allow_untagged": ("untagged", Feature.UNTAGGED_GATE, False),
    "mac_anti_spoof": ("mac_anti_spoof", Feature.MAC_ANTI_SPOOF, False),
    "vlan_anti_spoof": ("vlan_anti_spoof", Feature.VLAN_ANTI_SPOOF, False),
}


# The one apply order (the original's, reference 5.2): mirror (its rule matches the VF's MAC), VLANs,
# MACs (allow-list first, default last), rates, anti-spoof, strip/insert, the receive gates, link.
# Each step names the program fields it sets; every backend walks these steps in this order.
APPLY_STEPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("mirror", ("mirror",)),
    ("vlans", ("vlans", "vlan_proto")),
    ("macs", ("macs", "mac")),
    ("rates", ("max_rate", "min_rate")),
    ("anti_spoof", ("vlan_anti_spoof", "mac_anti_spoof")),
    ("strip_insert", ("strip", "strip_ctag", "insert", "pcp")),
    ("gates", ("bcast", "mcast", "uucast", "untagged")),
    ("link", ("link",)),
)
APPLY_ORDER: tuple[str, ...] = tuple(f for _, names in APPLY_STEPS for f in names)


@dataclass(frozen=True)
class VFProgram:
    mac: str | None            # default MAC; None leaves the VF's current MAC alone
    macs: tuple[str, ...]      # allow-list: MACs accepted besides the default
    vlans: tuple[int, ...]
    strip: bool
    insert: int                # VLAN id inserted on TX, 0 = none
    vlan_proto: str
    mac_anti_spoof: bool
    vlan_anti_spoof: bool
    bcast: bool
    mcast: bool
    uucast: bool
    untagged: bool
    max_rate: int              # Mb/s, 0 = unlimited
    min_rate: int              # Mb/s, 0 = none
    link: str                  # on / off / auto
    mirror: tuple[int, str] | None  # (target vfid, in|out|all)
    pcp: int = 0               # 802.1p priority of the inserted port VLAN
    strip_ctag: bool = False   # strip the inner (C-tag) VLAN as well (mlx5)

    def to_state(self) -> dict:
        """The program in the sim NIC's state vocabulary (a new dict each call: callers may change it).
        Built field by field: dataclasses.asdict deep-copies, and this runs twice per VF change."""
        d = {f: getattr(self, f) for f in _FIELDS}
        d["macs"] = list(self.macs)
        d["vlans"] = list(self.vlans)
        d["mirror"] = None if self.mirror is None else {"target": self.mirror[0], "direction": self.mirror[1]}
        return d

    @cached_property
    def compared(self) -> tuple[tuple[str, object], ...]:
        """to_state() as (field, value) pairs, built once per program: the drift check compares a
        program at least twice per change (before and after). Read-only: never change the values."""
        return tuple(self.to_state().items())

    def changed_fields(self, previous: "VFProgram | None") -> list[str]:
        """The one diff: the fields that differ from `previous` (all of them without one), in APPLY_ORDER."""
        if previous is None:
            return list(APPLY_ORDER)
        return [f for f in APPLY_ORDER if getattr(self, f) != getattr(previous, f)]


_FIELDS = tuple(f.name for f in fields(VFProgram))


class FieldCheck(NamedTuple):
    """One field of a VF: what the program wants next to what the NIC reports. A named tuple: the
    check makes one per field twice per VF change, and a frozen dataclass is several times slower
    to build."""
    field: str
    desired: object
    programmed: object          # None with `state` "unverifiable" or "missing"
    state: str                  # "ok", "differs", "unverifiable" (the backend cannot read it back)

    @property
    def differs(self) -> bool:
        return self.state == "differs"


def canonical(value: object) -> str:
    return json.dumps(value, sort_keys=True)


_PLAIN = (bool, int, str, type(None))


def same_value(have: object, want: object) -> bool:
    """Equal as JSON values (what `canonical` compares), without encoding the common cases: scalars
    of the same type (so True is not 1) and lists of them; anything else through `canonical`."""
    th, tw = type(have), type(want)
    if th is tw and th in _PLAIN:
        return have == want
    if th in (list, tuple) and tw in (list, tuple):
        return len(have) == len(want) and all(same_value(h, w) for h, w in zip(have, want))
    return canonical(have) == canonical(want)


def compare(program: VFProgram, actual: dict, unverifiable: frozenset[str] = frozenset(),
            mismatches_only: bool = False) -> list[FieldCheck]:
    """The one drift check (status and reconcile both use it): each field compared as a value, so a
    mirror's key order or a list's spelling never counts; a program without a default MAC leaves the
    VF's MAC alone, so whatever the NIC has is right; a field the backend cannot read is reported as
    unverifiable, never as in sync and never as drift. `mismatches_only`: leave out the fields that
    are "ok" (a backend choosing what to send or verifying a change needs only the others)."""
    out = []
    for key, want in program.compared:
        if key in unverifiable:
            out.append(FieldCheck(key, want, None, "unverifiable"))
            continue
        if key == "mac" and want is None:
            want = actual.get("mac")
        if key not in actual:
            out.append(FieldCheck(key, want, None, "differs"))
            continue
        have = actual[key]
        if same_value(have, want):
            if not mismatches_only:
                out.append(FieldCheck(key, want, have, "ok"))
        else:
            out.append(FieldCheck(key, want, have, "differs"))
    return out


def cleared_state(mac: str | None) -> dict:
    """A VF without policy, in the program vocabulary: what power-on or a delete leaves behind."""
    return {"mac": mac, "macs": [], "vlans": [], "strip": False, "insert": 0, "vlan_proto": "802.1q",
            "mac_anti_spoof": False, "vlan_anti_spoof": False, "bcast": True, "mcast": False,
            "uucast": False, "untagged": False, "max_rate": 0, "min_rate": 0, "link": "auto", "mirror": None,
            "pcp": 0, "strip_ctag": False}


def _gate(cfg: VFConfig, field: str, profile: DriverProfile, backend: str) -> bool:
    _, feature, natural = GATES[field]
    value = getattr(cfg, field)
    if field == "mac_anti_spoof" and value is None:
        value = profile.mac_anti_spoof_default if profile.has(feature) else profile.fixed.get(field, natural)
    if profile.has(feature):
        return bool(value)
    fixed = profile.fixed.get(field, natural)
    if cfg.explicit(field) and value != fixed:
        raise CapabilityError(feature.value, profile.driver, backend, field, value,
                              f"the NIC always behaves as {field}={str(fixed).lower()}")
    return fixed


def _need(profile: DriverProfile, feature: Feature, backend: str, field: str, value: object, why: str = "") -> None:
    if not profile.has(feature):
        raise CapabilityError(feature.value, profile.driver, backend, field, value, why)


def build_program(cfg: VFConfig, profile: DriverProfile, backend: str, link_speed: int) -> VFProgram:
    """Translate a validated config for one driver; refuse what the driver cannot do."""
    vlans = tuple(cfg.vlans)
    strip = cfg.strip_stag
    insert = vlans[0] if (cfg.insert and len(vlans) == 1) else 0
    if len(vlans) > 1:
        _need(profile, Feature.VLAN_FILTER, backend, "vlans", list(vlans), "more than one VLAN needs a filter list")
    elif not strip:
        _need(profile, Feature.VLAN_FILTER, backend, "strip_stag", False,
              "a VLAN the guest tags itself needs a VLAN filter; set strip_stag to make it a port VLAN")
    if strip:
        _need(profile, Feature.VLAN_STRIP, backend, "strip_stag", True)
    if insert:
        _need(profile, Feature.VLAN_INSERT, backend, "insert_stag", True)
    if strip != bool(insert):
        field = "insert_stag" if cfg.explicit("insert_stag") else "strip_stag"
        _need(profile, Feature.STRIP_INSERT_SPLIT, backend, field, getattr(cfg, field),
              "this NIC strips and inserts the VLAN together (port VLAN)")
    if cfg.vlan_proto == "802.1ad":
        _need(profile, Feature.QINQ, backend, "vlan_proto", cfg.vlan_proto)
        if not (strip and insert):
            raise AdmissionError("qinq_port_vlan", "vlan_proto", cfg.vlan_proto,
                                 "802.1ad needs exactly one VLAN with strip_stag (an outer S-tag the NIC adds)")
    if cfg.strip_ctag:
        _need(profile, Feature.CTAG_STRIP, backend, "strip_ctag", True)
    macs = cfg.mac_list
    if len(macs) > 1:
        _need(profile, Feature.MAC_ALLOWLIST, backend, "macs", macs)
    gates = {GATES[f][0]: _gate(cfg, f, profile, backend) for f in GATES}
    for a, b, why in profile.coupled:
        pa, pb = GATES[a][0], GATES[b][0]
        if gates[pa] != gates[pb]:
            if cfg.explicit(a) and cfg.explicit(b):
                raise CapabilityError(f"separate {a} and {b}", profile.driver, backend, b, getattr(cfg, b), why)
            if cfg.explicit(a):
                gates[pb] = gates[pa]
            else:
                gates[pa] = gates[pb]
    for a, b, why in profile.requires:
        pa, pb = GATES[a][0], GATES[b][0]
        if gates[pa] and not gates[pb]:
            raise AdmissionError("driver_capability", b, gates[pb],
                                 f"{a} true needs {b} true on driver {profile.driver} ({why})")
    max_rate = min_rate = 0
    if cfg.rate:
        _need(profile, Feature.MAX_RATE, backend, "rate", cfg.rate)
        if link_speed <= 0:
            raise AdmissionError("rate_needs_speed", "rate", cfg.rate,
                                 "the PF's link speed is unknown; set 'speed' (Mb/s) on the PF")
        max_rate = max(1, round(link_speed * cfg.rate))
    if cfg.min_rate:
        _need(profile, Feature.MIN_RATE, backend, "min_rate", cfg.min_rate)
        if link_speed <= 0:
            raise AdmissionError("rate_needs_speed", "min_rate", cfg.min_rate,
                                 "the PF's link speed is unknown; set 'speed' (Mb/s) on the PF")
        min_rate = max(1, round(link_speed * cfg.min_rate))
    if cfg.link_status != "auto":
        _need(profile, Feature.LINK_STATE, backend, "link_status", cfg.link_status)
    # The VF's QoS settings give the port VLAN's priority: one traffic class named -> its PCP.
    pcp = cfg.queues[0].priority if (insert and len(cfg.queues) == 1) else 0
    if pcp:
        _need(profile, Feature.VLAN_PCP, backend, "queues[0].priority", pcp)
    mirror = None
    if cfg.mirror is not None and cfg.mirror.mode != "off":
        _need(profile, Feature.MIRROR, backend, "mirror", cfg.mirror.model_dump())
        mirror = (cfg.mirror.target, cfg.mirror.mode)
    return VFProgram(
        mac=macs[0] if macs else None, macs=tuple(macs[1:]), vlans=vlans, strip=strip, insert=insert,
        vlan_proto=cfg.vlan_proto, max_rate=max_rate, min_rate=min_rate, link=cfg.link_status,
        mirror=mirror, pcp=pcp, strip_ctag=cfg.strip_ctag, **gates,
    )
