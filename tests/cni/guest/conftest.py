"""The igb guest suite runs INSIDE the kernel lab booted with `--igb 2` (tests/cni/test_cni_igb.py
boots it); on the host, or in a guest without igb ports, it is not even collected."""

import os

if os.environ.get("VFD_LAB") != "1" or os.environ.get("VFD_LAB_IGB") != "1":
    collect_ignore_glob = ["test_*.py"]
