"""The igb guest suite runs INSIDE the kernel lab booted with `--igb 2` (tests/cni/test_cni_igb.py
boots it); on the host, or in a guest without igb ports, it is not even collected."""

import os

if os.environ.get("VFD_LAB") != "1" or os.environ.get("VFD_LAB_IGB") != "1":
    collect_ignore_glob = ["test_*.py"]


def pytest_runtest_logreport(report):
    """Print a failure as it happens: a guest run that times out still shows what went wrong."""
    if report.failed:
        import sys
        sys.stdout.write(f"\n=== FAILED {report.nodeid} ({report.when}):\n{report.longreprtext}\n")
        sys.stdout.flush()
