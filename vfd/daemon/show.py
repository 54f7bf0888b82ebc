"""The text of `iplex show`: the original's columns, one row per PF and per configured VF."""

from __future__ import annotations

from vfd.backends.base import PortStats

HEADER = (f"{'PF/VF':<6} {'ID':>4} {'PCIID':<14} {'Link':>6} {'Speed':>6} {'Duplex':>6}"
          + "".join(f" {c:>15}" for c in ("RX pkts", "RX bytes", "RX errors", "RX dropped",
                                          "TX pkts", "TX bytes", "TX errors", "Spoofed")))


def _counters(s: PortStats) -> str:
    return "".join(f" {v:>15}" for v in (s.rx_pkts, s.rx_bytes, s.rx_errors, s.rx_dropped,
                                         s.tx_pkts, s.tx_bytes, s.tx_errors, s.spoofed))


def pf_row(index: int, pci: str, s: PortStats) -> str:
    return f"{'pf':<6} {index:>4} {pci:<14} {s.link:>6} {s.speed:>6} {s.duplex:>6}" + _counters(s)


def vf_row(vfid: int, pci: str | None, s: PortStats) -> str:
    return f"{'vf':<6} {vfid:>4} {(pci or '-'):<14} {s.link:>6} {'':>6} {'':>6}" + _counters(s)
