"""Helpers to run vfd-cni exactly as a container runtime does: CNI_* environment, netconf on stdin, a
fresh process per call; and a fake sysfs tree that makes a veth pair look like a VF (host tests).

PLUGIN is the deployed plugin: the static front end (`make install` builds .venv/bin/vfd-cni), which
hands the command to a daemon's CNI socket ($VFD_CNI_SOCKET); INPROC runs the same commands in a
Python process of its own (console script vfd-cni-inproc)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent
PLUGIN = str(BIN / "vfd-cni")
INPROC = str(BIN / "vfd-cni-inproc")
CNI_DIR = "/usr/lib/cni"           # Debian's containernetworking-plugins


def run_plugin(command: str, netconf: dict, container: str = "", netns: str = "", ifname: str = "net1",
               extra_env: dict | None = None, cni_path: str = CNI_DIR,
               plugin: str = PLUGIN) -> tuple[int, dict | None, str]:
    """Run one CNI plugin process (vfd-cni unless `plugin` names another executable)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CNI_")}
    env.update({"CNI_COMMAND": command, "CNI_CONTAINERID": container, "CNI_NETNS": netns,
                "CNI_IFNAME": ifname, "CNI_PATH": cni_path})
    env.update(extra_env or {})
    p = subprocess.run([plugin], input=json.dumps(netconf).encode(), env=env, capture_output=True, timeout=120)
    out = p.stdout.decode().strip()
    return p.returncode, (json.loads(out) if out else None), p.stderr.decode()


def fake_vf_sysfs(root: Path, pf_pci: str, vfs: dict[int, tuple[str, str | None]]) -> Path:
    """A /sys with one PF and its VFs: {vfid: (vf pci, netdev name or None)}."""
    devs = root / "bus" / "pci" / "devices"
    (devs / pf_pci / "net").mkdir(parents=True, exist_ok=True)
    for vfid, (vf_pci, nd) in vfs.items():
        (devs / vf_pci).mkdir(parents=True, exist_ok=True)
        os.symlink(f"../{pf_pci}", devs / vf_pci / "physfn")
        os.symlink(f"../{vf_pci}", devs / pf_pci / f"virtfn{vfid}")
        if nd:
            (devs / vf_pci / "net" / nd).mkdir(parents=True)
    return root


def netns_add(name: str) -> str:
    subprocess.run(["ip", "netns", "add", name], check=True)
    return f"/var/run/netns/{name}"


def netns_del(name: str) -> None:
    subprocess.run(["ip", "netns", "del", name], capture_output=True)


def ip(*args: str, netns: str | None = None) -> str:
    cmd = ["ip"] + (["-n", netns] if netns else []) + list(args)
    return subprocess.run(cmd, capture_output=True, text=True).stdout


def link_json(name: str, netns: str | None = None) -> dict | None:
    out = ip("-j", "link", "show", "dev", name, netns=netns)
    try:
        data = json.loads(out)
    except ValueError:
        return None
    return data[0] if data else None


def validate_result(res: dict, version: str) -> None:
    """The CNI result's shape (spec 1.0.0 section 'Success'; 0.4.0 keeps 'version' on ips)."""
    assert res["cniVersion"] == version
    assert isinstance(res["interfaces"], list) and res["interfaces"]
    for i in res["interfaces"]:
        assert isinstance(i["name"], str) and i["name"]
    for ipc in res.get("ips", []):
        assert "/" in ipc["address"]
        assert 0 <= ipc["interface"] < len(res["interfaces"])
        if version.startswith("0."):
            assert ipc["version"] in ("4", "6")
        else:
            assert "version" not in ipc
    for r in res.get("routes", []):
        assert "/" in r["dst"]
    assert isinstance(res.get("dns", {}), dict)
