"""deviceID (a VF's PCI address) -> its PF, its VF number, its netdev, and the PF's id in vfd's main config.

sysfs only: `/sys/bus/pci/devices/<vf>/physfn` names the PF, the PF's `virtfnN` link back to the VF
gives N, `<vf>/net/` holds the VF netdev (empty when the VF is bound to vfio-pci). `VFD_CNI_SYSFS`
in the request's environment points the lookup at another tree (tests build one).
"""

from __future__ import annotations

import os
from collections import namedtuple

from vfd.integrations.cni.errors import INVALID_NETCONF, VF_NOT_MANAGED, CniError


class VfSlot(namedtuple("VfSlot", "device_id pf_pci vfid pf_id pf_speed netdev driver")):
    """device_id, pf_pci: PCI addresses; vfid; pf_id: the PF's id as vfd's main config spells it (PCI
    address or netdev name); pf_speed: Mb/s, 0 when unknown; netdev: the VF's netdev in the host (None:
    no netdev, e.g. vfio-pci); driver. A namedtuple, not a dataclass: see netconf._Record."""
    __slots__ = ()


def sysfs_root(environ: dict) -> str:
    return environ.get("VFD_CNI_SYSFS") or "/sys"


def _pci_dev(device_id: str, environ: dict) -> str:
    return os.path.join(sysfs_root(environ), "bus", "pci", "devices", device_id)


def _names(d: str) -> list[str]:
    try:
        return sorted(os.listdir(d))
    except OSError:
        return []


def vf_netdev(device_id: str, environ: dict) -> str | None:
    """The VF's netdev in the current network namespace (sysfs shows only this namespace's)."""
    names = _names(os.path.join(_pci_dev(device_id, environ), "net"))
    return names[0] if names else None


def _pf_entries(main_conf: dict) -> list[dict]:
    out = []
    for entry in main_conf.get("pciids") or []:
        if isinstance(entry, str):
            out.append({"id": entry})
        elif isinstance(entry, dict) and isinstance(entry.get("id"), str):
            out.append(entry)
    return out


def find_vf(device_id: str, main_conf: dict, environ: dict) -> VfSlot:
    dev = _pci_dev(device_id, environ)
    if not os.path.exists(dev):
        raise CniError(INVALID_NETCONF, f"deviceID {device_id}: no such PCI device on this host")
    try:
        pf_pci = os.path.basename(os.readlink(os.path.join(dev, "physfn")))
    except OSError:
        raise CniError(INVALID_NETCONF, f"deviceID {device_id}: not an SR-IOV VF (no physfn link)") from None
    pf_dev = _pci_dev(pf_pci, environ)
    vfid = None
    for name in _names(pf_dev):
        if name.startswith("virtfn") and name[6:].isdigit():
            try:
                if os.path.basename(os.readlink(os.path.join(pf_dev, name))) == device_id:
                    vfid = int(name[6:])
                    break
            except OSError:
                continue
    if vfid is None:
        raise CniError(INVALID_NETCONF, f"deviceID {device_id}: PF {pf_pci} has no virtfnN link to it")
    pf_netdevs = _names(os.path.join(pf_dev, "net"))
    entry = None
    for e in _pf_entries(main_conf):
        pid = e["id"]
        # vfd's PF id is the PCI address (domain optional) or the netdev name (vfd.backends.kernel.sysfs);
        # compared here without importing the backends (and pydantic): plugin start-up counts.
        if pid.lower() in (pf_pci.lower(), pf_pci.lower().split(":", 1)[-1]) or pid in pf_netdevs:
            entry = e
            break
    if entry is None:
        known = ", ".join(e["id"] for e in _pf_entries(main_conf)) or "none"
        raise CniError(VF_NOT_MANAGED, f"deviceID {device_id} is VF {vfid} of PF {pf_pci} "
                                       f"({', '.join(pf_netdevs) or 'no netdev'}), which vfd does not manage "
                                       f"(PFs in vfd's main config: {known})")
    speed = 0
    for nd in pf_netdevs:
        try:
            with open(os.path.join(sysfs_root(environ), "class", "net", nd, "speed")) as f:
                speed = max(speed, int(f.read().strip()))
        except (OSError, ValueError):
            pass
    if speed <= 0:
        speed = entry.get("speed") if isinstance(entry.get("speed"), int) else 0
    try:
        driver = os.path.basename(os.readlink(os.path.join(dev, "driver")))
    except OSError:
        driver = None
    return VfSlot(device_id=device_id, pf_pci=pf_pci, vfid=vfid, pf_id=entry["id"], pf_speed=speed,
                  netdev=vf_netdev(device_id, environ), driver=driver)
