"""Request latency through the FIFO: vfd vs the protocol floor, same client, same run.

Goals (issue 3): ping p50 <= 3x the floor; add+delete p50 <= 20x the floor + 10 ms.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, VfdProcess, ms, pct, report, sim_pf, vf_config

from vfd.iplex import request

N = 400


def measure(fifo: str, action: str, n: int, **params) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        reply = request(fifo, action, 10, **params)
        out.append(time.perf_counter() - t)
        assert reply["state"] == "OK", reply
    return out


def main() -> str:
    tmp = Path(tempfile.mkdtemp(prefix="vfd-bench-lat-"))
    floor_fifo = tmp / "floor" / "request"
    floor_fifo.parent.mkdir()
    floor = subprocess.Popen([sys.executable, str(ROOT / "bench" / "floor_server.py"), str(floor_fifo)])
    d = VfdProcess(tmp / "vfd", [sim_pf("0000:07:00.0", 32, "i40e"), sim_pf("0000:08:00.0", 32, "i40e")],
                   log_level=0)
    d.start()
    try:
        while not floor_fifo.exists():
            time.sleep(0.01)
        for n in range(32):                       # a realistic host: 32 live VFs to show
            assert d.add(f"v{n}", vf_config("0000:08:00.0", n, macs=[f"02:00:00:00:01:{n:02x}"],
                                            name=f"v{n}")).returncode == 0
        measure(str(floor_fifo), "ping", 50)      # warm-up
        measure(str(d.fifo), "ping", 50)
        floor_ping = measure(str(floor_fifo), "ping", N)
        vfd_ping = measure(str(d.fifo), "ping", N)
        vfd_show = measure(str(d.fifo), "show", N // 4, resource="all")
        add_del = []
        cfg = vf_config("0000:07:00.0", 1, vlans=[10, 11], macs=["02:00:00:00:00:01"], name="bench")
        for _ in range(N // 4):
            d.drop("bench", cfg)
            t = time.perf_counter()
            a = request(str(d.fifo), "add", 10, filename="bench")
            b = request(str(d.fifo), "delete", 10, filename="bench")
            add_del.append(time.perf_counter() - t)
            assert a["state"] == "OK" and b["state"] == "OK", (a, b)
        floor_pair = [x + y for x, y in zip(floor_ping[::2], floor_ping[1::2])]
        f50 = pct(floor_ping, 50)
        rows = [
            ("floor ping p50 / p99", f"{ms(f50)} / {ms(pct(floor_ping, 99))}"),
            ("vfd ping p50 / p99", f"{ms(pct(vfd_ping, 50))} / {ms(pct(vfd_ping, 99))}"),
            ("vfd ping p50 / floor p50", f"{pct(vfd_ping, 50) / f50:6.2f}x   (goal <= 3x)"),
            ("vfd show all (32 VFs) p50 / p99", f"{ms(pct(vfd_show, 50))} / {ms(pct(vfd_show, 99))}"),
            ("vfd show all p50 / floor p50", f"{pct(vfd_show, 50) / f50:6.2f}x"),
            ("floor two requests p50", ms(pct(floor_pair, 50))),
            ("vfd add+delete p50 / p99", f"{ms(pct(add_del, 50))} / {ms(pct(add_del, 99))}"),
            ("vfd add+delete p50 vs goal", f"{ms(pct(add_del, 50))} <= 20 x {ms(pct(floor_pair, 50)).strip()} + 10 ms "
                                           f"= {ms(20 * pct(floor_pair, 50) + 0.010).strip()}: "
                                           f"{'met' if pct(add_del, 50) <= 20 * pct(floor_pair, 50) + 0.010 else 'MISSED'}"),
        ]
        return report(f"request latency through the FIFO ({N} pings each, same client)", rows)
    finally:
        d.stop()
        floor.kill()
        floor.wait()


if __name__ == "__main__":
    main()
