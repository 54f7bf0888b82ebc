#!/usr/bin/env python3
"""Run in a subprocess by test_backend_real.py (EAL initialises once per process).

Real EAL with a net_null0 PF opened by the real DpdkBackend, whose C callbacks (LSC, VF_MBOX) are the ones
registered on the port.  For each PMD family the port's adapter is replaced by that family's adapter over a
recording ffi stand-in (so programming a VF records calls instead of hitting net_null, which refuses every
VF call); then mailbox events are fired through DPDK's own dispatch, rte_eth_dev_callback_process, with
constructed rte_pmd_{ixgbe,i40e,bnxt}_mb_event_param structures, exactly as the PMD would.  The verdict the
backend's callback wrote into retval, the rewritten message bytes and the backend's records are reported.

Prints `RESULT {json}` last; exit 0 when it got that far.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import sys
import time

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))

from tests.dpdk.recording_ffi import RecordingFfi  # noqa: E402
from tests.vfdlab import keep_programs  # noqa: E402
from vfd.backends.dpdk import backend as bk  # noqa: E402
from vfd.backends.dpdk import ffi, pmd_bnxt, pmd_i40e, pmd_ixgbe  # noqa: E402
from vfd.backends.dpdk.adapter import make_adapter  # noqa: E402
from vfd.backends.dpdk.eal import PREFIX_ENV, runtime_dir  # noqa: E402
from vfd.backends.dpdk.mailbox_bridge import REFRESH_INTERVAL, REFRESH_SETTLE  # noqa: E402
from vfd.policy import mailbox as mbx  # noqa: E402
from vfd.model.mainconfig import MainConfig  # noqa: E402
from vfd.model.vfconfig import VFConfig  # noqa: E402
from vfd.program import build_program  # noqa: E402

PF = "net_null0"
A, B, C, D = "02:00:00:00:00:0a", "02:00:00:00:00:0b", "02:00:00:00:00:0c", "02:00:00:00:00:0d"


def mac_bytes(mac: str) -> bytes:
    return bytes(int(x, 16) for x in mac.split(":"))


def main() -> int:
    prefix = sys.argv[1]
    os.environ[PREFIX_ENV] = prefix
    res: dict = {"families": {}}
    cfg = MainConfig.model_validate({"backend": "dpdk", "huge_pages": False, "cpu_mask": "0x01",
                                     "pciids": [{"id": PF, "vfs_count": 8, "mtu": 1500}]})
    b = bk.DpdkBackend(cfg)
    keep_programs(b)                       # the manager's part: the programs the mailbox policing asks for
    t0 = time.monotonic()
    info = b.open_pf(cfg.pciids[0])
    res["open_s"] = round(time.monotonic() - t0, 3)
    res["pf"] = {"driver": info.driver, "vfs_count": info.vfs_count, "features": sorted(info.profile.features),
                 "speed": info.link_speed}
    st = b.ports[PF]
    port = st.port
    res["registered"] = [(h.port, h.event) for h in ffi.registered_callbacks()]

    def fire(param) -> int:
        ffi.callback_process(port, ffi.RTE_ETH_EVENT_VF_MBOX, param)
        return int(param.retval)

    # net_null itself: no VF API, so its callback leaves the PMD's default verdict alone
    msg = (ctypes.c_uint32 * 16)(mbx.IXGBE_VF_SET_VLAN | (1 << 16), 99)
    p = ffi.RtePmdIxgbeMbEventParam(vfid=1, msg_type=mbx.IXGBE_VF_SET_VLAN, retval=mbx.PROCEED,
                                    msg=ctypes.addressof(msg))
    res["net_null_retval"] = fire(p)

    def setup(adapter_cls, macs):
        st.adapter = adapter_cls(RecordingFfi(), port, PF)
        st.vfs.clear()
        b.mailbox.refresh.clear()
        for vfid, mlist in ((1, macs), (2, [C])):
            prog = build_program(VFConfig.model_validate({"pciid": PF, "vfid": vfid, "vlans": [10, 20],
                                                          "macs": mlist, "allow_un_ucast": False}),
                                 st.adapter.profile, "dpdk", 10000)
            b.apply_vf(PF, vfid, prog, None)
        return st.adapter.ffi

    # ---- ixgbe -----------------------------------------------------------------------------------------
    setup(pmd_ixgbe.IxgbeAdapter, [A, B])
    out = {}

    def ixgbe(name, msg_type, vfid=1, info=0, word1=0, mac=None):
        words = (ctypes.c_uint32 * 16)()
        words[0] = msg_type | (info << 16)
        words[1] = word1
        if mac:
            raw = mac_bytes(mac) + b"\0\0"
            words[1] = int.from_bytes(raw[0:4], "little")
            words[2] = int.from_bytes(raw[4:8], "little")
        p = ffi.RtePmdIxgbeMbEventParam(vfid=vfid, msg_type=msg_type, retval=mbx.PROCEED,
                                        msg=ctypes.addressof(words))
        out[name] = {"retval": fire(p), "word1": int(words[1])}

    ixgbe("vlan_configured", mbx.IXGBE_VF_SET_VLAN, info=1, word1=10)
    ixgbe("vlan_not_configured", mbx.IXGBE_VF_SET_VLAN, info=1, word1=99)
    ixgbe("mac_admissible", mbx.IXGBE_VF_SET_MAC_ADDR, mac=D)
    ixgbe("mac_in_use", mbx.IXGBE_VF_SET_MAC_ADDR, mac=C)
    ixgbe("macvlan_in_use", mbx.IXGBE_VF_SET_MACVLAN, info=1, mac=C)
    ixgbe("lpe_fits", mbx.IXGBE_VF_SET_LPE, word1=1522)
    ixgbe("lpe_too_big", mbx.IXGBE_VF_SET_LPE, word1=9018)
    ixgbe("xcast_promisc", mbx.IXGBE_VF_UPDATE_XCAST_MODE, word1=mbx.IXGBEVF_XCAST_MODE_PROMISC)
    ixgbe("unknown", 0x2F)
    ixgbe("unmanaged_vlan", mbx.IXGBE_VF_SET_VLAN, vfid=5, info=1, word1=99)
    ixgbe("reset", mbx.IXGBE_VF_RESET)
    out["guest_mac"] = st.vfs[1].guest_mac
    out["refresh_queued"] = sorted(v for _, v in b.mailbox.refresh)
    out["pending"] = [(fn.__name__, [getattr(a, "kind", a) for a in args]) for fn, args in b.pending]
    # the loop: queued work runs, the refresh timer fires once the VF's mailbox is quiet (no queue probe on ixgbe)
    events = []

    async def run_loop(seconds):
        b.attach(asyncio.get_running_loop(), events.append)
        await asyncio.sleep(seconds)
    ffi.callback_process(port, ffi.RTE_ETH_EVENT_INTR_LSC, None)    # before attach: queued
    asyncio.run(run_loop(REFRESH_SETTLE + 4 * REFRESH_INTERVAL))
    out["events"] = [(e.kind, e.vfid) for e in events]
    out["pings"] = [a for n, a in st.adapter.ffi.calls if n == "rte_pmd_ixgbe_ping_vf"]
    b.loop = None                       # detach: the asyncio loop above is closed
    res["families"]["ixgbe"] = out

    # ---- i40e ------------------------------------------------------------------------------------------
    setup(pmd_i40e.I40eAdapter, [A, B])
    out = {}

    def i40e(name, opcode, payload: bytes, vfid=1):
        buf = (ctypes.c_uint8 * max(len(payload), 1)).from_buffer_copy(payload or b"\0")
        p = ffi.RtePmdI40eMbEventParam(vfid=vfid, msg_type=opcode, retval=mbx.PROCEED,
                                       msg=ctypes.addressof(buf), msglen=len(payload))
        out[name] = {"retval": fire(p), "payload": bytes(buf)[:len(payload)].hex()}

    def vlans(*v):
        return (0).to_bytes(2, "little") + len(v).to_bytes(2, "little") + b"".join(x.to_bytes(2, "little") for x in v)

    def addrs(*macs):
        return (0).to_bytes(2, "little") + len(macs).to_bytes(2, "little") + b"".join(
            mac_bytes(m) + b"\0\0" for m in macs)

    i40e("vlan_configured", mbx.VIRTCHNL_OP_ADD_VLAN, vlans(10, 20))
    i40e("vlan_not_configured", mbx.VIRTCHNL_OP_ADD_VLAN, vlans(10, 99))
    i40e("mac_admissible", mbx.VIRTCHNL_OP_ADD_ETH_ADDR, addrs(D))
    i40e("mac_in_use", mbx.VIRTCHNL_OP_ADD_ETH_ADDR, addrs(C))
    both = mbx.FLAG_VF_UNICAST_PROMISC | mbx.FLAG_VF_MULTICAST_PROMISC
    i40e("promisc_both", mbx.VIRTCHNL_OP_CONFIG_PROMISCUOUS_MODE, (0).to_bytes(2, "little") + both.to_bytes(2, "little"))
    i40e("unknown", 99, b"")
    i40e("enable_queues", mbx.VIRTCHNL_OP_ENABLE_QUEUES, b"\0" * 12)
    out["guest_macs"] = st.vfs[1].guest_macs
    out["queues_ready"] = st.vfs[1].queues_ready
    out["refresh_queued"] = sorted(v for _, v in b.mailbox.refresh)
    res["families"]["i40e"] = out

    # ---- bnxt ------------------------------------------------------------------------------------------
    setup(pmd_bnxt.BnxtAdapter, [A])
    out = {}

    def bnxt(name, req_type, fields: dict, vfid=1):
        buf = (ctypes.c_uint8 * 128)()
        buf[0], buf[1] = req_type & 0xFF, req_type >> 8
        for off, raw in fields.items():
            for i, x in enumerate(raw):
                buf[off + i] = x
        p = ffi.RtePmdBnxtMbEventParam(vf_id=vfid, retval=mbx.PROCEED, msg=ctypes.addressof(buf))
        out[name] = {"retval": fire(p), "mask": int.from_bytes(bytes(buf)[20:24], "little")}

    en_mac = (0x8).to_bytes(4, "little")
    bnxt("default_mac_configured", mbx.HWRM_FUNC_VF_CFG, {16: en_mac, 26: mac_bytes(A)})
    bnxt("default_mac_not_configured", mbx.HWRM_FUNC_VF_CFG, {16: en_mac, 26: mac_bytes(D)})
    bnxt("mtu_too_big", mbx.HWRM_FUNC_VF_CFG, {16: (0x1).to_bytes(4, "little"), 20: (9000).to_bytes(2, "little")})
    bnxt("mtu_fits", mbx.HWRM_FUNC_VF_CFG, {16: (0x1).to_bytes(4, "little"), 20: (1500).to_bytes(2, "little")})
    rx = (mbx.RX_MASK_PROMISCUOUS | mbx.RX_MASK_BCAST
          | mbx.RX_MASK_ALL_MCAST)
    bnxt("rx_mask", mbx.HWRM_CFA_L2_SET_RX_MASK, {20: rx.to_bytes(4, "little")})
    bnxt("nvm", 0xFFF3, {})
    bnxt("ring_alloc", mbx.HWRM_RING_ALLOC, {})
    res["families"]["bnxt"] = out

    st.adapter = make_adapter(ffi, port, PF, "net_null")
    b.close()
    b.close()
    res["runtime_dir_exists"] = os.path.exists(runtime_dir(prefix))
    res["callbacks_left"] = len(ffi.registered_callbacks())
    print("RESULT " + json.dumps(res, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
