"""Boots the kernel lab with two emulated Intel 82576 (igb) ports cabled back to back (QEMU 10 from
bookworm-backports, which setup.sh installs) and runs tests/cni/guest inside it: vfd-cni on real VFs
with real frames (docs/kubernetes.md, "Tests"). Needs root."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LAB = REPO / "tools" / "kernel-lab"
GUEST_TIMEOUT = 1500

pytestmark = [
    pytest.mark.kernel_lab,
    pytest.mark.slow,
    pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                       reason="kernel lab needs root (apt-get install, QEMU 9p export of /)"),
]


def test_vfd_cni_on_igb_vfs_in_the_guest():
    r = subprocess.run(["bash", str(LAB / "setup.sh")], capture_output=True, text=True, timeout=1500)
    assert r.returncode == 0, f"tools/kernel-lab/setup.sh failed:\n{r.stdout}\n{r.stderr}"
    python = Path(sys.executable)
    if not str(python).startswith(str(REPO)):
        python = REPO / ".venv" / "bin" / "python"
    t0 = time.monotonic()
    r = subprocess.run(
        [str(LAB / "run-in-guest"), "--igb", "2", "--timeout", str(GUEST_TIMEOUT), "--",
         str(python), "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", "-o", "addopts=",
         str(REPO / "tests" / "cni" / "guest")],
        cwd=REPO, capture_output=True, text=True, timeout=GUEST_TIMEOUT + 60)
    out = f"guest run: exit {r.returncode} after {time.monotonic() - t0:.0f}s\n--- stdout:\n{r.stdout}\n" \
          f"--- stderr:\n{r.stderr}"
    print(out)
    assert r.returncode == 0, out
    assert " passed" in r.stdout and " failed" not in r.stdout and "skipped" not in r.stdout, out
