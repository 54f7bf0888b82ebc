"""The ordered, named admission rules for add and update (docs/admission.md lists them).

Each rule looks at one concern, reads only the request and the PF's indexes, and raises
AdmissionError naming itself, the field and the value. On update the VF being replaced is
excluded from every count, so a VF is checked against every other VF but itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from vfd.errors import AdmissionError
from vfd.model.vfconfig import VFConfig
from vfd.program import VFProgram, build_program
from vfd.state import LiveVF, PFState

MAX_GUARANTEED = 1.0
MAX_SHARE_SPREAD = 10
EPS = 1e-9


@dataclass
class Request:
    cfg: VFConfig
    pf: PFState | None
    replacing: LiveVF | None = None   # the live VF an update replaces (excluded from counts)
    guest_macs: dict[str, int] | None = None   # MACs guests registered through the mailbox, by VF
    program: VFProgram | None = None

    def others_own(self, vfid: int) -> bool:
        """True when `vfid` belongs to some VF other than the one being replaced."""
        r = self.replacing
        return not (r is not None and r.pf_id == self.pf.id and r.vfid == vfid)

    def excluded(self) -> LiveVF | None:
        r = self.replacing
        return r if (r is not None and r.pf_id == self.pf.id) else None


Rule = Callable[[Request], None]
RULES: list[tuple[str, Rule]] = []


def rule(name: str) -> Callable[[Rule], Rule]:
    def register(fn: Rule) -> Rule:
        RULES.append((name, fn))
        return fn
    return register


@rule("pf_managed")
def _pf_managed(req: Request) -> None:
    if req.pf is None:
        raise AdmissionError("pf_managed", "pciid", req.cfg.pciid, "the PF is not one of the PFs in the main config")


@rule("vfid_range")
def _vfid_range(req: Request) -> None:
    n = req.pf.vfs_count
    if not 0 <= req.cfg.vfid < n:
        have = f"has {n} VFs (0..{n - 1})" if n else "has no VFs"
        raise AdmissionError("vfid_range", "vfid", req.cfg.vfid, f"VF {req.cfg.vfid} is out of range; PF {req.pf.id} {have}")


@rule("vf_free")
def _vf_free(req: Request) -> None:
    owner = req.pf.vfs.get(req.cfg.vfid)
    if owner is not None and req.others_own(req.cfg.vfid):
        raise AdmissionError("vf_free", "vfid", req.cfg.vfid,
                             f"VF {req.cfg.vfid} on PF {req.pf.id} is already configured by '{owner.port_id}'")


@rule("driver_capability")
def _capability(req: Request) -> None:
    req.program = build_program(req.cfg, req.pf.profile, req.pf.backend, req.pf.link_speed)


@rule("guaranteed_rate_total")
def _min_rate(req: Request) -> None:
    if not req.cfg.min_rate:
        return
    old = req.excluded()
    total = req.pf.min_rate_sum - (old.config.min_rate if old else 0.0) + req.cfg.min_rate
    if total > MAX_GUARANTEED + EPS:
        raise AdmissionError("guaranteed_rate_total", "min_rate", req.cfg.min_rate,
                             f"guaranteed rates on PF {req.pf.id} would sum to {total:.3f} of the link (at most 1)")


@rule("pf_vlan_limit")
def _pf_vlans(req: Request) -> None:
    refs = req.pf.vlan_refs
    old = req.excluded()
    old_vlans = set(old.config.vlans) if old else set()
    distinct = len(refs)
    for vid in old_vlans:                    # VLANs only the replaced VF used go away
        if refs.get(vid, 0) == 1:
            distinct -= 1
    for vid in set(req.cfg.vlans):
        if refs.get(vid, 0) - (1 if vid in old_vlans else 0) <= 0:
            distinct += 1
    limit = req.pf.profile.vlan_filter_size
    if distinct > limit:
        raise AdmissionError("pf_vlan_limit", "vlans", req.cfg.vlans,
                             f"PF {req.pf.id} would filter {distinct} distinct VLANs (limit {limit})")


@rule("mac_unique")
def _mac_unique(req: Request) -> None:
    for mac in req.cfg.mac_list:
        owner = req.pf.mac_owner.get(mac)
        if owner is not None and req.others_own(owner):
            raise AdmissionError("mac_unique", "macs", mac, f"MAC {mac} is already used by VF {owner} on PF {req.pf.id}")
        guest = (req.guest_macs or {}).get(mac)
        if guest is not None and guest != req.cfg.vfid and req.others_own(guest):
            raise AdmissionError("mac_unique", "macs", mac,
                                 f"MAC {mac} was registered by the guest on VF {guest} of PF {req.pf.id}")


@rule("pf_mac_table")
def _mac_table(req: Request) -> None:
    old = req.excluded()
    total = req.pf.mac_total - (len(old.config.mac_list) if old else 0) + len(req.cfg.mac_list)
    limit = req.pf.profile.mac_table_size
    if total > limit:
        raise AdmissionError("pf_mac_table", "macs", len(req.cfg.mac_list),
                             f"PF {req.pf.id} would hold {total} MACs; driver {req.pf.profile.driver} has {limit} entries")


@rule("qos_share_total")
def _share_total(req: Request) -> None:
    if not req.pf.qos or req.pf.cfg.vf_oversubscription:
        return
    old = req.excluded()
    old_shares = req.pf.shares_of(old.config) if old else {}
    for tc, share in req.pf.shares_of(req.cfg).items():
        total = req.pf.share_sum[tc] - old_shares.get(tc, 0) + share
        if total > 100:
            raise AdmissionError("qos_share_total", f"queues[priority={tc}].share", f"{share}%",
                                 f"traffic class {tc} on PF {req.pf.id} would be allocated {total}% (at most 100% "
                                 "unless the PF sets vf_oversubscription)")


@rule("qos_share_spread")
def _share_spread(req: Request) -> None:
    if not req.pf.qos:
        return
    old = req.excluded()
    old_shares = req.pf.shares_of(old.config) if old else {}
    for tc, share in req.pf.shares_of(req.cfg).items():
        values = req.pf.share_values[tc].copy()
        if old_shares.get(tc) is not None:
            values[old_shares[tc]] -= 1
        present = [v for v, n in values.items() if n > 0] + [share]
        lo, hi = min(present), max(present)
        if hi > lo * MAX_SHARE_SPREAD:
            named = any(q.priority == tc for q in req.cfg.queues)
            default = "" if named else (f"; this config gives TC {tc} {share}% (the default share given to TCs the "
                                        f"config does not name)")
            raise AdmissionError("qos_share_spread", f"queues[priority={tc}].share" if named else "queues",
                                 f"{share}%", f"traffic class {tc} on PF {req.pf.id} would span {lo}%..{hi}%, more "
                                 f"than {MAX_SHARE_SPREAD}x apart{default}")


@rule("mirror_target")
def _mirror(req: Request) -> None:
    m = req.cfg.mirror
    if m is None or m.mode == "off":
        return
    n = req.pf.vfs_count
    if m.target == req.cfg.vfid or not 0 <= m.target < n:
        raise AdmissionError("mirror_target", "mirror.target", m.target,
                             f"the mirror target must be another VF of PF {req.pf.id}, 0..{n - 1}")


def admit(cfg: VFConfig, pf: PFState | None, replacing: LiveVF | None = None,
          guest_macs: dict[str, int] | None = None) -> VFProgram:
    """Run every rule in order; return the VF's program or raise the first refusal."""
    req = Request(cfg=cfg, pf=pf, replacing=replacing, guest_macs=guest_macs)
    for _, fn in RULES:
        fn(req)
    assert req.program is not None
    return req.program


def rule_names() -> list[str]:
    return [name for name, _ in RULES]
