"""Recovery: start-up with N live VFs until the daemon answers with every VF programmed.

Goal (issue 3): 256 VFs (8 PFs x 32) in <= 3 s; the cost per VF flat from 32 to 256. The
baseline in the same run is the start-up of the same daemon with no live VF.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
import time
from pathlib import Path

from common import VfdProcess, median, populate_live, report, sim_pf
from tests.vfdlab import BIN
from vfd.iplex import ClientError, request

PFS = [f"0000:{0x20 + i:02x}:00.0" for i in range(8)]
REPEAT = 3


def start_and_ping(d: VfdProcess) -> float:
    """Start the daemon; return the time until its first answered ping (polled every 2 ms)."""
    d.write_main()
    d._logf = open(d.log, "ab")
    t = time.perf_counter()
    d.proc = subprocess.Popen([str(BIN / "vfd"), "-f", "-p", str(d.conf)], stdout=d._logf, stderr=subprocess.STDOUT)
    while True:
        try:
            if d.fifo.exists() and request(str(d.fifo), "ping", 0.5)["state"] == "OK":
                return time.perf_counter() - t
        except ClientError:
            pass
        time.sleep(0.002)


def start_time(root: Path, vfs_total: int) -> tuple[float, float]:
    pfs = PFS[: max(1, min(8, vfs_total // 32 or 1))]
    per_pf = vfs_total // len(pfs) if vfs_total else 0
    d = VfdProcess(root, [sim_pf(pf, 32, "i40e") for pf in PFS], log_level=0)
    populate_live(d, pfs, per_pf)
    times, restores = [], []
    for _ in range(REPEAT):
        times.append(start_and_ping(d))
        restores.append(float(re.findall(r"restored \d+ VFs on \d+ PFs in ([0-9.]+)s", d.log_text())[-1]))
        programmed = sum(1 for pf in PFS for v in d.sim_state(pf)["vfs"].values() if v["vlans"])
        assert programmed == len(pfs) * per_pf, (programmed, vfs_total)
        assert len(d.live()) == len(pfs) * per_pf
        d.stop()
    return median(times), median(restores)


def main() -> str:
    tmp = Path(tempfile.mkdtemp(prefix="vfd-bench-rec-"))
    base, _ = start_time(tmp / "base", 0)
    rows = [("start-up, no live VF (baseline)", f"{base:6.3f} s")]
    for n in (32, 64, 128, 256):
        t, restore = start_time(tmp / f"n{n}", n)
        rows.append((f"start-up with {n:3d} live VFs", f"{t:6.3f} s = {t / base:4.2f}x baseline; re-admit + program "
                     f"{restore * 1000:6.1f} ms = {restore / n * 1000:5.2f} ms/VF"))
        if n == 256:
            rows.append(("256 VFs within 3 s", "met" if t <= 3.0 else "MISSED"))
    return report(f"recovery (median of {REPEAT} starts; time to an answered ping with every VF programmed)", rows)


if __name__ == "__main__":
    main()
