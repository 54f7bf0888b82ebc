"""The VF manager: the one place where requests change desired state, the store and the NIC together.

Every change follows the same order: parse and admit (pure; refusals change nothing), program the
NIC, make the live file durable, then update memory. A failure after the NIC was touched puts the
previous program back, so the NIC, the live directory and memory never disagree for longer than
one request. Requests are served one at a time by the daemon's event loop.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, replace

from vfd import PROTOCOL_VERSION
from vfd.backends.base import COUNTERS, NicBackend, NicEvent, PortStats
from vfd.capabilities import Feature
from vfd.errors import BackendError, RequestError, VfdError
from vfd.model.mainconfig import MainConfig
from vfd.model.vfconfig import VFConfig, parse_vf_config
from vfd.policy.admission import admit
from vfd.policy.qos import normalise_shares
from vfd.program import VFProgram
from vfd.state import LiveVF, PFState
from vfd.store import Store
from vfd.daemon import show as showfmt

log = logging.getLogger("vfd.manager")


@dataclass
class Reply:
    ok: bool
    lines: list[str]
    data: dict | None = None     # the same answer for programs (docs/iplex.md); msg lines are for people


def _ok(*lines: str) -> Reply:
    return Reply(True, list(lines))


def _err(*lines: str) -> Reply:
    return Reply(False, list(lines))


class VFManager:
    def __init__(self, main: MainConfig, backends: dict[str, NicBackend], store: Store):
        self.main = main
        self.backends = backends
        self.store = store
        self.pfs: dict[str, PFState] = {}
        self.live: dict[str, LiveVF] = {}
        self.apply_errors: dict[tuple[str, int], str] = {}
        self.stats_base: dict[tuple[str, int | None], PortStats] = {}   # clear-on-request baselines

    # ---- start-up -----------------------------------------------------------------------------
    def open_pfs(self) -> None:
        for index, pf in enumerate(self.main.pciids):
            backend_name = self.main.backend_of(pf)
            info = self.backends[backend_name].open_pf(pf)
            self.pfs[pf.id] = PFState(cfg=pf, backend=backend_name, profile=info.profile,
                                      vfs_count=info.vfs_count, link_speed=info.link_speed,
                                      mtu=self.main.mtu_of(pf), qos=self.main.enable_qos, index=index)
            log.info("PF %s (%s, driver %s, %d VFs, %d Mb/s) opened", pf.id, backend_name, info.driver,
                     info.vfs_count, info.link_speed)
            if self.main.enable_qos:
                if not info.profile.has(Feature.QOS):
                    raise BackendError(pf.id, "enable_qos", f"per-TC QoS (DCB) is not supported by driver "
                                                            f"{info.driver} on the {backend_name} backend")
                self._apply_qos(self.pfs[pf.id], strict=True)   # refuses here if the backend cannot

    def restore(self) -> None:
        """Re-admit every live config, then program every VF of every PF to match exactly."""
        t0 = time.monotonic()
        for path in self.store.live_files():
            port_id = path.name[: -len(".json")]
            try:
                rf = self.store.read(path, port_id)
                cfg = parse_vf_config(rf.data, str(path))
                pf = self.pfs.get(cfg.pciid)
                program = admit(cfg, pf)
            except VfdError as exc:
                dest = self.store.quarantine_live(path)
                log.error("live config %s no longer admits, moved to %s: %s", path, dest, exc)
                continue
            vf = LiveVF(port_id=port_id, config=cfg, program=program, owner_uid=rf.owner_uid, raw=rf.data)
            pf.add(vf)
            self.live[port_id] = vf
        for pf in self.pfs.values():
            self.reapply_pf(pf.id, clear_unconfigured=True)
            self._apply_qos(pf)
            log.info("PF %s is ready", pf.id)
        self.flush()
        log.info("restored %d VFs on %d PFs in %.3fs", len(self.live), len(self.pfs), time.monotonic() - t0)

    def reapply_pf(self, pf_id: str, clear_unconfigured: bool = False) -> None:
        pf = self.pfs[pf_id]
        backend = self.backends[pf.backend]
        for vfid in range(pf.vfs_count):
            vf = pf.vfs.get(vfid)
            try:
                if vf is not None:
                    backend.apply_vf(pf_id, vfid, vf.program, None)
                    self.apply_errors.pop((pf_id, vfid), None)
                elif clear_unconfigured:
                    backend.clear_vf(pf_id, vfid, None)
            except VfdError as exc:
                self.apply_errors[(pf_id, vfid)] = str(exc)
                log.error("PF %s VF %d: re-apply failed: %s", pf_id, vfid, exc)

    def reapply_vf(self, pf_id: str, vfid: int) -> None:
        pf = self.pfs.get(pf_id)
        vf = pf.vfs.get(vfid) if pf else None
        if vf is None:
            return
        try:
            self.backends[pf.backend].apply_vf(pf_id, vfid, vf.program, None)
            self.apply_errors.pop((pf_id, vfid), None)
        except VfdError as exc:
            self.apply_errors[(pf_id, vfid)] = str(exc)
            log.error("PF %s VF %d: re-apply failed: %s", pf_id, vfid, exc)
        self.flush()

    def reconcile(self) -> int:
        """Compare every live VF with what its NIC reports and re-apply where they differ (drift)."""
        repaired = 0
        for pf in self.pfs.values():
            backend = self.backends[pf.backend]
            for vfid, vf in list(pf.vfs.items()):
                try:
                    actual = backend.read_vf(pf.id, vfid)
                except VfdError as exc:
                    log.warning("reconcile: PF %s VF %d unreadable: %s", pf.id, vfid, exc)
                    continue
                want = vf.program.to_state()
                diff = [k for k, v in want.items() if actual.get(k) != v and not (k == "mac" and v is None)]
                if diff:
                    log.warning("drift on PF %s VF %d (%s): %s; re-applying", pf.id, vfid, vf.port_id, ", ".join(diff))
                    self.reapply_vf(pf.id, vfid)
                    repaired += 1
        return repaired

    def reapply_all(self) -> None:
        for pf_id in self.pfs:
            self.reapply_pf(pf_id)
        self.flush()

    def on_event(self, ev: NicEvent) -> None:
        """Backend events: re-apply what the NIC may have lost."""
        log.info("event %s on PF %s%s %s", ev.kind, ev.pf_id, "" if ev.vfid is None else f" VF {ev.vfid}", ev.detail)
        if ev.pf_id not in self.pfs:
            return
        if ev.kind in ("link_up", "vfs_gone"):
            self.reapply_pf(ev.pf_id, clear_unconfigured=ev.kind == "vfs_gone")
            self.flush()
        elif ev.kind in ("vf_reset", "drift") and ev.vfid is not None:
            self.reapply_vf(ev.pf_id, ev.vfid)

    def flush(self) -> None:
        for b in self.backends.values():
            b.flush()

    def _apply_qos(self, pf: PFState, strict: bool = False) -> None:
        """After any VF change on a QoS PF: every VF's shares, normalised to 100 per TC, to the NIC."""
        if not pf.qos:
            return
        requested = {vfid: pf.shares_of(vf.config) for vfid, vf in pf.vfs.items()}
        tclasses = [{"pri": t.pri, "name": t.label, "min_bw": t.min_bw, "max_bw": t.max_bw, "lsp": t.lsp,
                     "bsp": t.bsp, "bwg": next((int(g[3:]) for g, tcs in pf.cfg.bw_grps.items() if t.pri in tcs), 0)}
                    for t in pf.cfg.tclasses]
        backend = self.backends[pf.backend]
        try:
            backend.apply_qos(pf.id, tclasses, normalise_shares(requested, pf.tcs()))
            self.apply_errors.pop((pf.id, -1), None)
        except BackendError as exc:
            if strict:
                raise
            self.apply_errors[(pf.id, -1)] = str(exc)
            log.error("PF %s: QoS shares not applied: %s", pf.id, exc)
        finally:
            backend.flush()

    # ---- add / update / delete ----------------------------------------------------------------
    def add(self, filename: object, requester_uid: int | None = 0) -> Reply:
        try:
            path, port_id = self.store.resolve(filename, "config")
        except RequestError as exc:
            return _err(f"unable to add vf: {filename}: {exc}")
        try:
            if port_id in self.live:
                raise RequestError(f"'{port_id}' is already live (on PF {self.live[port_id].pf_id} VF "
                                   f"{self.live[port_id].vfid}); use update to change it")
            rf = self.store.read(path, port_id)
            cfg = parse_vf_config(rf.data, path.name)
            pf = self.pfs.get(cfg.pciid)
            program = admit(cfg, pf, guest_macs=self._guest_macs(pf))
            self._program_new(pf, cfg.vfid, program)
            try:
                self.store.write_live(port_id, rf.data, rf.owner_uid)
            except OSError as exc:
                self._clear(pf, cfg.vfid, program)
                raise RequestError(f"cannot write the live config: {exc.strerror}") from None
            self.store.consume(path)
        except VfdError as exc:
            self._mark_error(path)   # the original's convention: a refused drop file becomes .error
            log.info("add %s refused: %s", port_id, exc)
            return _err(f"unable to add vf: {port_id}: {exc}")
        vf = LiveVF(port_id=port_id, config=cfg, program=program, owner_uid=rf.owner_uid, raw=rf.data)
        pf.add(vf)
        self.live[port_id] = vf
        self._apply_qos(pf)
        log.info("vf added: %s on PF %s VF %d", port_id, pf.id, cfg.vfid)
        return _ok(f"vf added successfully: {port_id}")

    def update(self, filename: object, requester_uid: int | None = 0) -> Reply:
        try:
            path, port_id = self.store.resolve(filename, "config")
            old = self.live.get(port_id)
            if old is None:
                raise RequestError(f"'{port_id}' is not live; use add")
            rf = self.store.read(path, port_id)
            cfg = parse_vf_config(rf.data, path.name)
            self._replace(old, cfg, rf.data, rf.owner_uid)
            self.store.consume(path)
        except VfdError as exc:
            log.info("update %s refused: %s", filename, exc)
            return _err(f"unable to update vf: {filename}: {exc}")
        return _ok(f"vf updated successfully: {port_id}")

    def _replace(self, old: LiveVF, cfg: VFConfig, raw: bytes, owner_uid: int) -> LiveVF:
        """Admit `cfg` in place of `old`, program only the difference, keep `old` on any failure."""
        if cfg.name != old.config.name:
            raise RequestError(f"name in config did not match name given when VF was added: expected "
                               f"{old.config.name!r}, found {cfg.name!r}")
        pf = self.pfs.get(cfg.pciid)
        program = admit(cfg, pf, replacing=old, guest_macs=self._guest_macs(pf))
        old_pf = self.pfs[old.pf_id]
        same_vf = pf is old_pf and cfg.vfid == old.vfid
        if same_vf:
            self._program_change(pf, cfg.vfid, program, old.program)
        else:
            self._program_new(pf, cfg.vfid, program)
        try:
            self.store.write_live(old.port_id, raw, owner_uid)
        except OSError as exc:
            if same_vf:
                self._program_change(pf, cfg.vfid, old.program, program)
            else:
                self._clear(pf, cfg.vfid, program)
            raise RequestError(f"cannot write the live config: {exc.strerror}") from None
        if not same_vf:
            try:
                self._clear(old_pf, old.vfid, old.program)
            except VfdError as exc:  # the new VF is live; the old one is only left dirty
                log.error("update %s: clearing the old VF failed: %s", old.port_id, exc)
        new = LiveVF(port_id=old.port_id, config=cfg, program=program, owner_uid=owner_uid, raw=raw)
        old_pf.remove(old)
        pf.add(new)
        self.live[old.port_id] = new
        self._apply_qos(pf)
        if old_pf is not pf:
            self._apply_qos(old_pf)
        log.info("vf updated: %s on PF %s VF %d (%s)", old.port_id, pf.id, cfg.vfid,
                 ", ".join(program.changed_fields(old.program if same_vf else None)) or "no change")
        return new

    def delete(self, filename: object, requester_uid: int | None = 0) -> Reply:
        try:
            path, port_id = self.store.resolve(filename, "live")
            vf = self.live.get(port_id)
            if vf is None:
                raise RequestError(f"'{port_id}' is not a live VF config")
            if path.exists():
                rf = self.store.read(path, port_id)
                try:
                    name = json.loads(rf.data).get("name", "unnamed")
                except (ValueError, AttributeError):
                    name = None
                if name != vf.config.name:
                    raise RequestError(f"name in config did not match name given when VF was added: expected "
                                       f"{vf.config.name!r}, found {name!r}")
            else:
                log.warning("delete %s: live file already gone; clearing the VF anyway", port_id)
            pf = self.pfs[vf.pf_id]
            self._clear(pf, vf.vfid, vf.program)
            if path.exists():
                try:
                    self.store.remove_live(port_id)
                except OSError as exc:
                    self._program_new(pf, vf.vfid, vf.program)
                    raise RequestError(f"cannot remove the live config: {exc.strerror}") from None
        except VfdError as exc:
            log.info("delete %s refused: %s", filename, exc)
            return _err(f"unable to delete vf: {filename}: {exc}")
        pf.remove(vf)
        del self.live[port_id]
        self.apply_errors.pop((pf.id, vf.vfid), None)
        self._apply_qos(pf)
        log.info("vf deleted: %s from PF %s VF %d", port_id, pf.id, vf.vfid)
        return _ok(f"vf deleted successfully: {port_id}")

    def _guest_macs(self, pf: PFState | None) -> dict[str, int]:
        return self.backends[pf.backend].guest_macs(pf.id) if pf is not None else {}

    # ---- NIC programming with rollback ------------------------------------------------------
    def _program_new(self, pf: PFState, vfid: int, program: VFProgram) -> None:
        backend = self.backends[pf.backend]
        try:
            backend.apply_vf(pf.id, vfid, program, None)
        except BackendError:
            self._clear(pf, vfid, program, quiet=True)
            raise
        finally:
            backend.flush()

    def _program_change(self, pf: PFState, vfid: int, program: VFProgram, previous: VFProgram) -> None:
        backend = self.backends[pf.backend]
        try:
            backend.apply_vf(pf.id, vfid, program, previous)
        except BackendError:
            try:
                backend.apply_vf(pf.id, vfid, previous, None)
            except BackendError as exc:
                self.apply_errors[(pf.id, vfid)] = f"rollback failed: {exc}"
                log.error("PF %s VF %d: rollback failed: %s", pf.id, vfid, exc)
            raise
        finally:
            backend.flush()

    def _clear(self, pf: PFState, vfid: int, previous: VFProgram | None, quiet: bool = False) -> None:
        backend = self.backends[pf.backend]
        try:
            backend.clear_vf(pf.id, vfid, previous)
        except BackendError as exc:
            if not quiet:
                raise
            log.error("PF %s VF %d: clear failed: %s", pf.id, vfid, exc)
        finally:
            backend.flush()

    def _mark_error(self, path) -> None:
        try:
            self.store.mark_error(path)
        except OSError as exc:
            log.warning("could not rename %s to .error: %s", path, exc)

    # ---- reads --------------------------------------------------------------------------------
    def status(self, filename: object) -> Reply:
        try:
            _, port_id = self.store.resolve(filename, "live")
        except RequestError as exc:
            return _err(f"unable to show status: {exc}")
        vf = self.live.get(port_id)
        if vf is None:
            return _err(f"unable to show status: '{port_id}' is not a live VF config")
        pf = self.pfs[vf.pf_id]
        backend = self.backends[pf.backend]
        try:
            actual = backend.read_vf(pf.id, vf.vfid)
        except VfdError as exc:
            return _err(f"unable to read VF state: {exc}")
        desired = vf.program.to_state()
        if vf.program.mac is None:
            desired["mac"] = actual.get("mac")
        lines = [f"port {port_id}: name {vf.config.name!r}, PF {pf.id} ({pf.backend}, driver {pf.profile.driver}), "
                 f"VF {vf.vfid}, PCI {backend.vf_pci_address(pf.id, vf.vfid) or '-'}",
                 f"{'field':<16} {'desired':<28} {'programmed':<28}"]
        mismatches = 0
        fields = []
        for key, want in desired.items():
            have = actual.get(key, "-")
            flag = "" if have == want else "  MISMATCH"
            mismatches += bool(flag)
            fields.append({"field": key, "desired": want, "programmed": have, "differs": bool(flag)})
            lines.append(f"{key:<16} {json.dumps(want):<28} {json.dumps(have):<28}{flag}")
        err = self.apply_errors.get((pf.id, vf.vfid))
        if err:
            lines.append(f"last apply error: {err}")
        lines.append("in sync" if not mismatches else f"{mismatches} field(s) differ from the config")
        return Reply(True, lines, {"in_sync": not mismatches, "fields": fields})

    def show(self, what: object) -> Reply:
        what = what if isinstance(what, str) else ""
        w = what.strip().lower()
        if w in ("all", "pfs", ""):
            pfs = list(self.pfs.values())
        elif w.startswith("ext"):
            return self._show_extended()
        elif w.startswith("mirror"):
            return self._show_mirrors()
        elif w == "pci":
            return self._show_pci()
        elif w.isdigit() and int(w) < len(self.pfs):
            pfs = [list(self.pfs.values())[int(w)]]
        else:
            pf = self.pfs.get(what.strip())
            if pf is None:
                return _err(f"unknown target {what!r} (not one of all, pfs, extended, mirror, pci, a PF number "
                            f"0..{len(self.pfs) - 1} or a PF id)")
            pfs = [pf]
        lines = [showfmt.HEADER]
        for pf in pfs:
            backend = self.backends[pf.backend]
            lines.append(showfmt.pf_row(pf.index, pf.id, self._stats(pf, None)))
            if w != "pfs":
                for vfid in sorted(pf.vfs):
                    lines.append(showfmt.vf_row(vfid, backend.vf_pci_address(pf.id, vfid), self._stats(pf, vfid)))
                lines.append("")
        return Reply(True, lines)

    def _raw_stats(self, pf: PFState, vfid: int | None) -> PortStats:
        backend = self.backends[pf.backend]
        return backend.pf_stats(pf.id) if vfid is None else backend.vf_stats(pf.id, vfid)

    def _stats(self, pf: PFState, vfid: int | None) -> PortStats:
        """Counters since the last clear_stats (NICs rarely can zero VF counters; vfd keeps baselines)."""
        raw = self._raw_stats(pf, vfid)
        base = self.stats_base.get((pf.id, vfid))
        if base is None:
            return raw
        if any(getattr(raw, c) < getattr(base, c) for c in COUNTERS):   # the NIC reset them itself
            del self.stats_base[(pf.id, vfid)]
            return raw
        return replace(raw, **{c: getattr(raw, c) - getattr(base, c) for c in COUNTERS})

    def clear_stats(self, resource: object, requester_uid: int | None = 0) -> Reply:
        """`all`, `<pf>` (number or id: the PF and its VFs) or `<pf> <vf>`: counters start again at 0."""
        parts = resource.split() if isinstance(resource, str) else []
        if not parts or parts == ["all"]:
            targets = [(pf, v) for pf in self.pfs.values() for v in [None, *range(pf.vfs_count)]]
        else:
            pf = self._pf_arg(parts[0])
            if pf is None or len(parts) > 2:
                return _err(f"unable to clear counters: expected 'all', '<pf>' or '<pf> <vf>', got {resource!r}")
            if len(parts) == 1:
                targets = [(pf, v) for v in [None, *range(pf.vfs_count)]]
            elif parts[1].isdigit() and int(parts[1]) < pf.vfs_count:
                targets = [(pf, int(parts[1]))]
            else:
                return _err(f"unable to clear counters: VF {parts[1]!r} is not a VF of PF {pf.id}")
        for pf, vfid in targets:
            try:
                self.stats_base[(pf.id, vfid)] = self._raw_stats(pf, vfid)
            except VfdError as exc:
                return _err(f"unable to clear counters of PF {pf.id}: {exc}")
        what = "all PFs" if not parts or parts == ["all"] else " ".join(parts)
        return _ok(f"counters cleared: {what}")

    def _pf_arg(self, arg: str) -> PFState | None:
        """A PF named by its position in the main config (as `show N`) or by its id."""
        pf = self.pfs.get(arg)
        if pf is None and arg.isdigit() and int(arg) < len(self.pfs):
            pf = list(self.pfs.values())[int(arg)]
        return pf

    def _show_extended(self) -> Reply:
        lines = []
        for pf in self.pfs.values():
            lines.append(f"port {pf.index}: {pf.id} backend {pf.backend} driver {pf.profile.driver} "
                         f"vfs {pf.vfs_count} live {len(pf.vfs)} mtu {pf.mtu} speed {pf.link_speed}")
            lines.append(f"  distinct vlans {len(pf.vlan_refs)}/{pf.profile.vlan_filter_size}, macs "
                         f"{pf.mac_total}/{pf.profile.mac_table_size}, guaranteed rate {pf.min_rate_sum:.3f}")
            if pf.qos:
                lines.append("  qos: TC share sums " + ", ".join(f"tc{tc} {pf.share_sum[tc]}%" for tc in pf.tcs())
                             + (f"; last QoS error: {self.apply_errors[(pf.id, -1)]}" if (pf.id, -1) in self.apply_errors
                                else ""))
            for vfid in sorted(pf.vfs):
                vf = pf.vfs[vfid]
                lines.append(f"  vf {vfid}: {vf.port_id} vlans {list(vf.program.vlans)} mac {vf.program.mac} "
                             f"strip {vf.program.strip} insert {vf.program.insert} rate {vf.program.max_rate}")
        return Reply(True, lines)

    def _show_pci(self) -> Reply:
        """Every VF's PCI address: `pf <index> <pf id> vf <n> <pci> live|free`, for agents that map a
        VF's PCI address (what nova and the CNI know) to (PF, vfid)."""
        lines = []
        for pf in self.pfs.values():
            backend = self.backends[pf.backend]
            for vfid in range(pf.vfs_count):
                state = f"live {pf.vfs[vfid].port_id}" if vfid in pf.vfs else "free"
                lines.append(f"pf {pf.index} {pf.id} vf {vfid} {backend.vf_pci_address(pf.id, vfid) or '-'} {state}")
        return Reply(True, lines)

    def _show_mirrors(self) -> Reply:
        lines = []
        for pf in self.pfs.values():
            mirrors = [(vfid, vf.program.mirror) for vfid, vf in sorted(pf.vfs.items()) if vf.program.mirror]
            lines.append(f"port {pf.index} has {len(mirrors)} mirrors:")
            lines += [f"  vf {vfid} ({m[1]}) ==> vf {m[0]}" for vfid, m in mirrors]
        return Reply(True, lines)

    # ---- other actions ------------------------------------------------------------------------
    def mirror(self, resource: object, requester_uid: int | None = 0) -> Reply:
        """`pf vf dir [target]`: change a live VF's mirror; persisted in its live config."""
        parts = resource.split() if isinstance(resource, str) else []
        if len(parts) not in (3, 4):
            return _err("mirror update failed: expected '<pf> <vf> <in|out|all|off> [<target>]'")
        pf_arg, vf_arg, direction = parts[:3]
        pf = self._pf_arg(pf_arg)
        if pf is None:
            return _err(f"mirror update failed: unknown PF {pf_arg!r}")
        if not vf_arg.isdigit() or int(vf_arg) not in pf.vfs:
            return _err(f"mirror update failed: VF {vf_arg!r} is not configured on PF {pf.id}")
        vf = pf.vfs[int(vf_arg)]
        direction = {"on": "all", "both": "all"}.get(direction.lower(), direction.lower())
        if direction not in ("in", "out", "all", "off"):
            return _err(f"mirror update failed: direction {direction!r} is not one of in, out, all, off")
        data = json.loads(vf.raw)
        if direction == "off":
            data.pop("mirror", None)
        else:
            if len(parts) != 4 or not parts[3].isdigit():
                return _err("mirror update failed: a target VF number is required unless the direction is off")
            data["mirror"] = {"target": int(parts[3]), "direction": direction}
        raw = (json.dumps(data, indent=2) + "\n").encode()
        try:
            cfg = parse_vf_config(raw, f"{vf.port_id}.json")
            self._replace(vf, cfg, raw, vf.owner_uid)
        except VfdError as exc:
            return _err(f"mirror update failed: {exc}")
        return _ok(f"mirror update successful: pf {pf.id} vf {vf.vfid} {direction}"
                   + (f" -> vf {parts[3]}" if direction != "off" else ""))

    def export(self, filename: object, output: object, requester_uid: int | None = 0) -> Reply:
        try:
            _, port_id = self.store.resolve(filename, "live")
            if port_id not in self.live:
                raise RequestError(f"'{port_id}' is not a live VF config")
            out = self.store.export(port_id, output)
        except (VfdError, OSError) as exc:
            return _err(f"unable to export config {filename}: {exc}")
        return _ok(f"config {port_id} exported to {out}")

    def dump(self) -> Reply:
        for pf in self.pfs.values():
            log.warning("dump: PF %s backend %s driver %s vfs %d live %d", pf.id, pf.backend, pf.profile.driver,
                        pf.vfs_count, len(pf.vfs))
            for vfid, vf in sorted(pf.vfs.items()):
                log.warning("dump: PF %s VF %d %s: %s", pf.id, vfid, vf.port_id, json.dumps(vf.program.to_state()))
        return _ok("dump captured in the log")

    @staticmethod
    def ping() -> Reply:
        return _ok(f"pong: {PROTOCOL_VERSION}")

    def callbacks(self, which: str) -> list[tuple[str, str, int]]:
        out = []
        for vf in self.live.values():
            cmd = vf.config.start_cb if which == "start_cb" else vf.config.stop_cb
            if cmd:
                out.append((vf.port_id, cmd, vf.owner_uid))
        return out

    def mirrors_off(self) -> None:
        """At shutdown: hanging mirrors were suspected of crashing hosts on the next start."""
        for pf in self.pfs.values():
            backend = self.backends[pf.backend]
            for vfid, vf in pf.vfs.items():
                if vf.program.mirror:
                    try:
                        backend.apply_vf(pf.id, vfid, replace(vf.program, mirror=None), vf.program)
                    except VfdError as exc:
                        log.critical("PF %s VF %d: could not turn the mirror off: %s", pf.id, vfid, exc)
        self.flush()

    def close(self) -> None:
        for b in self.backends.values():
            try:
                b.close()
            except Exception:  # noqa: BLE001 - every backend must get its chance to close
                log.exception("closing backend %s failed", b.name)


__all__ = ["VFManager", "Reply"]
