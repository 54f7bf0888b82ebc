"""`make bench`: every benchmark, each printing its figures next to a baseline measured in the same
run. Results also go to bench/results.txt (not committed by default; copy into docs/performance.md)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import admission  # noqa: E402
import idle_cpu  # noqa: E402
import iplex_startup  # noqa: E402
import latency  # noqa: E402
import metrics_scrape  # noqa: E402
import recovery  # noqa: E402


def main() -> int:
    head = (f"# vfd benchmarks, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n"
            f"# {platform.node()}: {os.cpu_count()} cores, Python {platform.python_version()}, {platform.platform()}")
    print(head, flush=True)
    parts = [head]
    for mod in (latency, recovery, admission, idle_cpu, iplex_startup, metrics_scrape):
        parts.append(mod.main())
    if os.geteuid() == 0 and os.environ.get("VFD_BENCH_KERNEL", "1") != "0":
        # the kernel benchmark boots a QEMU guest (tools/kernel-lab); set VFD_BENCH_KERNEL=0 to skip it
        kernel = Path(__file__).resolve().parent / "kernel_program.py"
        r = subprocess.run([sys.executable, str(kernel), "-n", "64"], capture_output=True, text=True)
        text = (r.stdout + (f"\n(kernel benchmark exited {r.returncode}: {r.stderr[-2000:]})" if r.returncode else ""))
        print(text, flush=True)
        parts.append("## kernel backend in the QEMU guest (bench/kernel_program.py -n 64)\n" + text.strip())
        # vfd-cni vs host-device on emulated igb VFs (another guest boot, QEMU 10's igb)
        cni = Path(__file__).resolve().parent / "cni_attach.py"
        r = subprocess.run([sys.executable, str(cni), "-n", "5"], capture_output=True, text=True)
        text = (r.stdout + (f"\n(cni benchmark exited {r.returncode}: {r.stderr[-2000:]})" if r.returncode else ""))
        print(text, flush=True)
        parts.append("## vfd-cni vs host-device in the igb guest (bench/cni_attach.py -n 5)\n" + text.strip())
    out = Path(__file__).resolve().parent / "results.txt"
    out.write_text("\n\n".join(p for p in parts if p) + "\n")
    print(f"\nwritten to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
