"""Runs tests/kernel/guest INSIDE the kernel lab: one QEMU guest (Debian's 6.1 kernel + netdevsim)
for the whole suite, with a real vfd daemon on the kernel backend. Needs root (apt, QEMU's 9p
export of /); the guest itself needs no network. ~5-10 minutes (legacy and switchdev suites), most
of it Python imports under software emulation."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LAB = REPO / "tools" / "kernel-lab"
GUEST_TIMEOUT = 1200     # the whole guest run, boot included: legacy (three daemon starts, ~4-5 min on a loaded host) and switchdev (~3-6 min)

pytestmark = [
    pytest.mark.kernel_lab,
    pytest.mark.slow,
    pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                       reason="kernel lab needs root (apt-get install, QEMU 9p export of /)"),
]


def test_kernel_backend_against_a_real_kernel_in_the_guest():
    r = subprocess.run(["bash", str(LAB / "setup.sh")], capture_output=True, text=True, timeout=1500)
    assert r.returncode == 0, f"tools/kernel-lab/setup.sh failed:\n{r.stdout}\n{r.stderr}"
    python = Path(sys.executable)
    if not str(python).startswith(str(REPO)):
        python = REPO / ".venv" / "bin" / "python"     # the guest shares the host root: any python works,
    t0 = time.monotonic()                             # but the repo's venv has pyroute2 and pydantic
    r = subprocess.run(
        [str(LAB / "run-in-guest"), "--timeout", str(GUEST_TIMEOUT), "--",
         str(python), "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", "-o", "addopts=",
         str(REPO / "tests" / "kernel" / "guest")],
        cwd=REPO, capture_output=True, text=True, timeout=GUEST_TIMEOUT + 60)
    took = time.monotonic() - t0
    out = f"guest run: exit {r.returncode} after {took:.0f}s\n--- stdout:\n{r.stdout}\n--- stderr:\n{r.stderr}"
    print(out)
    assert r.returncode == 0, out
    assert " passed" in r.stdout and " failed" not in r.stdout and "skipped" not in r.stdout, out
