"""`iplex ping` as a whole process (goal <= 150 ms wall), against `python -c pass` with the same
interpreter in the same run (the floor for any Python client)."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import VfdProcess, median, ms, pct, report, sim_pf
from tests.vfdlab import BIN as VBIN

N = 30


def wall(argv: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True)
    return time.perf_counter() - t


def main() -> str:
    tmp = Path(tempfile.mkdtemp(prefix="vfd-bench-iplex-"))
    d = VfdProcess(tmp, [sim_pf("0000:07:00.0", 8)], log_level=0)
    d.start()
    try:
        ping = [str(VBIN / "iplex"), "--conf", str(d.conf), "ping"]
        for _ in range(3):
            wall(ping)
            wall([sys.executable, "-c", "pass"])
        iplex = [wall(ping) for _ in range(N)]
        bare = [wall([sys.executable, "-c", "pass"]) for _ in range(N)]
        imports = subprocess.run([sys.executable, "-X", "importtime", "-c", "import vfd.iplex"],
                                 capture_output=True, text=True).stderr.splitlines()
    finally:
        d.stop()
    own = sum(int(line.split("|")[1]) for line in imports if "vfd" in line.split("|")[-1]) / 1e6
    rows = [("iplex ping p50 / p90", f"{ms(median(iplex))} / {ms(pct(iplex, 90))}  "
                                     f"({'met' if median(iplex) <= 0.150 else 'MISSED'}: goal <= 150 ms)"),
            ("python -c pass p50 (floor)", ms(median(bare))),
            ("iplex / floor", f"{median(iplex) / median(bare):5.2f}x"),
            ("vfd's own modules import time", f"{own * 1000:8.2f} ms")]
    return report(f"iplex start-up ({N} runs each)", rows)


if __name__ == "__main__":
    main()
