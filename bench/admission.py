"""Admission cost as the host fills: one add (+ its delete) with 0, 256 and 1024 VFs already live.

Goal (issue 3): the cost must not grow with the square of the VF count. The baseline is the
same add on an empty host, in the same run. Also prints the pure admission time (no I/O).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from common import VfdProcess, median, ms, populate_live, report, sim_pf, vf_config

from vfd.iplex import request

PFS = [f"0000:{0x30 + i:02x}:00.0" for i in range(9)]    # 9 i40e PFs x 128 VFs
REPEAT = 60


def add_cost(root: Path, live: int) -> float:
    d = VfdProcess(root, [sim_pf(pf, 128, "i40e") for pf in PFS], log_level=0)
    full = live // 128
    populate_live(d, PFS[:full], 128) if full else None
    d.start(timeout=120)
    try:
        assert len(d.live()) == live
        cfg = vf_config(PFS[8], 5, vlans=[10, 20, 30], macs=["02:ff:00:00:00:01", "02:ff:00:00:00:02"], name="b")
        times = []
        for _ in range(REPEAT):
            d.drop("b", cfg)
            t = time.perf_counter()
            a = request(str(d.fifo), "add", 10, filename="b")
            times.append(time.perf_counter() - t)
            assert a["state"] == "OK", a
            assert request(str(d.fifo), "delete", 10, filename="b")["state"] == "OK"
        return median(times)
    finally:
        d.stop()


def pure_admission(live: int) -> float:
    """admit() alone against a PF state holding `live` VFs (no NIC, no disk)."""
    from vfd.capabilities import PROFILES
    from vfd.model.mainconfig import PFConfig
    from vfd.model.vfconfig import VFConfig
    from vfd.policy.admission import admit
    from vfd.state import LiveVF, PFState
    pf = PFState(cfg=PFConfig(id="p", vf_oversubscription=True), backend="sim", profile=PROFILES["mlx5"], vfs_count=2048, link_speed=10000,
                 mtu=9000, qos=True, index=0)
    pf.profile = pf.profile.narrowed(pf.profile.features, mac_table_size=10**6, vlan_filter_size=4096)
    for n in range(live):
        c = VFConfig.model_validate({"pciid": "p", "vfid": n, "vlans": [1 + n % 4000],
                                     "macs": [f"02:00:00:{n // 65536:02x}:{n // 256 % 256:02x}:{n % 256:02x}"],
                                     "queues": [{"priority": 0, "share": "1%"}]})
        pf.add(LiveVF(port_id=f"p{n}", config=c, program=admit(c, pf), owner_uid=0, raw=b""))
    c = VFConfig.model_validate({"pciid": "p", "vfid": 2047, "vlans": [4095], "macs": ["02:ff:00:00:00:01"]})
    t = time.perf_counter()
    for _ in range(2000):
        admit(c, pf)
    return (time.perf_counter() - t) / 2000


def main() -> str:
    tmp = Path(tempfile.mkdtemp(prefix="vfd-bench-adm-"))
    base = add_cost(tmp / "l0", 0)
    rows = [("add with    0 VFs live (baseline)", ms(base))]
    for live in (256, 1024):
        t = add_cost(tmp / f"l{live}", live)
        rows.append((f"add with {live:4d} VFs live", f"{ms(t)} = {t / base:5.2f}x baseline"))
    p0 = pure_admission(0)
    for live in (0, 256, 1024):
        p = pure_admission(live) if live else p0
        rows.append((f"admission rules alone, {live:4d} live", f"{p * 1e6:8.1f} us = {p / p0:5.2f}x"))
    return report(f"admission cost as the host fills (median of {REPEAT} adds through the FIFO)", rows)


if __name__ == "__main__":
    main()
