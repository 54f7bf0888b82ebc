"""Static check: no undefined name anywhere in vfd/ (a name one branch removed and another still
uses only fails when that line runs; this finds it at once). pyflakes, limited to that message."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_no_undefined_names_in_vfd():
    r = subprocess.run([sys.executable, "-m", "pyflakes", str(ROOT / "vfd")], capture_output=True, text=True)
    assert "No module named pyflakes" not in r.stderr, r.stderr
    # `argparse.Namespace` in annotations is fine under `from __future__ import annotations`
    problems = [line for line in r.stdout.splitlines() if "undefined name" in line and "'argparse'" not in line]
    assert problems == [], "\n".join(problems)
