"""Neutron `binding:profile` ATT_* keys -> a vfd VF config (the dict written to `<config_dir>/<port>.json`).

The original VFd's neutron patch validated these keys with a JSON schema and its nova patch turned
them into a VF config; this module does both, with the same rules, as pure functions (no os-vif,
no I/O) so they can be tested alone. Every refusal is a `ProfileError` naming the key, the value
and the rule, e.g.::

    binding:profile ATT_VF_VLAN_STRIP=true: strip needs exactly one VLAN; ATT_VF_VLAN_FILTER has
    2 (10, 20): leave ATT_VF_VLAN_STRIP out or set it false (rule strip_one_vlan)

Keys of `binding:profile` that are not ATT_* keys (`pci_slot`, `physical_network`, `trusted`, ...
written by neutron and nova) are ignored; an unknown key starting with `ATT_` is refused, since it
is almost certainly a misspelt one. docs/openstack.md has the table of keys, types and defaults.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

from pydantic import ValidationError

from vfd.macaddr import parse_unicast_mac
from vfd.model.common import describe_validation_error
from vfd.model.vfconfig import VFConfig

VLAN_MIN, VLAN_MAX = 1, 4095

# binding:profile key -> VF config field, for the boolean keys.
BOOL_KEYS: dict[str, str] = {
    "ATT_VF_VLAN_STRIP": "strip_stag",
    "ATT_VF_INSERT_STAG": "insert_stag",
    "ATT_VF_MAC_ANTI_SPOOF_CHECK": "mac_anti_spoof",
    "ATT_VF_VLAN_ANTI_SPOOF_CHECK": "vlan_anti_spoof",
    "ATT_VF_BROADCAST_ALLOW": "allow_bcast",
    "ATT_VF_UNKNOWN_MULTICAST_ALLOW": "allow_mcast",
    "ATT_VF_UNKNOWN_UNICAST_ALLOW": "allow_un_ucast",
}
PROFILE_KEYS: tuple[str, ...] = (
    "ATT_VF_VLAN_FILTER", "ATT_VF_VLAN_STRIP", "ATT_VF_INSERT_STAG", "ATT_VF_MAC_FILTER",
    "ATT_VF_MAC_ANTI_SPOOF_CHECK", "ATT_VF_VLAN_ANTI_SPOOF_CHECK", "ATT_VF_BROADCAST_ALLOW",
    "ATT_VF_UNKNOWN_MULTICAST_ALLOW", "ATT_VF_UNKNOWN_UNICAST_ALLOW", "ATT_VF_LINK_STATUS",
    "RATE_LIMIT", "ATT_VF_MIRRORS",
)
# binding:profile key -> VF config field, for the keys passed on as they are: the VF config model
# alone judges their values (link state names, the rate's range), its refusal naming the key.
VALUE_KEYS: dict[str, str] = {"ATT_VF_LINK_STATUS": "link_status", "RATE_LIMIT": "rate"}


class ProfileError(ValueError):
    """A binding:profile value that breaks a rule; `key`, `value` and `rule` say which."""

    def __init__(self, key: str, value: object, rule: str, why: str):
        self.key = key
        self.value = value
        self.rule = rule
        self.why = why
        super().__init__(f"binding:profile {key}={_show(value)}: {why} (rule {rule})")


def _show(value: object) -> str:
    try:
        text = json.dumps(value, sort_keys=True)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."


@dataclass(frozen=True)
class MirrorRequest:
    """One ATT_VF_MIRRORS entry: mirror the port's traffic on `vlans` (empty = all) to `targets` (port ids)."""

    vlans: tuple[int, ...]
    targets: tuple[str, ...]


@dataclass(frozen=True)
class AttProfile:
    """The ATT_* keys of one binding:profile, checked and normalised; None / empty = key absent."""

    vlans: tuple[int, ...] | None = None
    macs: tuple[str, ...] = ()
    flags: dict[str, bool] = field(default_factory=dict)   # VF config field -> value, keys given only
    values: dict[str, object] = field(default_factory=dict)  # VALUE_KEYS' fields -> value as given, unchecked
    mirrors: tuple[MirrorRequest, ...] = ()
    given: frozenset[str] = frozenset()                    # the profile keys present

    @property
    def has_att_keys(self) -> bool:
        return bool(self.given)


# ---- parsing: one key at a time, no host context -------------------------------------------------
def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _vlan_list(value: object) -> tuple:
    """Only the shape the translation needs (a list); its ids are the VF config model's to judge."""
    key = "ATT_VF_VLAN_FILTER"
    if not isinstance(value, list):
        raise ProfileError(key, value, "vlan_list", "must be a non-empty list of VLAN ids (integers 1..4095)")
    return tuple(value)


def _mac_list(value: object) -> tuple[str, ...]:
    key = "ATT_VF_MAC_FILTER"
    if not isinstance(value, list):
        raise ProfileError(key, value, "mac_list", "must be a list of MAC addresses")
    out: list[str] = []
    for i, text in enumerate(value):
        try:
            mac = parse_unicast_mac(text)
        except ValueError as exc:
            raise ProfileError(key, value, "mac_format", f"element {i} ({_show(text)}): {exc}") from None
        out.append(mac)                 # a MAC listed twice: the model refuses it (vf_config)
    return tuple(out)


def _bool(key: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ProfileError(key, value, "boolean", "must be a JSON boolean, true or false")
    return value


def _mirror_vlans(value: object, where: str) -> tuple[int, ...]:
    key = "ATT_VF_MIRRORS"
    if not isinstance(value, list):
        raise ProfileError(key, value, "mirror_vlan", f"{where}.Vlan must be a list of VLAN ids or \"a-b\" ranges")
    out: list[int] = []
    for item in value:
        if _is_int(item):
            lo = hi = item
        elif isinstance(item, str) and item.count("-") == 1 and all(p.strip().isdigit() for p in item.split("-")):
            lo, hi = (int(p) for p in item.split("-"))
        else:
            raise ProfileError(key, item, "mirror_vlan",
                               f"{where}.Vlan entries must be integers or \"a-b\" ranges such as \"100-110\"")
        if not (VLAN_MIN <= lo <= hi <= VLAN_MAX):
            raise ProfileError(key, item, "mirror_vlan",
                               f"{where}.Vlan range must lie within {VLAN_MIN}..{VLAN_MAX} with its start <= its end")
        out.extend(v for v in range(lo, hi + 1) if v not in out)
    return tuple(out)


def _mirror_targets(value: object, where: str) -> tuple[str, ...]:
    key = "ATT_VF_MIRRORS"
    if not isinstance(value, list) or not value:
        raise ProfileError(key, value, "mirror_target_format", f"{where}.Target must be a non-empty list of port UUIDs")
    out: list[str] = []
    for item in value:
        try:
            port = str(uuid.UUID(item)) if isinstance(item, str) else None
        except ValueError:
            port = None
        if port is None:
            raise ProfileError(key, item, "mirror_target_format", f"{where}.Target entries must be neutron port UUIDs")
        if port not in out:
            out.append(port)
    return tuple(out)


def _mirrors(value: object) -> tuple[MirrorRequest, ...]:
    key = "ATT_VF_MIRRORS"
    shape = 'must be a list of {"mirror": {"Vlan": [id or "a-b", ...], "Target": [port-uuid, ...]}}'
    if not isinstance(value, list):
        raise ProfileError(key, value, "mirror_shape", shape)
    out = []
    for i, entry in enumerate(value):
        where = f"[{i}].mirror"
        if not isinstance(entry, dict) or set(entry) != {"mirror"} or not isinstance(entry["mirror"], dict):
            raise ProfileError(key, value, "mirror_shape",
                               f'entry {i} must be an object {{"mirror": {{"Vlan": [...], "Target": [...]}}}}')
        body = entry["mirror"]
        extra = sorted(set(body) - {"Vlan", "Target"})
        if extra:
            raise ProfileError(key, value, "mirror_shape", f"{where} has unknown key(s) {', '.join(extra)} "
                                                           "(only Vlan and Target)")
        if "Target" not in body:
            raise ProfileError(key, value, "mirror_shape", f"{where} has no Target")
        vlans = _mirror_vlans(body["Vlan"], where) if "Vlan" in body else ()
        out.append(MirrorRequest(vlans=vlans, targets=_mirror_targets(body["Target"], where)))
    return tuple(out)


def parse_profile(profile: Mapping | str | None) -> AttProfile:
    """Check every ATT_* key of a binding:profile on its own; raise ProfileError on the first bad one."""
    if profile is None or profile == "":
        return AttProfile()
    if isinstance(profile, (str, bytes)):
        try:
            profile = json.loads(profile)
        except ValueError as exc:
            raise ProfileError("binding:profile", profile, "profile_type", f"is not valid JSON: {exc}") from None
    if not isinstance(profile, Mapping):
        raise ProfileError("binding:profile", profile, "profile_type", "must be a JSON object")
    for key in profile:
        if isinstance(key, str) and key.upper().startswith("ATT_") and key not in PROFILE_KEYS:
            raise ProfileError(key, profile[key], "unknown_key",
                               "is not a vfd key; the ATT_* keys are " + ", ".join(k for k in PROFILE_KEYS
                                                                                    if k.startswith("ATT_")))
    vlans = _vlan_list(profile["ATT_VF_VLAN_FILTER"]) if "ATT_VF_VLAN_FILTER" in profile else None
    macs = _mac_list(profile["ATT_VF_MAC_FILTER"]) if "ATT_VF_MAC_FILTER" in profile else ()
    flags = {fld: _bool(key, profile[key]) for key, fld in BOOL_KEYS.items() if key in profile}
    values = {fld: profile[key] for key, fld in VALUE_KEYS.items() if key in profile}
    mirrors = _mirrors(profile["ATT_VF_MIRRORS"]) if "ATT_VF_MIRRORS" in profile else ()
    # The neutron schema's own rule (vfd itself may strip several VLANs); insert with several VLANs is the
    # model's rule (insert_stag_one_vlan), refused when the config is checked (vf_config).
    if vlans is not None and len(vlans) > 1 and profile.get("ATT_VF_VLAN_STRIP") is True:
        raise ProfileError("ATT_VF_VLAN_STRIP", True, "strip_one_vlan",
                           f"strip needs exactly one VLAN; ATT_VF_VLAN_FILTER has {len(vlans)} "
                           f"({', '.join(map(str, vlans[:8]))}{', ...' if len(vlans) > 8 else ''}): "
                           f"leave ATT_VF_VLAN_STRIP out or set it false")
    return AttProfile(vlans=vlans, macs=macs, flags=flags, values=values, mirrors=mirrors,
                      given=frozenset(k for k in PROFILE_KEYS if k in profile))


# ---- building the VF config: the port's place on the host -------------------------------------------
def vf_config(profile: Mapping | str | AttProfile | None, *, name: str, pciid: str, vfid: int,
              mac: str | None = None, network_vlan: int | None = None,
              plugged: Mapping[str, tuple[str, int]] | None = None, port_id: str | None = None) -> dict:
    """The VF config for one port, as nova's vf_agent patch wrote it, with the schema rules applied.

    name/pciid/vfid: the config's name and the VF (PF PCI id, VF index) the port's VF PCI address
    maps to. mac: the port's MAC (first in `macs`, the VF's default MAC). network_vlan: the
    network's VLAN segment, used when the profile has no ATT_VF_VLAN_FILTER. plugged: port id ->
    (PF id, vfid) of the ports vfd has live on this host, to translate mirror targets. port_id:
    this port (a mirror to itself is refused).
    """
    att = profile if isinstance(profile, AttProfile) else parse_profile(profile)
    if att.vlans is not None:
        vlans = list(att.vlans)
    elif network_vlan is not None:
        vlans = [network_vlan]
    else:
        raise ProfileError("ATT_VF_VLAN_FILTER", None, "vlan_required",
                           "the port's network has no VLAN segment and binding:profile has no ATT_VF_VLAN_FILTER; "
                           "vfd needs at least one VLAN per VF")
    cfg: dict = {"name": name, "pciid": pciid, "vfid": vfid, "vlans": vlans}
    flags = dict(att.flags)
    if len(vlans) == 1:
        cfg["strip_stag"] = flags.pop("strip_stag", True)   # a port VLAN unless the guest tags itself
        if "insert_stag" in flags:                          # else vfd inserts when it strips
            cfg["insert_stag"] = flags.pop("insert_stag")
    else:                                                   # several VLANs: the guest tags its frames
        cfg["strip_stag"] = flags.pop("strip_stag", False)
        cfg["insert_stag"] = flags.pop("insert_stag", False)
    macs: list[str] = []
    if mac:
        try:
            macs.append(parse_unicast_mac(mac))
        except ValueError as exc:
            raise ProfileError("port mac_address", mac, "mac_format", str(exc)) from None
    macs += [m for m in att.macs if m not in macs]     # the port MAC may be in the filter too
    if macs:
        cfg["macs"] = macs
    cfg.update(flags)
    cfg.update(att.values)
    if att.mirrors:
        cfg["mirror"] = _mirror_config(att.mirrors, vlans, pciid, vfid, plugged or {}, port_id)
    _check_with_model(cfg, att)
    return cfg


# VF config field -> the binding:profile key it comes from (the model's refusals name the key).
FIELD_KEYS: dict[str, str] = {**{fld: key for key, fld in BOOL_KEYS.items()},
                              **{fld: key for key, fld in VALUE_KEYS.items()}, "vlans": "ATT_VF_VLAN_FILTER",
                              "macs": "ATT_VF_MAC_FILTER", "mirror": "ATT_VF_MIRRORS"}


def _check_with_model(cfg: dict, att: AttProfile) -> None:
    """The VF config model decides what a config may hold (VLAN ids, counts, duplicates, MACs, link state
    names, the rate's range): one place for those rules. Its first refusal becomes a ProfileError naming
    the key the user wrote (rule vf_config)."""
    try:
        model = VFConfig.model_validate(cfg)
    except ValidationError as err:
        first = err.errors(include_url=False)[0]
        fld = str(first["loc"][0]) if first["loc"] else ""
        key = FIELD_KEYS.get(fld, fld or "binding:profile")
        if fld == "vlans" and att.vlans is None:
            key = "network vlan"
        elif fld == "macs" and "ATT_VF_MAC_FILTER" not in att.given:
            key = "port mac_address"
        value = cfg.get(fld)
        raise ProfileError(key, value, "vf_config", describe_validation_error(err)[0]) from None
    for fld in att.values:                  # the model's spelling (e.g. "ON" -> "on") goes into the file
        cfg[fld] = getattr(model, fld)


def _mirror_config(mirrors: tuple[MirrorRequest, ...], vlans: list[int], pciid: str, vfid: int,
                   plugged: Mapping[str, tuple[str, int]], port_id: str | None) -> dict:
    """vfd mirrors all of a VF's traffic to one other VF of the same PF: refuse what it cannot express."""
    key = "ATT_VF_MIRRORS"
    value = [{"mirror": {**({"Vlan": list(m.vlans)} if m.vlans else {}), "Target": list(m.targets)}}
             for m in mirrors]
    targets: list[str] = []
    for m in mirrors:
        targets += [t for t in m.targets if t not in targets]
    if len(targets) != 1:
        raise ProfileError(key, value, "mirror_single_target",
                           f"vfd mirrors a VF to exactly one target VF; the entries name {len(targets)} target ports")
    target = targets[0]
    covered: set[int] = set()
    for m in mirrors:
        if not m.vlans:
            covered = set(vlans)
            break
        covered |= set(m.vlans)
    missing = [v for v in vlans if v not in covered]
    if missing:
        raise ProfileError(key, value, "mirror_vlans",
                           f"vfd mirrors all of a VF's traffic, not some VLANs: Vlan must cover every VLAN of the "
                           f"port ({', '.join(map(str, vlans))}) or be left out; missing {', '.join(map(str, missing))}")
    if port_id is not None and target == _canonical_port(port_id):
        raise ProfileError(key, value, "mirror_target_self", "the mirror target is this port itself")
    where = {_canonical_port(p): loc for p, loc in plugged.items()}.get(target)
    if where is None:
        raise ProfileError(key, value, "mirror_target_known",
                           f"target port {target} is not plugged on this host (vfd has no live VF for it); "
                           "plug the target port first")
    t_pf, t_vf = where
    if t_pf != pciid:
        raise ProfileError(key, value, "mirror_target_same_pf",
                           f"target port {target} is VF {t_vf} of PF {t_pf}; vfd mirrors only to a VF of the same "
                           f"PF ({pciid})")
    if t_vf == vfid:
        raise ProfileError(key, value, "mirror_target_self", f"target port {target} is this VF ({vfid}) itself")
    return {"target": t_vf, "direction": "all"}


def _canonical_port(port: str) -> str:
    try:
        return str(uuid.UUID(port))
    except (ValueError, TypeError, AttributeError):
        return port
