"""The sysfs side of a kernel PF: find its netdev, its driver, its VF count and its VFs' PCI addresses.

VF creation is not netlink: `sriov_numvfs` under the PF's device directory (a PCI function, or
for netdevsim `/sys/bus/netdevsim/devices/netdevsimN`, reachable the same way through
`/sys/class/net/<pf>/device`). `root` is `/sys`; tests point it at a fake tree.
"""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

PCI_RE = re.compile(r"^(?:[0-9a-fA-F]{4}:)?[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$")


def is_pci_address(pf_id: str) -> bool:
    return bool(PCI_RE.match(pf_id))


def full_pci(pf_id: str) -> str:
    return (pf_id if pf_id.count(":") == 2 else f"0000:{pf_id}").lower()


class Sysfs:
    def __init__(self, root: str | os.PathLike = "/sys"):
        self.root = Path(root)

    # ---- PF lookup ------------------------------------------------------------------------------
    def netdev_of(self, pf_id: str) -> str | None:
        """The PF's interface name: under the PCI device for an address, else `pf_id` itself."""
        if is_pci_address(pf_id):
            net = self.root / "bus" / "pci" / "devices" / full_pci(pf_id) / "net"
            try:
                names = sorted(p.name for p in net.iterdir())
            except OSError:
                return None
            return names[0] if names else None
        return pf_id if (self.root / "class" / "net" / pf_id).exists() else None

    def ifindex(self, ifname: str) -> int | None:
        return _read_int(self.root / "class" / "net" / ifname / "ifindex")

    def device_dir(self, ifname: str) -> Path:
        return self.root / "class" / "net" / ifname / "device"

    def driver(self, ifname: str) -> str:
        dev = self.device_dir(ifname)
        try:
            return os.path.basename(os.readlink(dev / "driver"))
        except OSError:
            pass
        try:
            if "netdevsim" in os.path.realpath(dev):
                return "netdevsim"
        except OSError:
            pass
        return "unknown"

    def pci_address(self, ifname: str) -> str | None:
        """The PF's own PCI address (None for netdevsim and other non-PCI devices)."""
        try:
            real = Path(os.path.realpath(self.device_dir(ifname)))
        except OSError:
            return None
        return real.name if is_pci_address(real.name) and (real / "config").exists() else None

    # ---- VFs ------------------------------------------------------------------------------------
    def numvfs(self, ifname: str) -> int | None:
        return _read_int(self.device_dir(ifname) / "sriov_numvfs")

    def totalvfs(self, ifname: str) -> int | None:
        return _read_int(self.device_dir(ifname) / "sriov_totalvfs")

    def has_sriov(self, ifname: str) -> bool:
        return (self.device_dir(ifname) / "sriov_numvfs").exists()

    def set_numvfs(self, ifname: str, n: int) -> None:
        """Write sriov_numvfs; raises OSError (EBUSY when changing one non-zero count to another)."""
        path = self.device_dir(ifname) / "sriov_numvfs"
        fd = os.open(path, os.O_WRONLY)
        try:
            os.write(fd, f"{n}\n".encode())
        finally:
            os.close(fd)

    def virtfn_links(self, ifname: str) -> int:
        dev = self.device_dir(ifname)
        try:
            return sum(1 for p in dev.iterdir() if p.name.startswith("virtfn"))
        except OSError:
            return 0

    def vf_pci_address(self, ifname: str, vfid: int) -> str | None:
        link = self.device_dir(ifname) / f"virtfn{vfid}"
        try:
            return os.path.basename(os.readlink(link))
        except OSError:
            return None

    # ---- link -----------------------------------------------------------------------------------
    def speed(self, ifname: str) -> int:
        """Mb/s, 0 when unknown (netdevsim: EINVAL; a link that is down: -1)."""
        v = _read_int(self.root / "class" / "net" / ifname / "speed")
        return v if v and v > 0 else 0

    def duplex(self, ifname: str) -> int:
        try:
            return 1 if (self.root / "class" / "net" / ifname / "duplex").read_text().strip() == "full" else 0
        except OSError:
            return 0


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.EINVAL, errno.ENODEV, errno.EOPNOTSUPP, errno.ENOTDIR):
            return None
        raise
    except ValueError:
        return None
