"""Inside the igb guest: the two emulated 82576 ports, a vfd daemon owning them (kernel backend), VFs
with real igbvf netdevs, and pods as network namespaces."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

from tests.vfdlab import VfdProcess

SYS = Path("/sys/bus/pci/devices")


def sh(*cmd: str, check: bool = True) -> str:
    p = subprocess.run(list(cmd), capture_output=True, text=True)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {p.returncode}: {p.stderr}")
    return p.stdout


def igb_pfs() -> list[tuple[str, str]]:
    """[(PCI address, netdev)] of the igb PFs, in PCI order."""
    out = []
    for dev in sorted(SYS.iterdir()):
        try:
            drv = os.path.basename(os.readlink(dev / "driver"))
        except OSError:
            continue
        if drv == "igb" and (dev / "sriov_totalvfs").exists():
            out.append((dev.name, sorted(p.name for p in (dev / "net").iterdir())[0]))
    return out


def vf_pci(pf_pci: str, vfid: int) -> str:
    return os.path.basename(os.readlink(SYS / pf_pci / f"virtfn{vfid}"))


def vf_netdev(vf: str) -> str | None:
    try:
        names = sorted(p.name for p in (SYS / vf / "net").iterdir())
    except OSError:
        return None
    return names[0] if names else None


def wait_for(cond, what: str, limit: float = 60.0):
    """Poll a condition (a bounded wait for the emulated NIC, not a timing assertion)."""
    deadline = time.monotonic() + limit
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.2)


def start_lab(root: Path, vfs: int = 2) -> tuple[VfdProcess, list[tuple[str, str]]]:
    sh("modprobe", "igb")
    sh("modprobe", "igbvf")
    pfs = wait_for(lambda: len(igb_pfs()) >= 2 and igb_pfs(), "two igb PFs")
    for _, nd in pfs:
        sh("ip", "link", "set", nd, "up")
    # the first PF by PCI address, the second by netdev name: vfd's main config may use either
    d = VfdProcess(root, [{"id": pfs[0][0], "backend": "kernel", "vfs_count": vfs},
                          {"id": pfs[1][1], "backend": "kernel", "vfs_count": vfs}],
                   backend="kernel", reconcile_interval=3600)
    d.start(timeout=120)
    for pf_pci, _ in pfs:
        for i in range(vfs):
            wait_for(lambda: (SYS / pf_pci / f"virtfn{i}").exists() and vf_netdev(vf_pci(pf_pci, i)),
                     f"VF {i} of {pf_pci} with a netdev")
    return d, pfs


def vf_info(pf_netdev: str, vfid: int) -> dict:
    data = json.loads(sh("ip", "-j", "-d", "link", "show", "dev", pf_netdev))[0]
    for vf in data.get("vfinfo_list", []):
        if vf.get("vf") == vfid:
            vl = vf.get("vlan_list") or [{}]
            vf["vlan"] = vf.get("vlan", vl[0].get("vlan", 0))
            return vf
    raise KeyError(vfid)
