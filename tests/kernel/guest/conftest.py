"""The guest suite runs INSIDE the kernel lab's QEMU guest (tools/kernel-lab/run-in-guest sets
VFD_LAB=1); on the host it is not even collected. tests/kernel/test_kernel_guest.py boots the guest
and runs it: `run-in-guest -- .venv/bin/python -m pytest -q tests/kernel/guest`."""

import os

if os.environ.get("VFD_LAB") != "1" or not os.environ.get("VFD_LAB_PF"):
    collect_ignore_glob = ["test_*.py"]
