"""Transactions: add, update, delete and mirror change the NIC, the live directory and memory together,
all or nothing, through one rollback path (`Undo`).

Every change follows the same order: check who asks, parse and admit (pure; refusals change
nothing), then one transaction: program the NIC, make the live file durable, update memory and
the PF's QoS shares. Each step records how to undo itself before it runs; any exception in any
step (a NIC refusal, a full disk under the backend's state or the live directory, a bug) undoes
every recorded step in reverse, so the NIC, the live directory and memory never disagree for
longer than one request. `Transactions` is a part of `VFManager` (manager.py), which holds the state.
"""

from __future__ import annotations

import json
import logging
from typing import Callable

from vfd.daemon.reply import Reply, describe, error_reply, ok_reply, refusal_data, request_name, small_int
from vfd.errors import AdmissionError, ConfigError, NotLive, RequestError, VfdError
from vfd.model.vfconfig import parse_vf_config
from vfd.policy import authz
from vfd.policy.admission import admit
from vfd.state import LiveVF, PFState
from vfd.store import StoreError
from vfd.text import escape, shown

log = logging.getLogger("vfd.manager")


class Undo:
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
                failed.append(f"{step}: {describe(exc)}")
                log.error("%s: undoing %s failed: %s", self.what, step, escape(describe(exc)))
        self.steps.clear()
        return failed


class Transactions:
    """add / update / delete / mirror and the one commit they share."""

    def _commit(self, what: str, old: LiveVF | None, new: LiveVF | None, live_file: bool = True) -> None:
        """Replace `old` by `new` (either may be None) on the NIC, in the live directory and in
        memory, all or nothing. `live_file` False: delete of a VF whose live file is already gone."""
        undo = Undo(what)
        try:
            self._commit_steps(undo, old, new, live_file)
        except BaseException as exc:
            failed = undo.rollback()
            log.error("%s failed and was rolled back%s: %s", what,
                      f" (incompletely: {'; '.join(failed)})" if failed else "", escape(describe(exc)))
            raise

    def _commit_steps(self, undo: Undo, old: LiveVF | None, new: LiveVF | None, live_file: bool) -> None:
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

    def _nic_step(self, undo: Undo, pf: PFState, vfid: int, program, previous) -> None:
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
                log.warning("PF %s: backend state not saved while rolling back: %s", pf.id, escape(describe(exc)))

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
        return error_reply(f"unable to {action} vf: {name}: {exc}", data=refusal_data(exc))

    def _failed(self, action: str, name: str, exc: BaseException) -> Reply:
        """A transaction that failed and was rolled back: the request's own error, never internal."""
        if not isinstance(exc, (VfdError, OSError)):
            raise exc
        return error_reply(f"unable to {action} vf: {name}: {describe(exc)}; nothing was changed")

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

    def add(self, filename: object, requester_uid: int | None = None) -> Reply:
        name, path = request_name(filename), None
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
        return ok_reply(f"vf added successfully: {port_id}", data=self._vf_data(vf))

    def update(self, filename: object, requester_uid: int | None = None) -> Reply:
        name = request_name(filename)
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
        return ok_reply(f"vf updated successfully: {port_id}", data=self._vf_data(new))

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
        name = request_name(filename)
        try:
            path, port_id, vf = self._owned_live(filename, "delete", requester_uid)
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
        return ok_reply(f"vf deleted successfully: {port_id}", data=data)

    def _guest_macs(self, pf: PFState | None) -> dict[str, int]:
        return self.backends[pf.backend].guest_macs(pf.id) if pf is not None else {}

    def mirror(self, resource: object, requester_uid: int | None = None) -> Reply:
        """`pf vf dir [target]`: change a live VF's mirror; persisted in its live config."""
        parts = resource.split() if isinstance(resource, str) else []
        if len(parts) not in (3, 4):
            return error_reply("mirror update failed: expected '<pf> <vf> <in|out|all|off> [<target>]'")
        pf_arg, vf_arg, direction = parts[:3]
        pf = self._pf_arg(pf_arg)
        if pf is None:
            return error_reply(f"mirror update failed: {self._no_pf(pf_arg)}")
        vfid = small_int(vf_arg, pf.vfs_count)
        if vfid is None or vfid not in pf.vfs:
            return error_reply(f"mirror update failed: VF {shown(vf_arg, 40)} is not configured on PF {pf.id}")
        vf = pf.vfs[vfid]
        direction = {"on": "all", "both": "all"}.get(direction.lower(), direction.lower())
        if direction not in ("in", "out", "all", "off"):
            return error_reply(f"mirror update failed: direction {shown(direction, 40)} is not one of in, out, all, off")
        data = json.loads(vf.raw)
        if direction == "off":
            data.pop("mirror", None)
        else:
            target = small_int(parts[3]) if len(parts) == 4 else None
            if target is None:
                return error_reply("mirror update failed: a target VF number is required unless the direction is off")
            data["mirror"] = {"target": target, "direction": direction}
        raw = (json.dumps(data, indent=2) + "\n").encode()
        try:
            authz.require_owner("mirror", f"of PF {pf.id} VF {vfid} (port {vf.port_id})", vf.owner_uid, requester_uid)
            cfg = parse_vf_config(raw, f"{vf.port_id}.json")
            new = self._admit_replacement(vf, cfg, raw, vf.owner_uid)
        except VfdError as exc:
            if isinstance(exc, authz.PermissionRefused):
                log.warning("mirror refused: %s", escape(str(exc)))
            return error_reply(f"mirror update failed: {exc}", data=refusal_data(exc))
        try:
            self._commit(f"mirror {vf.port_id}", vf, new)
        except Exception as exc:  # noqa: BLE001 - rolled back; the reply says why
            if not isinstance(exc, (VfdError, OSError)):
                raise
            return error_reply(f"mirror update failed: {describe(exc)}; nothing was changed")
        self._log_updated(vf, new)
        return ok_reply(f"mirror update successful: pf {pf.id} vf {vfid} {direction}"
                   + (f" -> vf {parts[3]}" if direction != "off" else ""), data=self._vf_data(new))
