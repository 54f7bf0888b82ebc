"""Scrape cost of /metrics with 256 live VFs (issue 14), against `show all` over the FIFO (the
same counters for people) in the same run; and ping latency while a scraper loops, against idle.

A fresh scrape reads every PF's and VF's counters and state once (on the daemon's loop); scrapes
within CACHE_SECONDS of it are served from that snapshot without touching the NIC.
"""

from __future__ import annotations

import socket
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from common import VfdProcess, ms, pct, populate_live, report, sim_pf

from vfd.daemon.metrics import CACHE_SECONDS
from vfd.iplex import request

PFS = ["0000:07:00.0", "0000:08:00.0"]
PER_PF = 128


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(url: str) -> float:
    t = time.perf_counter()
    body = urllib.request.urlopen(url, timeout=30).read()
    assert b"vfd_vf_rx_packets_total" in body
    return time.perf_counter() - t


def main() -> str:
    tmp = Path(tempfile.mkdtemp(prefix="vfd-bench-metrics-"))
    port = free_port()
    d = VfdProcess(tmp, [sim_pf(pf, PER_PF, "i40e") for pf in PFS], log_level=0, metrics_listen=f"127.0.0.1:{port}")
    n = populate_live(d, PFS, PER_PF)
    d.start(timeout=120)
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        assert len(d.live()) == n
        fifo = str(d.fifo)
        for _ in range(5):
            scrape(url)
            request(fifo, "show", 30, resource="all", socket_path=False)
        show = []
        for _ in range(30):
            t = time.perf_counter()
            assert request(fifo, "show", 30, resource="all", socket_path=False)["state"] == "OK"
            show.append(time.perf_counter() - t)
        fresh, cached = [], []
        for _ in range(12):
            time.sleep(CACHE_SECONDS * 1.1)           # past the cache: this scrape reads the NIC
            fresh.append(scrape(url))
            cached += [scrape(url) for _ in range(5)]
        size = len(urllib.request.urlopen(url, timeout=30).read())
        idle = []
        for _ in range(200):
            t = time.perf_counter()
            request(fifo, "ping", 10)
            idle.append(time.perf_counter() - t)
        stop = threading.Event()
        scrapes = [0]

        def scraper():
            while not stop.is_set():
                scrape(url)
                scrapes[0] += 1
        th = threading.Thread(target=scraper, daemon=True)
        th.start()
        busy = []
        for _ in range(200):
            t = time.perf_counter()
            request(fifo, "ping", 10)
            busy.append(time.perf_counter() - t)
        stop.set()
        th.join()
    finally:
        d.stop()
    s50 = pct(show, 50)
    return report(f"metrics scrape, {n} live VFs on {len(PFS)} PFs (bench/metrics_scrape.py)", [
        ("show all over the FIFO p50 (baseline)", ms(s50)),
        ("fresh scrape p50 (reads the NIC)", f"{ms(pct(fresh, 50))}  = {pct(fresh, 50) / s50:.2f}x show all"),
        ("fresh scrape p90", ms(pct(fresh, 90))),
        ("cached scrape p50 (within 1 s)", f"{ms(pct(cached, 50))}  = {pct(cached, 50) / s50:.2f}x show all"),
        ("/metrics size", f"{size / 1024:.0f} KiB"),
        ("ping p50 idle", ms(pct(idle, 50))),
        ("ping p50 while a scraper loops", f"{ms(pct(busy, 50))}  = {pct(busy, 50) / pct(idle, 50):.2f}x idle "
                                           f"({scrapes[0]} scrapes meanwhile)"),
        ("ping p99 while a scraper loops", f"{ms(pct(busy, 99))} (idle p99 {ms(pct(idle, 99)).strip()})"),
    ])


if __name__ == "__main__":
    main()
