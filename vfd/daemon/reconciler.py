"""The reconciler: what keeps the NIC matching the live configs after the requests that set them:
the start-up restore, backend events (link up, VFs re-created, drift), the periodic drift check (the
one check, `vfd.program.compare`) and re-apply. `Reconciler` is a part of `VFManager` (manager.py),
which holds the state.
"""

from __future__ import annotations

import logging
import time

from vfd.backends.base import NicEvent
from vfd.daemon import events
from vfd.errors import BackendError, VfdError
from vfd.model.vfconfig import parse_vf_config
from vfd.policy.admission import admit
from vfd.policy.qos import normalise_shares
from vfd.program import compare
from vfd.state import LiveVF, PFState
from vfd.store import check_port_id
from vfd.text import escape, shown

log = logging.getLogger("vfd.manager")


class Reconciler:
    """restore, reapply_pf / reapply_vf / reapply_all, reconcile, on_event, and the PF's QoS shares."""

    def restore(self) -> None:
        """Re-admit every live config, then program every VF of every PF to match exactly."""
        t0 = time.monotonic()
        for path in self.store.live_files():
            port_id = path.name[: -len(".json")]
            try:
                check_port_id(port_id, shown(port_id))
                rf = self.store.read(path, port_id)
                cfg = parse_vf_config(rf.data, str(path))
                pf = self.pfs.get(cfg.pciid)
                program = admit(cfg, pf)
            except VfdError as exc:
                dest = self.store.quarantine_live(path)
                log.error("live config %s no longer admits, moved to %s: %s", escape(str(path)), escape(str(dest)),
                          escape(str(exc)))
                continue
            vf = LiveVF(port_id=port_id, config=cfg, program=program, owner_uid=rf.owner_uid, raw=rf.data)
            pf.add(vf)
            self.live[port_id] = vf
        self._load_baselines()
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
                diff = [c.field for c in compare(vf.program, actual, backend.unverifiable_fields(pf.id))
                        if c.differs]
                if diff:
                    log.warning("drift on PF %s VF %d (%s): %s; re-applying", pf.id, vfid, vf.port_id, ", ".join(diff))
                    self.reapply_vf(pf.id, vfid)
                    repaired += 1
                    events.publish("drift", pf=pf.id, vf=vfid, port=vf.port_id, fields=diff,
                                   repaired=(pf.id, vfid) not in self.apply_errors)
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
