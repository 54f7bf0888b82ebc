"""Views: pure functions that turn the daemon's state into the text and data of `show` and `status`.

They read what they are given and touch neither the NIC nor the store: the manager gathers the
counters and read-backs (I/O), a view lays them out as the original's columns (`lines`) and as
JSON for programs (`data`). Each returns `(lines, data)`.
"""

from __future__ import annotations

from dataclasses import asdict

from vfd.backends.base import PortStats
from vfd.program import FieldCheck, canonical
from vfd.state import LiveVF, PFState

HEADER = (f"{'PF/VF':<6} {'ID':>4} {'PCIID':<14} {'Link':>6} {'Speed':>6} {'Duplex':>6}"
          + "".join(f" {c:>15}" for c in ("RX pkts", "RX bytes", "RX errors", "RX dropped",
                                          "TX pkts", "TX bytes", "TX errors", "Spoofed")))
_MARK = {"ok": "", "differs": "  MISMATCH", "unverifiable": "  (cannot be read back)"}


def _counters(s: PortStats) -> str:
    return "".join(f" {v:>15}" for v in (s.rx_pkts, s.rx_bytes, s.rx_errors, s.rx_dropped,
                                         s.tx_pkts, s.tx_bytes, s.tx_errors, s.spoofed))


def pf_row(index: int, pci: str, s: PortStats) -> str:
    return f"{'pf':<6} {index:>4} {pci:<14} {s.link:>6} {s.speed:>6} {s.duplex:>6}" + _counters(s)


def vf_row(vfid: int, pci: str | None, s: PortStats) -> str:
    return f"{'vf':<6} {vfid:>4} {(pci or '-'):<14} {s.link:>6} {'':>6} {'':>6}" + _counters(s)


def show_stats(pfs: list[tuple[PFState, PortStats, list[tuple[int, str | None, PortStats]] | None]]):
    """`show all|pfs|N`: per PF its counters and, unless only PFs were asked (vfs None), each VF's
    (vfid, PCI address, counters)."""
    lines, rows = [HEADER], []
    for pf, stats, vfs in pfs:
        lines.append(pf_row(pf.index, pf.id, stats))
        row = {"index": pf.index, "pf": pf.id, "stats": asdict(stats), "vfs": []}
        if vfs is not None:
            for vfid, pci, vstats in vfs:
                lines.append(vf_row(vfid, pci, vstats))
                row["vfs"].append({"vf": vfid, "port": pf.vfs[vfid].port_id, "pci": pci, "stats": asdict(vstats)})
            lines.append("")
        rows.append(row)
    return lines, {"pfs": rows}


def show_extended(pfs: list[PFState], apply_errors: dict):
    lines, rows = [], []
    for pf in pfs:
        rows.append({"index": pf.index, "pf": pf.id, "backend": pf.backend, "driver": pf.profile.driver,
                     "vfs_count": pf.vfs_count, "live": len(pf.vfs), "mtu": pf.mtu, "speed": pf.link_speed,
                     "vlans_used": len(pf.vlan_refs), "vlan_filter_size": pf.profile.vlan_filter_size,
                     "macs_used": pf.mac_total, "mac_table_size": pf.profile.mac_table_size,
                     "min_rate_sum": pf.min_rate_sum,
                     "qos_share_sums": {str(tc): pf.share_sum[tc] for tc in pf.tcs()} if pf.qos else None,
                     "vfs": [{"vf": vfid, "port": vf.port_id, **vf.program.to_state()}
                             for vfid, vf in sorted(pf.vfs.items())]})
        lines.append(f"port {pf.index}: {pf.id} backend {pf.backend} driver {pf.profile.driver} "
                     f"vfs {pf.vfs_count} live {len(pf.vfs)} mtu {pf.mtu} speed {pf.link_speed} Mb/s")
        lines.append(f"  distinct vlans {len(pf.vlan_refs)}/{pf.profile.vlan_filter_size}, macs "
                     f"{pf.mac_total}/{pf.profile.mac_table_size}, guaranteed rate {pf.min_rate_sum:.3f}")
        if pf.qos:
            lines.append("  qos: TC share sums " + ", ".join(f"tc{tc} {pf.share_sum[tc]}%" for tc in pf.tcs())
                         + (f"; last QoS error: {apply_errors[(pf.id, -1)]}" if (pf.id, -1) in apply_errors
                            else ""))
        for vfid in sorted(pf.vfs):
            vf = pf.vfs[vfid]
            rate = f"{vf.program.max_rate} Mb/s" if vf.program.max_rate else "unlimited"
            lines.append(f"  vf {vfid}: {vf.port_id} vlans {list(vf.program.vlans)} mac {vf.program.mac} "
                         f"strip {vf.program.strip} insert {vf.program.insert} rate {rate}")
    return lines, {"pfs": rows}


def show_pci(pfs: list[tuple[PFState, list[str | None]]]):
    """Every VF's PCI address: `pf <index> <pf id> vf <n> <pci> live <port>|free`, for agents that map a
    VF's PCI address (what nova and the CNI know) to (PF, vfid); `data.vfs` the same as JSON."""
    lines, rows = [], []
    for pf, addresses in pfs:
        for vfid, pci in enumerate(addresses):
            port = pf.vfs[vfid].port_id if vfid in pf.vfs else None
            lines.append(f"pf {pf.index} {pf.id} vf {vfid} {pci or '-'} " + (f"live {port}" if port else "free"))
            rows.append({"pf_index": pf.index, "pf": pf.id, "vf": vfid, "pci": pci, "port": port})
    return lines, {"vfs": rows}


def show_mirrors(pfs: list[PFState]):
    lines, rows = [], []
    for pf in pfs:
        mirrors = [(vfid, vf.program.mirror) for vfid, vf in sorted(pf.vfs.items()) if vf.program.mirror]
        lines.append(f"port {pf.index} has {len(mirrors)} mirrors:")
        lines += [f"  vf {vfid} ({m[1]}) ==> vf {m[0]}" for vfid, m in mirrors]
        rows += [{"pf_index": pf.index, "pf": pf.id, "vf": vfid, "direction": m[1], "target": m[0]}
                 for vfid, m in mirrors]
    return lines, {"mirrors": rows}


def status(port_id: str, vf: LiveVF, pf: PFState, checks: list[FieldCheck], pci: str | None,
           apply_error: str | None):
    """Desired next to programmed, field by field (the one drift check's result, `vfd.program.compare`)."""
    rows = [(c.field, canonical(c.desired), "-" if c.state != "ok" and c.programmed is None else
             canonical(c.programmed), _MARK[c.state]) for c in checks]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(("field", "desired", "programmed"))]
    lines = [f"port {port_id}: name {vf.config.name!r}, PF {pf.id} ({pf.backend}, driver {pf.profile.driver}), "
             f"VF {vf.vfid}, PCI {pci or '-'}",
             f"{'field':<{widths[0]}}  {'desired':<{widths[1]}}  {'programmed':<{widths[2]}}".rstrip()]
    for key, want, have, flag in rows:
        lines.append(f"{key:<{widths[0]}}  {want:<{widths[1]}}  {have:<{widths[2]}}{flag}".rstrip())
    mismatches = sum(c.differs for c in checks)
    unverifiable = [c.field for c in checks if c.state == "unverifiable"]
    if apply_error:
        lines.append(f"last apply error: {apply_error}")
    if mismatches:
        lines.append(f"{mismatches} field(s) differ from the config")
    elif unverifiable:
        lines.append(f"in sync where readable; {len(unverifiable)} field(s) cannot be read back from driver "
                     f"{pf.profile.driver}: {', '.join(unverifiable)}")
    else:
        lines.append("in sync")
    fields = [{"field": c.field, "desired": c.desired, "programmed": c.programmed, "differs": c.differs,
               "state": c.state} for c in checks]
    return lines, {"port": port_id, "pf": pf.id, "vf": vf.vfid, "pci": pci, "in_sync": not mismatches,
                   "unverifiable": unverifiable, "fields": fields, "apply_error": apply_error}
