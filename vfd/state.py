"""In-memory view of what is live: per PF, the admitted VFs plus the indexes admission needs.

The indexes (MAC owners, VLAN reference counts, rate and share sums) make every admission check
O(1) or O(distinct values) instead of a walk over all live VFs, so adding the 1024th VF costs
what the first did.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

from vfd.capabilities import DriverProfile
from vfd.model.mainconfig import PFConfig
from vfd.model.vfconfig import VFConfig
from vfd.program import VFProgram

DEFAULT_TC_SHARE = 3  # the original's per-TC share for a VF that names none


@dataclass
class LiveVF:
    port_id: str            # the config file's name without .json
    config: VFConfig
    program: VFProgram
    owner_uid: int
    raw: bytes              # the file as admitted, written to the live directory

    @property
    def pf_id(self) -> str:
        return self.config.pciid

    @property
    def vfid(self) -> int:
        return self.config.vfid


@dataclass
class PFState:
    cfg: PFConfig
    backend: str
    profile: DriverProfile
    vfs_count: int
    link_speed: int
    mtu: int
    qos: bool
    index: int                       # position in the main config's pciids
    vfs: dict[int, LiveVF] = field(default_factory=dict)
    mac_owner: dict[str, int] = field(default_factory=dict)
    vlan_refs: Counter = field(default_factory=Counter)
    mac_total: int = 0
    min_rate_sum: float = 0.0
    share_sum: Counter = field(default_factory=Counter)                      # tc -> sum of shares
    share_values: defaultdict = field(default_factory=lambda: defaultdict(Counter))  # tc -> Counter(share)

    @property
    def id(self) -> str:
        return self.cfg.id

    def tcs(self) -> list[int]:
        return sorted(t.pri for t in self.cfg.tclasses) or [0, 1, 2, 3]

    def shares_of(self, cfg: VFConfig) -> dict[int, int]:
        given = {q.priority: q.share for q in cfg.queues}
        return {tc: given.get(tc, DEFAULT_TC_SHARE) for tc in self.tcs()}

    def add(self, vf: LiveVF) -> None:
        self._account(vf, +1)
        self.vfs[vf.vfid] = vf

    def remove(self, vf: LiveVF) -> None:
        if self.vfs.get(vf.vfid) is vf:
            del self.vfs[vf.vfid]
            self._account(vf, -1)

    def _account(self, vf: LiveVF, sign: int) -> None:
        macs = vf.config.mac_list
        for mac in macs:
            if sign > 0:
                self.mac_owner[mac] = vf.vfid
            else:
                self.mac_owner.pop(mac, None)
        self.mac_total += sign * len(macs)
        for vid in vf.config.vlans:
            self.vlan_refs[vid] += sign
            if self.vlan_refs[vid] <= 0:
                del self.vlan_refs[vid]
        self.min_rate_sum += sign * vf.config.min_rate
        if abs(self.min_rate_sum) < 1e-9:
            self.min_rate_sum = 0.0
        if self.qos:
            for tc, share in self.shares_of(vf.config).items():
                self.share_sum[tc] += sign * share
                self.share_values[tc][share] += sign
                if self.share_values[tc][share] <= 0:
                    del self.share_values[tc][share]
