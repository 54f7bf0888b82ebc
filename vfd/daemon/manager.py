"""The VF manager: the one place where requests change desired state, the store and the NIC together.

It holds the state (PFs, live VFs, apply errors, counter baselines) and is a thin facade over its
parts: `Transactions` (add / update / delete / mirror, one rollback path), `Reconciler` (restore,
events, drift checks, re-apply) and the pure views (`views.py`: show and status tables and data).
Requests are served one at a time by the daemon's event loop.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace

from vfd import PROTOCOL_VERSION
from vfd.backends.base import COUNTERS, NicBackend, PortStats
from vfd.capabilities import check_pf_settings
from vfd.daemon import views
from vfd.daemon.reconciler import Reconciler
from vfd.daemon.reply import Reply, error_reply, ok_reply, refusal_data, small_int
from vfd.daemon.transactions import Transactions
from vfd.errors import NotLive, RequestError, VfdError
from vfd.model.mainconfig import MainConfig
from vfd.policy import authz
from vfd.program import compare
from vfd.state import LiveVF, PFState
from vfd.store import Store, StoreError
from vfd.text import escape, shown

log = logging.getLogger("vfd.manager")


class VFManager(Transactions, Reconciler):
    """The state and the reads (status, show, counters, export); changes are Transactions', repairs
    the Reconciler's. The daemon's command table (main.py) calls these methods."""

    def __init__(self, main: MainConfig, backends: dict[str, NicBackend], store: Store):
        self.main = main
        self.backends = backends
        self.store = store
        self.pfs: dict[str, PFState] = {}
        self.live: dict[str, LiveVF] = {}
        self.apply_errors: dict[tuple[str, int], str] = {}
        # clear_stats baselines, (pf id, vfid or None for the PF) -> counter values; kept in the live dir
        self.stats_base: dict[tuple[str, int | None], dict[str, int]] = {}
        for backend in backends.values():
            backend.desired = self.programs_of

    def programs_of(self, pf_id: str) -> dict:
        """The programs of a PF's live VFs, vfid -> VFProgram: the one copy, backends ask for it. The
        DPDK mailbox thread asks too: the items are taken in one step (list), never iterated while the
        loop may change them."""
        pf = self.pfs.get(pf_id)
        return {vfid: vf.program for vfid, vf in list(pf.vfs.items())} if pf is not None else {}

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

    def status(self, filename: object) -> Reply:
        """Desired next to programmed, field by field. `ok` stays True when fields differ: the
        request worked; `data.in_sync` says whether the NIC matches (iplex exits 1 when not)."""
        try:
            _, port_id = self.store.resolve(filename, "live")
        except RequestError as exc:
            return error_reply(f"unable to show status: {exc}")
        vf = self.live.get(port_id)
        if vf is None:
            return error_reply(f"unable to show status: {NotLive(port_id)}", data=refusal_data(NotLive(port_id)))
        pf = self.pfs[vf.pf_id]
        backend = self.backends[pf.backend]
        try:
            actual = backend.read_vf(pf.id, vf.vfid)
        except VfdError as exc:
            return error_reply(f"unable to read VF state: {exc}")
        checks = compare(vf.program, actual, backend.unverifiable_fields(pf.id))
        lines, data = views.status(port_id, vf, pf, checks, backend.vf_pci_address(pf.id, vf.vfid),
                                   self.apply_errors.get((pf.id, vf.vfid)))
        return ok_reply(*lines, data=data)

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
                return error_reply(f"unknown target {shown(what.strip())}: {self._no_pf(what.strip())} (targets: all, pfs, "
                            f"extended, mirror, pci, a PF number or a PF id)")
            pfs = [pf]
        gathered = []
        for pf in pfs:
            backend = self.backends[pf.backend]
            stats = self._stats(pf, None)      # first: it refreshes what the VFs' counters are read from
            vfs = None if w == "pfs" else [(vfid, backend.vf_pci_address(pf.id, vfid), self._stats(pf, vfid))
                                           for vfid in sorted(pf.vfs)]
            gathered.append((pf, stats, vfs))
        return Reply(True, *views.show_stats(gathered))

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
                    vfid = small_int(parts[1], pf.vfs_count)
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
            return error_reply(f"unable to clear counters: {exc}", data=refusal_data(exc))
        self.stats_base = base
        what = "all PFs" if not parts or parts == ["all"] else " ".join(parts)
        return ok_reply(f"counters cleared: {what}")

    def _load_baselines(self) -> None:
        """clear_stats baselines saved by an earlier run (docs/operations.md)."""
        for pf_id, entry in self.store.load_baselines().items():
            pf = self.pfs.get(pf_id)
            if pf is None or not isinstance(entry, dict):
                continue
            vfs = entry.get("vfs") if isinstance(entry.get("vfs"), dict) else {}
            for vfid, counters in [(None, entry.get("pf")), *((small_int(k, pf.vfs_count), v) for k, v in vfs.items())]:
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

    def _owned_live(self, filename: object, action: str, requester_uid: int | None):
        """(path, port id, live VF) of a request naming a live port its requester may act on."""
        path, port_id = self.store.resolve(filename, "live")
        vf = self.live.get(port_id)
        if vf is None:
            raise NotLive(port_id)
        authz.require_owner(action, f"port {port_id}", vf.owner_uid, requester_uid)
        return path, port_id, vf

    def _pf_arg(self, arg: str) -> PFState | None:
        """A PF named by its position in the main config (as `show N`) or by its id."""
        pf = self.pfs.get(arg)
        if pf is None:
            n = small_int(arg, len(self.pfs))
            if n is not None:
                pf = list(self.pfs.values())[n]
        return pf

    def _show_extended(self) -> Reply:
        return Reply(True, *views.show_extended(list(self.pfs.values()), self.apply_errors))

    def _show_pci(self) -> Reply:
        return Reply(True, *views.show_pci([(pf, [self.backends[pf.backend].vf_pci_address(pf.id, vfid)
                                                  for vfid in range(pf.vfs_count)]) for pf in self.pfs.values()]))

    def _show_mirrors(self) -> Reply:
        return Reply(True, *views.show_mirrors(list(self.pfs.values())))

    def export(self, filename: object, output: object = None, requester_uid: int | None = None) -> Reply:
        """The live config's text, in the reply (`data.config`): the daemon never writes a file where a
        request says (`output` is ignored; the original wrote it, as root, anywhere)."""
        try:
            _, port_id, vf = self._owned_live(filename, "export", requester_uid)
        except VfdError as exc:
            if isinstance(exc, authz.PermissionRefused):
                log.warning("export refused: %s", escape(str(exc)))
            return error_reply(f"unable to export config {shown(filename)}: {exc}", data=refusal_data(exc))
        text = vf.raw.decode(errors="replace")
        return ok_reply(f"config {port_id} exported ({len(vf.raw)} bytes)",
                   data={"config": text, **self._vf_data(vf)})

    def dump(self) -> Reply:
        for pf in self.pfs.values():
            log.warning("dump: PF %s backend %s driver %s vfs %d live %d", pf.id, pf.backend, pf.profile.driver,
                        pf.vfs_count, len(pf.vfs))
            for vfid, vf in sorted(pf.vfs.items()):
                log.warning("dump: PF %s VF %d %s: %s", pf.id, vfid, vf.port_id, json.dumps(vf.program.to_state()))
        return ok_reply("dump captured in the log")

    @staticmethod
    def ping() -> Reply:
        return ok_reply(f"pong: {PROTOCOL_VERSION}", data={"protocol": PROTOCOL_VERSION})

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
