"""The VF manager: the one place where requests change desired state, the store and the NIC together.

Every change follows the same order: check who asks, parse and admit (pure; refusals change
nothing), then one transaction: program the NIC, make the live file durable, update memory and
the PF's QoS shares. Each step records how to undo itself before it runs; any exception in any
step (a NIC refusal, a full disk under the backend's state or the live directory, a bug) undoes
every recorded step in reverse, so the NIC, the live directory and memory never disagree for
longer than one request. Requests are served one at a time by the daemon's event loop.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, replace
from typing import Callable

from vfd import PROTOCOL_VERSION
from vfd.backends.base import COUNTERS, NicBackend, NicEvent, PortStats
from vfd.capabilities import check_pf_settings
from vfd.errors import AdmissionError, BackendError, ConfigError, NotLive, RequestError, VfdError
from vfd.model.mainconfig import MainConfig
from vfd.model.vfconfig import parse_vf_config
from vfd.policy import authz
from vfd.policy.admission import admit
from vfd.policy.qos import normalise_shares
from vfd.program import canonical, compare
from vfd.state import LiveVF, PFState
from vfd.store import Store, StoreError, check_port_id
from vfd.text import escape, shown
from vfd.daemon import events, show as showfmt

log = logging.getLogger("vfd.manager")


@dataclass
class Reply:
    ok: bool
    lines: list[str]
    data: dict | None = None     # the same answer for programs (docs/iplex.md); msg lines are for people

    def __post_init__(self):
        # one line stays one line, whatever a port name, file name or config value contained
        self.lines = [escape(line) for line in self.lines]


def _ok(*lines: str, data: dict | None = None) -> Reply:
    return Reply(True, list(lines), data)


def _err(*lines: str, data: dict | None = None) -> Reply:
    return Reply(False, list(lines), data)


def _small_int(text: str, limit: int = 1 << 20) -> int | None:
    """A request's number: ASCII digits only (not '²'), and short enough never to reach int()'s limits."""
    if not text.isascii() or not text.isdigit() or len(text) > 9:
        return None
    n = int(text)
    return n if n < limit else None


def _name(filename: object) -> str:
    """A request's file name as the original's messages show it (escaped and bounded by Reply)."""
    text = filename if isinstance(filename, str) else repr(filename)
    return text if len(text) <= 200 else text[:197] + "..."


def _json_safe(value: object) -> object:
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return repr(value)


def _refusal_data(exc: Exception) -> dict | None:
    if isinstance(exc, AdmissionError):
        return {"rule": exc.rule, "field": exc.field, "value": _json_safe(exc.value)}
    if isinstance(exc, authz.PermissionRefused):
        return {"rule": "permission", "action": exc.action, "requester_uid": exc.requester_uid}
    if isinstance(exc, NotLive):
        return {"rule": "not_live", "port": exc.port_id}
    return None


def _describe(exc: BaseException) -> str:
    """A failure as one clear sentence: vfd's own errors carry their text; an OSError names the
    call's file and the reason (never "internal error ... [Errno 28]")."""
    if isinstance(exc, VfdError):
        return str(exc)
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{exc.strerror or exc}{where}"
    return f"internal error: {type(exc).__name__}: {exc}"


class _Undo:
    """The steps of one transaction, each with its inverse; `rollback` runs the inverses in reverse
    order and carries on past a failing one (it is logged and recorded as an apply error)."""

    def __init__(self, what: str):
        self.what = what
        self.steps: list[tuple[str, Callable[[], None]]] = []

    def push(self, step: str, inverse: Callable[[], None]) -> None:
        self.steps.append((step, inverse))

    def rollback(self) -> list[str]:
        failed = []
        for step, inverse in reversed(self.steps):
            try:
                inverse()
            except Exception as exc:  # noqa: BLE001 - every other step must still be undone
                failed.append(f"{step}: {_describe(exc)}")
                log.error("%s: undoing %s failed: %s", self.what, step, escape(_describe(exc)))
        self.steps.clear()
        return failed


class VFManager:
    def __init__(self, main: MainConfig, backends: dict[str, NicBackend], store: Store):
        self.main = main
        self.backends = backends
        self.store = store
        self.pfs: dict[str, PFState] = {}
        self.live: dict[str, LiveVF] = {}
        self.apply_errors: dict[tuple[str, int], str] = {}
        # clear_stats baselines, (pf id, vfid or None for the PF) -> counter values; kept in the live dir
        self.stats_base: dict[tuple[str, int | None], dict[str, int]] = {}

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
            check_pf_settings(pf.id, backend_name, info.profile, enable_loopback=pf.enable_loopback,
                              enable_qos=self.main.enable_qos)
            if self.main.enable_qos:
                self._apply_qos(self.pfs[pf.id], strict=True)   # refuses here if the backend cannot

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

    # ---- the transaction shared by add, update, delete and mirror ------------------------------
    def _commit(self, what: str, old: LiveVF | None, new: LiveVF | None, live_file: bool = True) -> None:
        """Replace `old` by `new` (either may be None) on the NIC, in the live directory and in
        memory, all or nothing. `live_file` False: delete of a VF whose live file is already gone."""
        undo = _Undo(what)
        try:
            self._commit_steps(undo, old, new, live_file)
        except BaseException as exc:
            failed = undo.rollback()
            log.error("%s failed and was rolled back%s: %s", what,
                      f" (incompletely: {'; '.join(failed)})" if failed else "", escape(_describe(exc)))
            raise

    def _commit_steps(self, undo: _Undo, old: LiveVF | None, new: LiveVF | None, live_file: bool) -> None:
        old_pf = self.pfs[old.pf_id] if old else None
        new_pf = self.pfs[new.pf_id] if new else None
        same_vf = old is not None and new is not None and old_pf is new_pf and old.vfid == new.vfid
        # 1. the NIC: the new program first (in place when the VF stays), then the old VF cleared
        if new is not None:
            self._nic_step(undo, new_pf, new.vfid, new.program, old.program if same_vf else None)
        if old is not None and not same_vf:
            self._nic_step(undo, old_pf, old.vfid, None, old.program)
        # 2. the live file
        port_id = (new or old).port_id
        if new is not None or live_file:
            undo.push("live file", lambda: self._restore_live(port_id, old))
            if new is not None:
                self.store.write_live(port_id, new.raw, new.owner_uid)
            else:
                self.store.remove_live(port_id)
        # 3. memory, then 4. the QoS shares of the PFs involved. Their inverse is recorded before
        # the memory step so that it runs after memory is restored and recomputes the old shares.
        pfs = list({id(p): p for p in (old_pf, new_pf) if p is not None}.values())
        for pf in pfs:
            undo.push(f"QoS of PF {pf.id}", lambda pf=pf: self._apply_qos(pf))
        undo.push("memory", lambda: self._swap_memory(new, old))
        self._swap_memory(old, new)
        for pf in pfs:
            self._apply_qos(pf)

    def _restore_live(self, port_id: str, old: LiveVF | None) -> None:
        """The live file as it was before the request (a failed atomic write left it so already)."""
        if old is None:
            self.store.discard_live(port_id)
        elif self.store.read_live(port_id) != old.raw:
            self.store.write_live(port_id, old.raw, old.owner_uid)

    def _nic_step(self, undo: _Undo, pf: PFState, vfid: int, program, previous) -> None:
        """Program (or, with program None, clear) one VF and save the backend's state. The inverse
        is recorded first: a step that fails half-way is undone too."""
        backend = self.backends[pf.backend]
        if previous is not None:
            undo.push(f"PF {pf.id} VF {vfid}", lambda: self._nic_restore(pf, vfid, previous))
        else:
            undo.push(f"PF {pf.id} VF {vfid}", lambda: self._nic_restore(pf, vfid, None, program))
        try:
            if program is None:
                backend.clear_vf(pf.id, vfid, previous)
            else:
                backend.apply_vf(pf.id, vfid, program, previous)
        finally:
            backend.flush()

    def _nic_restore(self, pf: PFState, vfid: int, program, cleared_from=None) -> None:
        backend = self.backends[pf.backend]
        try:
            if program is not None:
                backend.apply_vf(pf.id, vfid, program, None)
            else:
                backend.clear_vf(pf.id, vfid, cleared_from)
        except VfdError as exc:
            self.apply_errors[(pf.id, vfid)] = f"rollback failed: {exc}"
            raise
        finally:
            try:
                backend.flush()
            except OSError as exc:
                # the NIC is restored; only the backend's saved copy of it lags (the sim's state file,
                # still holding the state from before the request) until the next successful flush
                log.warning("PF %s: backend state not saved while rolling back: %s", pf.id, escape(_describe(exc)))

    def _swap_memory(self, out: LiveVF | None, into: LiveVF | None) -> None:
        if out is not None:
            self.pfs[out.pf_id].remove(out)
            if self.live.get(out.port_id) is out:
                del self.live[out.port_id]
            self.apply_errors.pop((out.pf_id, out.vfid), None)
        if into is not None:
            self.pfs[into.pf_id].add(into)
            self.live[into.port_id] = into

    def _refused(self, action: str, name: str, exc: VfdError, drop_file=None) -> Reply:
        """A request refused before anything changed. Only a config that is itself wrong (schema,
        admission) marks its drop file .error; a permission refusal or a transient failure leaves it."""
        if isinstance(exc, authz.PermissionRefused):
            log.warning("%s %s refused: %s", action, escape(name), escape(str(exc)))
        else:
            log.info("%s %s refused: %s", action, escape(name), escape(str(exc)))
        if drop_file is not None and isinstance(exc, (ConfigError, AdmissionError)):
            try:
                self.store.mark_error(drop_file)
            except StoreError as err:
                log.warning("could not mark the refused config: %s", escape(str(err)))
        return _err(f"unable to {action} vf: {name}: {exc}", data=_refusal_data(exc))

    def _failed(self, action: str, name: str, exc: BaseException) -> Reply:
        """A transaction that failed and was rolled back: the request's own error, never internal."""
        if not isinstance(exc, (VfdError, OSError)):
            raise exc
        return _err(f"unable to {action} vf: {name}: {_describe(exc)}; nothing was changed")

    def _consume(self, path) -> None:
        """The drop file of an admitted config goes away; failing that is only a warning."""
        try:
            self.store.consume(path)
        except StoreError as exc:
            log.warning("%s (the config is live; remove the file by hand)", escape(str(exc)))

    def _vf_data(self, vf: LiveVF) -> dict:
        pf = self.pfs[vf.pf_id]
        return {"port": vf.port_id, "pf": pf.id, "vf": vf.vfid,
                "pci": self.backends[pf.backend].vf_pci_address(pf.id, vf.vfid)}

    # ---- add / update / delete ----------------------------------------------------------------
    def add(self, filename: object, requester_uid: int | None = None) -> Reply:
        name, path = _name(filename), None
        try:
            path, port_id = self.store.resolve(filename, "config")
            name = port_id
            if port_id in self.live:
                raise RequestError(f"'{port_id}' is already live (on PF {self.live[port_id].pf_id} VF "
                                   f"{self.live[port_id].vfid}); use update to change it")
            rf = self.store.read(path, port_id)
            authz.require_owner("add", f"port {port_id}", rf.owner_uid, requester_uid)
            cfg = parse_vf_config(rf.data, path.name)
            pf = self.pfs.get(cfg.pciid)
            program = admit(cfg, pf, guest_macs=self._guest_macs(pf))
        except VfdError as exc:
            return self._refused("add", name, exc, path)
        vf = LiveVF(port_id=port_id, config=cfg, program=program, owner_uid=rf.owner_uid, raw=rf.data)
        try:
            self._commit(f"add {port_id}", None, vf)
        except Exception as exc:  # noqa: BLE001 - rolled back; the reply says why
            return self._failed("add", port_id, exc)
        self._consume(path)
        log.info("vf added: %s on PF %s VF %d", port_id, pf.id, cfg.vfid)
        return _ok(f"vf added successfully: {port_id}", data=self._vf_data(vf))

    def update(self, filename: object, requester_uid: int | None = None) -> Reply:
        name = _name(filename)
        try:
            path, port_id = self.store.resolve(filename, "config")
            old = self.live.get(port_id)
            if old is None:
                raise NotLive(port_id, "; use add")
            authz.require_owner("update", f"port {port_id}", old.owner_uid, requester_uid)
            rf = self.store.read(path, port_id)
            authz.require_file_owner("update", f"port {port_id}", rf.owner_uid, old.owner_uid, requester_uid)
            cfg = parse_vf_config(rf.data, path.name)
            new = self._admit_replacement(old, cfg, rf.data, rf.owner_uid)
        except VfdError as exc:
            return self._refused("update", name, exc)
        try:
            self._commit(f"update {port_id}", old, new)
        except Exception as exc:  # noqa: BLE001 - rolled back; the reply says why
            return self._failed("update", name, exc)
        self._consume(path)
        self._log_updated(old, new)
        return _ok(f"vf updated successfully: {port_id}", data=self._vf_data(new))

    def _admit_replacement(self, old: LiveVF, cfg, raw: bytes, owner_uid: int) -> LiveVF:
        """Admit `cfg` in place of `old` (checked against the others, not against itself)."""
        if cfg.name != old.config.name:
            raise RequestError(f"name in config did not match name given when VF was added: expected "
                               f"{old.config.name!r}, found {cfg.name!r}")
        pf = self.pfs.get(cfg.pciid)
        program = admit(cfg, pf, replacing=old, guest_macs=self._guest_macs(pf))
        return LiveVF(port_id=old.port_id, config=cfg, program=program, owner_uid=owner_uid, raw=raw)

    @staticmethod
    def _log_updated(old: LiveVF, new: LiveVF) -> None:
        same_vf = new.pf_id == old.pf_id and new.vfid == old.vfid
        log.info("vf updated: %s on PF %s VF %d (%s)", new.port_id, new.pf_id, new.vfid,
                 ", ".join(new.program.changed_fields(old.program if same_vf else None)) or "no change")

    def delete(self, filename: object, requester_uid: int | None = None) -> Reply:
        name = _name(filename)
        try:
            path, port_id = self.store.resolve(filename, "live")
            vf = self.live.get(port_id)
            if vf is None:
                raise NotLive(port_id)
            authz.require_owner("delete", f"port {port_id}", vf.owner_uid, requester_uid)
            live_file = path.exists()
            if live_file:
                rf = self.store.read(path, port_id)
                try:
                    cfg_name = json.loads(rf.data).get("name", "unnamed")
                except (ValueError, AttributeError):
                    cfg_name = None
                if cfg_name != vf.config.name:
                    raise RequestError(f"name in config did not match name given when VF was added: expected "
                                       f"{vf.config.name!r}, found {cfg_name!r}")
            else:
                log.warning("delete %s: live file already gone; clearing the VF anyway", port_id)
        except VfdError as exc:
            return self._refused("delete", name, exc)
        data = self._vf_data(vf)
        try:
            self._commit(f"delete {port_id}", vf, None, live_file=live_file)
        except Exception as exc:  # noqa: BLE001 - rolled back; the reply says why
            return self._failed("delete", name, exc)
        log.info("vf deleted: %s from PF %s VF %d", port_id, vf.pf_id, vf.vfid)
        return _ok(f"vf deleted successfully: {port_id}", data=data)

    def _guest_macs(self, pf: PFState | None) -> dict[str, int]:
        return self.backends[pf.backend].guest_macs(pf.id) if pf is not None else {}

    # ---- reads --------------------------------------------------------------------------------
    def status(self, filename: object) -> Reply:
        """Desired next to programmed, field by field. `ok` stays True when fields differ: the
        request worked; `data.in_sync` says whether the NIC matches (iplex exits 1 when not)."""
        try:
            _, port_id = self.store.resolve(filename, "live")
        except RequestError as exc:
            return _err(f"unable to show status: {exc}")
        vf = self.live.get(port_id)
        if vf is None:
            return _err(f"unable to show status: {NotLive(port_id)}", data=_refusal_data(NotLive(port_id)))
        pf = self.pfs[vf.pf_id]
        backend = self.backends[pf.backend]
        try:
            actual = backend.read_vf(pf.id, vf.vfid)
        except VfdError as exc:
            return _err(f"unable to read VF state: {exc}")
        checks = compare(vf.program, actual, backend.unverifiable_fields(pf.id))
        pci = backend.vf_pci_address(pf.id, vf.vfid)
        mark = {"ok": "", "differs": "  MISMATCH", "unverifiable": "  (cannot be read back)"}
        rows = [(c.field, canonical(c.desired), "-" if c.state != "ok" and c.programmed is None else
                 canonical(c.programmed), mark[c.state]) for c in checks]
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(("field", "desired", "programmed"))]
        lines = [f"port {port_id}: name {vf.config.name!r}, PF {pf.id} ({pf.backend}, driver {pf.profile.driver}), "
                 f"VF {vf.vfid}, PCI {pci or '-'}",
                 f"{'field':<{widths[0]}}  {'desired':<{widths[1]}}  {'programmed':<{widths[2]}}".rstrip()]
        for key, want, have, flag in rows:
            lines.append(f"{key:<{widths[0]}}  {want:<{widths[1]}}  {have:<{widths[2]}}{flag}".rstrip())
        mismatches = sum(c.differs for c in checks)
        unverifiable = [c.field for c in checks if c.state == "unverifiable"]
        err = self.apply_errors.get((pf.id, vf.vfid))
        if err:
            lines.append(f"last apply error: {err}")
        if mismatches:
            lines.append(f"{mismatches} field(s) differ from the config")
        elif unverifiable:
            lines.append(f"in sync where readable; {len(unverifiable)} field(s) cannot be read back from driver "
                         f"{pf.profile.driver}: {', '.join(unverifiable)}")
        else:
            lines.append("in sync")
        fields = [{"field": c.field, "desired": c.desired, "programmed": c.programmed, "differs": c.differs,
                   "state": c.state} for c in checks]
        return _ok(*lines, data={"port": port_id, "pf": pf.id, "vf": vf.vfid, "pci": pci, "in_sync": not mismatches,
                                 "unverifiable": unverifiable, "fields": fields, "apply_error": err})

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
        else:
            pf = self._pf_arg(what.strip())
            if pf is None:
                return _err(f"unknown target {shown(what.strip())}: {self._no_pf(what.strip())} (targets: all, pfs, "
                            f"extended, mirror, pci, a PF number or a PF id)")
            pfs = [pf]
        lines, rows = [showfmt.HEADER], []
        for pf in pfs:
            backend = self.backends[pf.backend]
            stats = self._stats(pf, None)
            lines.append(showfmt.pf_row(pf.index, pf.id, stats))
            row = {"index": pf.index, "pf": pf.id, "stats": asdict(stats), "vfs": []}
            if w != "pfs":
                for vfid in sorted(pf.vfs):
                    pci, vstats = backend.vf_pci_address(pf.id, vfid), self._stats(pf, vfid)
                    lines.append(showfmt.vf_row(vfid, pci, vstats))
                    row["vfs"].append({"vf": vfid, "port": pf.vfs[vfid].port_id, "pci": pci, "stats": asdict(vstats)})
                lines.append("")
            rows.append(row)
        return Reply(True, lines, {"pfs": rows})

    def _no_pf(self, arg: str) -> str:
        """"no PF 5" and the PFs there are: the one message for an unknown PF in any request."""
        listed = ", ".join(f"{pf.index} ({pf.id})" for pf in self.pfs.values())
        return f"no PF {shown(arg, 40)[1:-1]}; the PFs are {listed}"

    def _raw_stats(self, pf: PFState, vfid: int | None) -> PortStats:
        backend = self.backends[pf.backend]
        return backend.pf_stats(pf.id) if vfid is None else backend.vf_stats(pf.id, vfid)

    def _stats(self, pf: PFState, vfid: int | None) -> PortStats:
        """Counters since the last clear_stats (NICs rarely can zero VF counters; vfd keeps baselines)."""
        raw = self._raw_stats(pf, vfid)
        base = self.stats_base.get((pf.id, vfid))
        if base is None:
            return raw
        if any(getattr(raw, c) < base.get(c, 0) for c in COUNTERS):   # the NIC reset them itself
            del self.stats_base[(pf.id, vfid)]
            self._save_baselines(self.stats_base, quiet=True)
            return raw
        return replace(raw, **{c: getattr(raw, c) - base.get(c, 0) for c in COUNTERS})

    def clear_stats(self, resource: object, requester_uid: int | None = None) -> Reply:
        """`all`, `<pf>` (number or id: the PF and its VFs) or `<pf> <vf>`: counters start again at 0.
        One configured VF: root or its owner; a PF or all of them: root."""
        parts = resource.split() if isinstance(resource, str) else []
        try:
            if not parts or parts == ["all"]:
                authz.require_root("clear_stats", "of all PFs", requester_uid)
                targets = [(pf, v) for pf in self.pfs.values() for v in [None, *range(pf.vfs_count)]]
            else:
                if len(parts) > 2:
                    raise RequestError(f"expected 'all', '<pf>' or '<pf> <vf>', got {shown(resource)}")
                pf = self._pf_arg(parts[0])
                if pf is None:
                    raise RequestError(self._no_pf(parts[0]))
                if len(parts) == 1:
                    authz.require_root("clear_stats", f"of PF {pf.id}", requester_uid)
                    targets = [(pf, v) for v in [None, *range(pf.vfs_count)]]
                else:
                    vfid = _small_int(parts[1], pf.vfs_count)
                    if vfid is None:
                        raise RequestError(f"no VF {shown(parts[1], 40)[1:-1]} on PF {pf.id} (its VFs are 0.."
                                           f"{pf.vfs_count - 1})")
                    vf = pf.vfs.get(vfid)
                    if vf is None:
                        raise RequestError(f"VF {vfid} of PF {pf.id} is not configured (counters are cleared for "
                                           f"configured VFs, a PF or all)")
                    authz.require_owner("clear_stats", f"of PF {pf.id} VF {vfid} (port {vf.port_id})", vf.owner_uid,
                                        requester_uid)
                    targets = [(pf, vfid)]
            base = dict(self.stats_base)
            for pf, vfid in targets:
                raw = self._raw_stats(pf, vfid)
                base[(pf.id, vfid)] = {c: getattr(raw, c) for c in COUNTERS}
            self._save_baselines(base)
        except VfdError as exc:
            if isinstance(exc, authz.PermissionRefused):
                log.warning("clear_stats refused: %s", escape(str(exc)))
            return _err(f"unable to clear counters: {exc}", data=_refusal_data(exc))
        self.stats_base = base
        what = "all PFs" if not parts or parts == ["all"] else " ".join(parts)
        return _ok(f"counters cleared: {what}")

    def _load_baselines(self) -> None:
        """clear_stats baselines saved by an earlier run (docs/operations.md)."""
        for pf_id, entry in self.store.load_baselines().items():
            pf = self.pfs.get(pf_id)
            if pf is None or not isinstance(entry, dict):
                continue
            vfs = entry.get("vfs") if isinstance(entry.get("vfs"), dict) else {}
            for vfid, counters in [(None, entry.get("pf")), *((_small_int(k, pf.vfs_count), v) for k, v in vfs.items())]:
                if isinstance(counters, dict) and (vfid is not None or counters is entry.get("pf")):
                    self.stats_base[(pf_id, vfid)] = {c: n for c, n in counters.items()
                                                      if c in COUNTERS and isinstance(n, int)}

    def _save_baselines(self, base: dict, quiet: bool = False) -> None:
        out: dict[str, dict] = {}
        for (pf_id, vfid), counters in sorted(base.items(), key=lambda kv: (kv[0][0], -1 if kv[0][1] is None
                                                                            else kv[0][1])):
            entry = out.setdefault(pf_id, {"pf": None, "vfs": {}})
            if vfid is None:
                entry["pf"] = counters
            else:
                entry["vfs"][str(vfid)] = counters
        try:
            self.store.save_baselines(out)
        except StoreError as exc:
            if not quiet:
                raise
            log.warning("%s", exc)

    def _pf_arg(self, arg: str) -> PFState | None:
        """A PF named by its position in the main config (as `show N`) or by its id."""
        pf = self.pfs.get(arg)
        if pf is None:
            n = _small_int(arg, len(self.pfs))
            if n is not None:
                pf = list(self.pfs.values())[n]
        return pf

    def _show_extended(self) -> Reply:
        lines, rows = [], []
        for pf in self.pfs.values():
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
                             + (f"; last QoS error: {self.apply_errors[(pf.id, -1)]}" if (pf.id, -1) in self.apply_errors
                                else ""))
            for vfid in sorted(pf.vfs):
                vf = pf.vfs[vfid]
                rate = f"{vf.program.max_rate} Mb/s" if vf.program.max_rate else "unlimited"
                lines.append(f"  vf {vfid}: {vf.port_id} vlans {list(vf.program.vlans)} mac {vf.program.mac} "
                             f"strip {vf.program.strip} insert {vf.program.insert} rate {rate}")
        return Reply(True, lines, {"pfs": rows})

    def _show_pci(self) -> Reply:
        """Every VF's PCI address: `pf <index> <pf id> vf <n> <pci> live <port>|free`, for agents that
        map a VF's PCI address (what nova and the CNI know) to (PF, vfid); `data.vfs` the same as JSON."""
        lines, rows = [], []
        for pf in self.pfs.values():
            backend = self.backends[pf.backend]
            for vfid in range(pf.vfs_count):
                port = pf.vfs[vfid].port_id if vfid in pf.vfs else None
                pci = backend.vf_pci_address(pf.id, vfid)
                lines.append(f"pf {pf.index} {pf.id} vf {vfid} {pci or '-'} " + (f"live {port}" if port else "free"))
                rows.append({"pf_index": pf.index, "pf": pf.id, "vf": vfid, "pci": pci, "port": port})
        return Reply(True, lines, {"vfs": rows})

    def _show_mirrors(self) -> Reply:
        lines, rows = [], []
        for pf in self.pfs.values():
            mirrors = [(vfid, vf.program.mirror) for vfid, vf in sorted(pf.vfs.items()) if vf.program.mirror]
            lines.append(f"port {pf.index} has {len(mirrors)} mirrors:")
            lines += [f"  vf {vfid} ({m[1]}) ==> vf {m[0]}" for vfid, m in mirrors]
            rows += [{"pf_index": pf.index, "pf": pf.id, "vf": vfid, "direction": m[1], "target": m[0]}
                     for vfid, m in mirrors]
        return Reply(True, lines, {"mirrors": rows})

    # ---- other actions ------------------------------------------------------------------------
    def mirror(self, resource: object, requester_uid: int | None = None) -> Reply:
        """`pf vf dir [target]`: change a live VF's mirror; persisted in its live config."""
        parts = resource.split() if isinstance(resource, str) else []
        if len(parts) not in (3, 4):
            return _err("mirror update failed: expected '<pf> <vf> <in|out|all|off> [<target>]'")
        pf_arg, vf_arg, direction = parts[:3]
        pf = self._pf_arg(pf_arg)
        if pf is None:
            return _err(f"mirror update failed: {self._no_pf(pf_arg)}")
        vfid = _small_int(vf_arg, pf.vfs_count)
        if vfid is None or vfid not in pf.vfs:
            return _err(f"mirror update failed: VF {shown(vf_arg, 40)} is not configured on PF {pf.id}")
        vf = pf.vfs[vfid]
        direction = {"on": "all", "both": "all"}.get(direction.lower(), direction.lower())
        if direction not in ("in", "out", "all", "off"):
            return _err(f"mirror update failed: direction {shown(direction, 40)} is not one of in, out, all, off")
        data = json.loads(vf.raw)
        if direction == "off":
            data.pop("mirror", None)
        else:
            target = _small_int(parts[3]) if len(parts) == 4 else None
            if target is None:
                return _err("mirror update failed: a target VF number is required unless the direction is off")
            data["mirror"] = {"target": target, "direction": direction}
        raw = (json.dumps(data, indent=2) + "\n").encode()
        try:
            authz.require_owner("mirror", f"of PF {pf.id} VF {vfid} (port {vf.port_id})", vf.owner_uid, requester_uid)
            cfg = parse_vf_config(raw, f"{vf.port_id}.json")
            new = self._admit_replacement(vf, cfg, raw, vf.owner_uid)
        except VfdError as exc:
            if isinstance(exc, authz.PermissionRefused):
                log.warning("mirror refused: %s", escape(str(exc)))
            return _err(f"mirror update failed: {exc}", data=_refusal_data(exc))
        try:
            self._commit(f"mirror {vf.port_id}", vf, new)
        except Exception as exc:  # noqa: BLE001 - rolled back; the reply says why
            if not isinstance(exc, (VfdError, OSError)):
                raise
            return _err(f"mirror update failed: {_describe(exc)}; nothing was changed")
        self._log_updated(vf, new)
        return _ok(f"mirror update successful: pf {pf.id} vf {vfid} {direction}"
                   + (f" -> vf {parts[3]}" if direction != "off" else ""), data=self._vf_data(new))

    def export(self, filename: object, output: object = None, requester_uid: int | None = None) -> Reply:
        """The live config's text, in the reply (`data.config`): the daemon never writes a file where a
        request says (`output` is ignored; the original wrote it, as root, anywhere)."""
        try:
            _, port_id = self.store.resolve(filename, "live")
            vf = self.live.get(port_id)
            if vf is None:
                raise NotLive(port_id)
            authz.require_owner("export", f"port {port_id}", vf.owner_uid, requester_uid)
        except VfdError as exc:
            if isinstance(exc, authz.PermissionRefused):
                log.warning("export refused: %s", escape(str(exc)))
            return _err(f"unable to export config {shown(filename)}: {exc}", data=_refusal_data(exc))
        text = vf.raw.decode(errors="replace")
        return _ok(f"config {port_id} exported ({len(vf.raw)} bytes)",
                   data={"config": text, **self._vf_data(vf)})

    def dump(self) -> Reply:
        for pf in self.pfs.values():
            log.warning("dump: PF %s backend %s driver %s vfs %d live %d", pf.id, pf.backend, pf.profile.driver,
                        pf.vfs_count, len(pf.vfs))
            for vfid, vf in sorted(pf.vfs.items()):
                log.warning("dump: PF %s VF %d %s: %s", pf.id, vfid, vf.port_id, json.dumps(vf.program.to_state()))
        return _ok("dump captured in the log")

    @staticmethod
    def ping() -> Reply:
        return _ok(f"pong: {PROTOCOL_VERSION}", data={"protocol": PROTOCOL_VERSION})

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
