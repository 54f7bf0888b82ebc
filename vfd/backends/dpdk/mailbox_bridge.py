"""The mailbox bridge: guest VF requests from the PMD to `vfd.policy.mailbox` and back, and the refresh
queue those requests fill (reference sections 6 and 7.2).

DPDK runs the VF_MBOX callback on its interrupt thread and reads the verdict when the callback returns, so
the decision is taken there, under the backend's lock (the same lock every PMD call and every VF record
update holds).  What must happen later (re-apply, PF re-assert, the refresh timer) is handed to the
daemon's loop through `backend.to_loop`.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from vfd.backends.base import NicEvent
from vfd.errors import BackendError
from vfd.policy import mailbox as mbx
from vfd.program import VFProgram

from . import ffi as real_ffi
from .adapter import VFRecord

if TYPE_CHECKING:
    from .backend import DpdkBackend, PortState

log = logging.getLogger("vfd.dpdk")

REFRESH_INTERVAL = 0.2                      # reference 7.2: the vfd-rq thread woke every 200 ms
REFRESH_SETTLE = 0.5                        # no queue probe: ready once the mailbox was quiet this long
REFRESH_GIVE_UP = 300.0                     # a VF that never comes up leaves the queue (next reset re-queues)


class MailboxBridge:
    def __init__(self, backend: DpdkBackend):
        self.b = backend
        self.refresh: dict[tuple[str, int], float] = {}   # (pf, vf) -> when it was queued
        self._tick_handle = None

    # ---- the C callback (EAL interrupt thread) --------------------------------------------------------
    def callback(self, port: int, event: int, ret_param) -> int:
        """Decide now (the PMD reads the verdict when this returns).  A request vfd could not judge is
        refused (fail closed)."""
        st = self.b.port_state(port)
        if st is None or not ret_param or not st.adapter.has_mailbox:
            return 0
        try:
            self.handle(st, ret_param)
        except Exception:  # noqa: BLE001 - fail closed
            log.exception("PF %s: mailbox request could not be judged; refused", st.cfg.id)
            st.adapter._set_retval(ret_param, mbx.NOOP_NACK)
        return 0

    def handle(self, st: PortState, ret_param: int) -> mbx.Decision:
        adapter = st.adapter
        vfid, msg_type, payload, msg_addr, msg_len = adapter.decode_mbox(ret_param)
        with self.b.lock:
            programs = self.b.desired(st.cfg.id)
            view = self.vf_view(st, vfid, programs)
            decision = mbx.POLICIES[adapter.family](msg_type, payload, view)
            rec = st.rec(vfid)
            rec.last_mbox = time.monotonic()
            rec.mbox_count += 1
            if decision.verdict != mbx.NOOP_NACK:
                registry_effects(rec, decision, programs.get(vfid))
            if mbx.QUEUES_READY in decision.actions:
                rec.queues_ready = True
            if mbx.QUEUES_DOWN in decision.actions:
                rec.queues_ready = False
            if mbx.DROP_ENABLE in decision.actions and view.managed:
                adapter.drop_enable(vfid, True)
            queue = mbx.REFRESH in decision.actions and view.managed
            if queue:
                self.refresh.setdefault((st.cfg.id, vfid), time.monotonic())
        adapter.answer_mbox(ret_param, msg_addr, msg_len, decision)
        log.log(logging.INFO if decision.verdict == mbx.NOOP_NACK else logging.DEBUG,
                "PF %s VF %d mailbox %s -> %s", st.cfg.id, vfid, adapter.msg_name(msg_type), decision)
        if view.managed:
            if mbx.REAPPLY in decision.actions:
                self.b.to_loop(self.b.emit, NicEvent("drift", st.cfg.id, vfid,
                                                     detail=f"mailbox {adapter.msg_name(msg_type)}"))
            if mbx.REASSERT_PF in decision.actions:
                self.b.to_loop(self.b.reassert_pf, st.cfg.id)
            if queue:
                self.b.to_loop(self.ensure_tick)
        return decision

    @staticmethod
    def vf_view(st: PortState, vfid: int, programs: dict[int, VFProgram]) -> mbx.VFView:
        """What the policy may know: the VF's program (`programs`: the manager's, NicBackend.desired),
        every MAC in use on the PF, the PF's MTU. A VF without a program is not managed."""
        rec = st.vfs.get(vfid) or VFRecord()
        owners: dict[str, int] = {}
        for v in sorted(set(st.vfs) | set(programs)):
            for m in (st.vfs.get(v) or VFRecord()).all_macs(programs.get(v)):
                owners.setdefault(m, v)
        prog = programs.get(vfid)
        if prog is None:
            return mbx.VFView(vfid=vfid, managed=False, mac_owners=owners, pf_mtu=st.mtu)
        macs = ((prog.mac,) if prog.mac else ()) + tuple(prog.macs)
        return mbx.VFView(vfid=vfid, managed=True, vlans=frozenset(prog.vlans), macs=macs,
                          guest_mac=rec.guest_mac, guest_macs=tuple(rec.guest_macs), mac_owners=owners,
                          pf_mtu=st.mtu, bcast=prog.bcast, mcast=prog.mcast, uucast=prog.uucast)

    # ---- refresh queue (reference 7.2), on the daemon's loop ----------------------------------------
    def forget(self, pf_id: str, vfid: int) -> None:
        self.refresh.pop((pf_id, vfid), None)

    def ensure_tick(self) -> None:
        loop = self.b.loop
        if loop is None or self._tick_handle is not None or not self.refresh or self.b.closed:
            return
        self._tick_handle = loop.call_later(REFRESH_INTERVAL, self._tick)

    def cancel(self) -> None:
        if self._tick_handle is not None:
            self._tick_handle.cancel()
            self._tick_handle = None

    def _tick(self) -> None:
        self._tick_handle = None
        if self.b.closed:
            return
        now = time.monotonic()
        ready_vfs = []
        with self.b.lock:
            for key, since in list(self.refresh.items()):
                pf_id, vfid = key
                st = self.b.ports.get(pf_id)
                rec = st.vfs.get(vfid) if st else None
                if rec is None or vfid not in self.b.desired(pf_id):        # deleted meanwhile
                    del self.refresh[key]
                    continue
                try:
                    ready = st.adapter.queue_ready(vfid, rec)
                except (BackendError, real_ffi.DpdkError) as e:
                    log.debug("PF %s VF %d: queue probe failed: %s", pf_id, vfid, e)
                    ready = False
                if ready is None:
                    ready = now - rec.last_mbox >= REFRESH_SETTLE
                if ready:
                    del self.refresh[key]
                    st.adapter.drop_enable(vfid, False)
                    ready_vfs.append(key)
                elif now - since > REFRESH_GIVE_UP:
                    del self.refresh[key]
                    log.warning("PF %s VF %d: queues not up after %.0fs; refresh dropped", pf_id, vfid,
                                REFRESH_GIVE_UP)
        for pf_id, vfid in ready_vfs:
            self.b.emit(NicEvent("vf_reset", pf_id, vfid, detail="queues ready: refresh"))
        self.ensure_tick()


def registry_effects(rec: VFRecord, d: mbx.Decision, program: VFProgram | None) -> None:
    """What an approved request changes in the VF's guest registry (`program`: the VF's, the manager's)."""
    if mbx.CLEAR_MACVLAN in d.actions:
        rec.guest_macs = []
    if mbx.REGISTER_MAC in d.actions and d.macs:
        rec.guest_mac = d.macs[0]
    if mbx.REGISTER_MACVLAN in d.actions:
        own = rec.all_macs(program)
        rec.guest_macs += [m for m in d.macs if m not in own]
    if mbx.UNREGISTER_MACVLAN in d.actions:
        rec.guest_macs = [m for m in rec.guest_macs if m not in d.macs]
