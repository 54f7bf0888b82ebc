"""The one interface every NIC backend implements (in the spirit of os-vif's plugins).

A backend opens the PFs it is given, declares per PF what the driver can do (`PFInfo.profile`),
and programs VFs from `VFProgram`s. It never sees configs and never decides policy: admission has
already refused anything the profile lacks. An operation the NIC still refuses at run time
raises BackendError; the caller then restores the previous program.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Callable

from vfd.capabilities import DriverProfile
from vfd.errors import BackendError
from vfd.model.mainconfig import MainConfig, PFConfig
from vfd.program import VFProgram


@dataclass
class PFInfo:
    pf_id: str
    driver: str
    profile: DriverProfile
    vfs_count: int
    link_speed: int            # Mb/s; 0 when neither the NIC nor the config knows it


@dataclass
class PortStats:
    link: str = "-UNK-"        # UP / DOWN / -UNK-
    speed: int = 0
    duplex: int = 0            # 1 = full
    rx_pkts: int = 0
    rx_bytes: int = 0
    rx_errors: int = 0
    rx_dropped: int = 0
    tx_pkts: int = 0
    tx_bytes: int = 0
    tx_errors: int = 0
    spoofed: int = 0


COUNTERS = ("rx_pkts", "rx_bytes", "rx_errors", "rx_dropped", "tx_pkts", "tx_bytes", "tx_errors", "spoofed")


@dataclass
class NicEvent:
    kind: str                  # link_up, link_down, vf_reset, drift, vfs_gone
    pf_id: str
    vfid: int | None = None
    detail: str = ""
    data: dict = field(default_factory=dict)


EventSink = Callable[[NicEvent], None]


class NicBackend(abc.ABC):
    name: str = "?"

    def __init__(self, main: MainConfig):
        self.main = main
        # The manager's programs of a PF, vfid -> VFProgram (the manager sets this): a backend that checks
        # the NIC against the programs on its own asks here and never keeps a second copy.
        self.desired: Callable[[str], dict[int, VFProgram]] = lambda pf_id: {}

    @abc.abstractmethod
    def open_pf(self, pf: PFConfig) -> PFInfo:
        """Take charge of a PF (create VFs if the backend does), apply PF-wide settings."""

    @abc.abstractmethod
    def apply_vf(self, pf_id: str, vfid: int, program: VFProgram, previous: VFProgram | None) -> None:
        """Make the VF match `program`; with `previous`, touch only what differs."""

    @abc.abstractmethod
    def clear_vf(self, pf_id: str, vfid: int, previous: VFProgram | None) -> None:
        """Tear down: filters cleared, rates off, link auto, a fresh random MAC (or the VF's original state)."""

    @abc.abstractmethod
    def read_vf(self, pf_id: str, vfid: int) -> dict:
        """What the NIC reports as programmed, in the VFProgram.to_state() vocabulary: only what it
        can really read back (never the program it was given)."""

    def unverifiable_fields(self, pf_id: str) -> frozenset[str]:
        """Program fields this PF's driver cannot read back: `status` shows them as unverifiable and
        the drift check skips them, instead of calling them in sync or drifted."""
        return frozenset()

    @abc.abstractmethod
    def pf_stats(self, pf_id: str) -> PortStats: ...

    @abc.abstractmethod
    def vf_stats(self, pf_id: str, vfid: int) -> PortStats: ...

    def vf_pci_address(self, pf_id: str, vfid: int) -> str | None:
        return None

    def apply_qos(self, pf_id: str, tclasses: list[dict], shares: dict[int, dict[int, int]]) -> None:
        """Program per-TC bandwidth: the PF's traffic classes and each VF's normalised shares
        (`shares[vfid][tc]`, percent). Backends without it refuse QoS when the PF is opened."""
        raise BackendError(pf_id, "enable_qos", f"per-TC QoS (DCB) is not supported by the {self.name} backend")

    def guest_macs(self, pf_id: str) -> dict[str, int]:
        """MACs guests registered themselves (VF mailbox), by VF: admission keeps configs off them."""
        return {}

    def flush(self) -> None:
        """Make the programmed state visible/durable (the sim writes its state file here)."""

    def attach(self, loop, sink: EventSink) -> None:
        """Start the backend's event sources on the daemon's asyncio loop (link, VF reset, drift)."""

    def close(self) -> None:
        """Release PFs and libraries on every exit path."""


def pci_vf_address(pf_pci: str, offset: int, stride: int, vfid: int) -> str | None:
    """A VF's PCI address from the PF's routing id, first-VF offset and stride (SR-IOV capability)."""
    try:
        dom, bus, devfn = pf_pci.split(":")
        dev, fn = devfn.split(".")
        rid = (int(bus, 16) << 8) | (int(dev, 16) << 3) | int(fn, 16)
    except ValueError:
        return None
    rid += offset + vfid * stride
    return f"{int(dom, 16):04x}:{(rid >> 8) & 0xFF:02x}:{(rid >> 3) & 0x1F:02x}.{rid & 7:x}"
