"""Shared pieces of the benchmarks: a real daemon on sim PFs (tests/vfdlab.py), timing helpers."""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.vfdlab import VfdProcess, sim_pf, vf_config  # noqa: E402,F401


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    k = min(len(values) - 1, max(0, round(p / 100 * (len(values) - 1))))
    return values[k]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.2f} ms"


def timed(fn, *args, **kw) -> float:
    t = time.perf_counter()
    fn(*args, **kw)
    return time.perf_counter() - t


def median(values: list[float]) -> float:
    return statistics.median(values)


def populate_live(d: VfdProcess, pfs: list[str], per_pf: int) -> int:
    """Write live configs directly (as a previous run of the daemon would have left them)."""
    d.live_dir.mkdir(parents=True, exist_ok=True)
    n = 0
    for p, pf in enumerate(pfs):
        for vf in range(per_pf):
            cfg = vf_config(pf, vf, vlans=[1 + vf % 60], macs=[f"02:{p:02x}:00:00:{vf // 256:02x}:{vf % 256:02x}"],
                            name=f"p{p}v{vf}", rate=0.1)
            (d.live_dir / f"p{p}v{vf}.json").write_text(json.dumps(cfg))
            n += 1
    return n


def report(title: str, rows: list[tuple[str, str]]) -> str:
    width = max(len(r[0]) for r in rows)
    out = [f"## {title}"] + [f"  {k:<{width}}  {v}" for k, v in rows]
    text = "\n".join(out)
    print(text, flush=True)
    return text
