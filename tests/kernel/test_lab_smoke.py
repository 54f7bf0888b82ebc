"""Smoke test of the kernel lab: netdevsim VFs on Debian's real kernel in QEMU.

One guest boot: creates 4 VFs, programs two of them with `ip link set PF vf N`,
reads them back with `ip -d link show` (text and JSON) and exits 7, so the same
run also checks that the command's exit status and stderr come out of the guest.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LAB = REPO / "tools" / "kernel-lab"

pytestmark = [
    pytest.mark.kernel_lab,
    pytest.mark.skipif(
        not hasattr(os, "geteuid") or os.geteuid() != 0,
        reason="kernel lab needs root (apt-get install, QEMU 9p export of /)",
    ),
]

GUEST_SCRIPT = r"""
set -e
echo "PF=$VFD_LAB_PF"
echo "NSIM_DEV=$VFD_LAB_NSIM_DEV"
echo "NSIM_NETDEV=$(ls $VFD_LAB_NSIM_DEV/net)"
echo "MAX_VFS=$(cat /sys/kernel/debug/netdevsim/netdevsim1/max_vfs)"
echo "VFS_BEFORE=$(cat $VFD_LAB_NSIM_DEV/sriov_numvfs)"
echo "CWD=$(pwd)"
echo 4 > $VFD_LAB_NSIM_DEV/sriov_numvfs
ip link set $VFD_LAB_PF vf 1 mac 02:00:00:00:00:11 vlan 100 qos 3 proto 802.1ad \
    spoofchk on trust on state disable max_tx_rate 500 min_tx_rate 100
ip link set $VFD_LAB_PF vf 2 mac 02:00:00:00:00:22 vlan 200 \
    spoofchk off trust off state enable max_tx_rate 300
echo "----- text"
ip -d link show $VFD_LAB_PF
echo "----- json"
ip -j -d link show $VFD_LAB_PF
echo
echo "----- end"
echo "message on stderr" >&2
exit 7
"""


@pytest.fixture(scope="module")
def lab_ready():
    r = subprocess.run(["bash", str(LAB / "setup.sh")], capture_output=True,
                       text=True, timeout=1500)
    assert r.returncode == 0, f"setup.sh failed:\n{r.stdout}\n{r.stderr}"


def test_netdevsim_vf_config_read_back_and_exit_status(lab_ready):
    r = subprocess.run(
        [str(LAB / "run-in-guest"), "--timeout", "300", "--", "sh", "-c", GUEST_SCRIPT],
        cwd=REPO, capture_output=True, text=True, timeout=400,
    )
    out, err = r.stdout, r.stderr
    diag = f"exit {r.returncode}\n--- stdout:\n{out}\n--- stderr:\n{err}"

    # Exit status and stderr of the command come out of the guest.
    assert r.returncode == 7, diag
    assert "message on stderr" in err, diag
    assert "----- end" in out, diag

    kv = dict(line.split("=", 1) for line in out.splitlines()
              if "=" in line and line.split("=", 1)[0].isupper())
    pf = kv["PF"]
    assert pf and pf == kv["NSIM_NETDEV"], diag
    assert kv["NSIM_DEV"] == "/sys/bus/netdevsim/devices/netdevsim1", diag
    assert kv["MAX_VFS"] == "8", diag
    assert kv["VFS_BEFORE"] == "0", diag
    assert kv["CWD"] == str(REPO), diag

    text = out.split("----- text", 1)[1].split("----- json", 1)[0]
    vf1_line = next(ln for ln in text.splitlines() if ln.strip().startswith("vf 1 "))
    for want in ("02:00:00:00:00:11", "vlan 100", "qos 3", "vlan protocol 802.1ad",
                 "max_tx_rate 500Mbps", "min_tx_rate 100Mbps", "spoof checking on",
                 "link-state disable", "trust on"):
        assert want in vf1_line, f"{want!r} not in {vf1_line!r}\n{diag}"

    link = json.loads(out.split("----- json", 1)[1].split("----- end", 1)[0])[0]
    assert link["ifname"] == pf
    vfs = {vf["vf"]: vf for vf in link["vfinfo_list"]}
    assert sorted(vfs) == [0, 1, 2, 3], diag

    vf1 = vfs[1]
    assert vf1["address"] == "02:00:00:00:00:11"
    assert vf1["vlan_list"] == [{"vlan": 100, "qos": 3, "protocol": "802.1ad"}]
    assert vf1["rate"] == {"max_tx": 500, "min_tx": 100}
    assert vf1["spoofchk"] is True
    assert vf1["trust"] is True
    assert vf1["link_state"] == "disable"

    vf2 = vfs[2]
    assert vf2["address"] == "02:00:00:00:00:22"
    assert vf2["vlan_list"][0]["vlan"] == 200
    assert vf2["vlan_list"][0].get("protocol", "802.1Q") == "802.1Q"
    assert vf2["rate"] == {"max_tx": 300, "min_tx": 0}
    assert vf2["spoofchk"] is False
    assert vf2["trust"] is False
    assert vf2["link_state"] == "enable"

    for n in (0, 3):  # untouched VFs keep netdevsim's defaults
        assert vfs[n]["address"] == "00:00:00:00:00:00"
        assert vfs[n]["rate"] == {"max_tx": 0, "min_tx": 0}
        assert vfs[n]["link_state"] == "auto"
