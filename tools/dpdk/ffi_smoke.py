#!/usr/bin/env python3
"""Exercise vfd.backends.dpdk.ffi against the real DPDK 22.11 libraries on a net_null vdev.

Run as root (EAL needs it even with --no-huge):  python3 tools/dpdk/ffi_smoke.py [--prefix NAME]
EAL can be initialised once per process, so tests run this script in a subprocess.  The last line of stdout is
``RESULT {json}``; the exit status is 0 only when every check passed.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import sys
import time

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))

from vfd.backends.dpdk import ffi


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prefix", default=f"vfd-smoke-{os.getpid()}", help="EAL --file-prefix")
    ap.add_argument("--extra", action="append", default=[], help="extra EAL argument (repeatable)")
    opts = ap.parse_args()

    res: dict = {"checks": {}, "codes": {}}
    failures: list[str] = []

    def check(name: str, ok: bool, detail=None) -> None:
        res["checks"][name] = bool(ok)
        if not ok:
            failures.append(f"{name}: {detail!r}")

    t_all = time.monotonic()
    t = time.monotonic()
    loaded = ffi.load()
    res["load_s"] = round(time.monotonic() - t, 4)
    res["libs"] = sorted(loaded)
    res["missing_symbols"] = ffi.missing_symbols()
    res["version"] = ffi.version()

    null_so = ffi.pmd_path("net_null")
    args = ["vfd", "--no-huge", "--no-shconf", "--no-telemetry", "--no-pci", "--vdev", "net_null0", "-d", null_so,
            "--file-prefix", opts.prefix, "-l", "0", "--log-level", "*:error", *opts.extra]
    res["eal_args"] = args
    t = time.monotonic()
    ffi.eal_init(args)
    res["eal_init_s"] = round(time.monotonic() - t, 4)

    ports = ffi.list_ports()
    res["ports"] = ports
    check("count_avail", ffi.eth_dev_count_avail() == 1, ffi.eth_dev_count_avail())
    infos = [ffi.port_info(p) for p in ports]
    null_ports = [i for i in infos if i.driver_name == "net_null"]
    check("one_null_port", len(null_ports) == 1, [i.driver_name for i in infos])
    pi = null_ports[0]
    port = pi.port_id
    res["port_info"] = pi.__dict__
    check("name", pi.name == "net_null0", pi.name)
    check("layout", ffi.eth_dev_layout_ok(port))

    pool = ffi.pktmbuf_pool_create("vfd_smoke_pool", 511, 0, 0, ffi.RTE_MBUF_DEFAULT_BUF_SIZE, ffi.SOCKET_ID_ANY)
    ffi.dev_configure(port, 1, 1, ffi.make_eth_conf())
    ffi.rx_queue_setup(port, 0, 128, pool)
    ffi.tx_queue_setup(port, 0, 64)
    ffi.dev_start(port)

    link = ffi.link_get_nowait(port)
    res["link"] = link._asdict()
    check("link_up", link.up, link)
    stats = ffi.stats_get(port)
    res["stats"] = stats
    check("stats", set(stats) == set(ffi.STATS_FIELDS), stats)
    xs = ffi.xstats(port)
    res["xstats_count"] = len(xs)
    check("xstats", len(xs) > 0 and all(isinstance(v, int) for v in xs.values()), xs)
    ffi.stats_reset(port)

    # net_null starts promiscuous + all-multicast and has no ops to change either: enable is a no-op success,
    # disable is -ENOTSUP.
    ffi.promiscuous_enable(port)
    check("promisc_on", ffi.promiscuous_get(port))
    res["codes"]["promiscuous_disable"] = ffi.promiscuous_disable(port, check=False)
    ffi.allmulticast_enable(port)
    check("allmulti_on", ffi.allmulticast_get(port))
    res["codes"]["allmulticast_disable"] = ffi.allmulticast_disable(port, check=False)
    res["codes"]["set_mtu_1500"] = ffi.set_mtu(port, 1500, check=False)
    res["mtu"] = ffi.get_mtu(port)

    # The PMD-specific VF calls check the port's driver first: -ENOTSUP on a net_null port.
    rc = ffi.ixgbe_set_vf_mac_anti_spoof(port, 0, True, check=False)
    res["codes"]["ixgbe_set_vf_mac_anti_spoof"] = rc
    check("ixgbe_enotsup", rc == -95, rc)
    try:
        ffi.ixgbe_set_vf_mac_anti_spoof(port, 0, True)
        check("ixgbe_raises", False, "no exception")
    except ffi.DpdkError as e:
        res["ixgbe_error"] = str(e)
        check("ixgbe_raises", e.code == -95 and e.errname == "ENOTSUP" and e.func.startswith("rte_pmd_ixgbe"), e)

    mac = "02:00:00:00:00:01"
    calls = {
        "ixgbe_set_vf_mac_addr": lambda: ffi.ixgbe_set_vf_mac_addr(port, 0, mac, check=False),
        "ixgbe_set_vf_vlan_anti_spoof": lambda: ffi.ixgbe_set_vf_vlan_anti_spoof(port, 0, 1, check=False),
        "ixgbe_set_vf_vlan_insert": lambda: ffi.ixgbe_set_vf_vlan_insert(port, 0, 100, check=False),
        "ixgbe_set_vf_vlan_stripq": lambda: ffi.ixgbe_set_vf_vlan_stripq(port, 0, 1, check=False),
        "ixgbe_set_vf_vlan_filter": lambda: ffi.ixgbe_set_vf_vlan_filter(port, 100, 1, 1, check=False),
        "ixgbe_set_vf_rxmode": lambda: ffi.ixgbe_set_vf_rxmode(port, 0, ffi.RTE_ETH_VMDQ_ACCEPT_BROADCAST, 1,
                                                               check=False),
        "ixgbe_set_vf_rx": lambda: ffi.ixgbe_set_vf_rx(port, 0, 1, check=False),
        "ixgbe_set_vf_tx": lambda: ffi.ixgbe_set_vf_tx(port, 0, 1, check=False),
        "ixgbe_set_vf_rate_limit": lambda: ffi.ixgbe_set_vf_rate_limit(port, 0, 1000, 1, check=False),
        "ixgbe_set_vf_split_drop_en": lambda: ffi.ixgbe_set_vf_split_drop_en(port, 0, 1, check=False),
        "ixgbe_set_all_queues_drop_en": lambda: ffi.ixgbe_set_all_queues_drop_en(port, 1, check=False),
        "ixgbe_set_tx_loopback": lambda: ffi.ixgbe_set_tx_loopback(port, 1, check=False),
        "ixgbe_set_tc_bw_alloc": lambda: ffi.ixgbe_set_tc_bw_alloc(port, [50, 50], check=False),
        "ixgbe_ping_vf": lambda: ffi.ixgbe_ping_vf(port, 0, check=False),
        "i40e_set_vf_mac_addr": lambda: ffi.i40e_set_vf_mac_addr(port, 0, mac, check=False),
        "i40e_add_vf_mac_addr": lambda: ffi.i40e_add_vf_mac_addr(port, 0, mac, check=False),
        "i40e_set_vf_mac_anti_spoof": lambda: ffi.i40e_set_vf_mac_anti_spoof(port, 0, 1, check=False),
        "i40e_set_vf_vlan_anti_spoof": lambda: ffi.i40e_set_vf_vlan_anti_spoof(port, 0, 1, check=False),
        "i40e_set_vf_vlan_stripq": lambda: ffi.i40e_set_vf_vlan_stripq(port, 0, 1, check=False),
        "i40e_set_vf_vlan_insert": lambda: ffi.i40e_set_vf_vlan_insert(port, 0, 100, check=False),
        "i40e_set_vf_vlan_filter": lambda: ffi.i40e_set_vf_vlan_filter(port, 100, 1, 1, check=False),
        "i40e_set_vf_vlan_tag": lambda: ffi.i40e_set_vf_vlan_tag(port, 0, 1, check=False),
        "i40e_set_vf_broadcast": lambda: ffi.i40e_set_vf_broadcast(port, 0, 1, check=False),
        "i40e_set_vf_unicast_promisc": lambda: ffi.i40e_set_vf_unicast_promisc(port, 0, 1, check=False),
        "i40e_set_vf_multicast_promisc": lambda: ffi.i40e_set_vf_multicast_promisc(port, 0, 1, check=False),
        "i40e_reset_vf_stats": lambda: ffi.i40e_reset_vf_stats(port, 0, check=False),
        "i40e_set_vf_max_bw": lambda: ffi.i40e_set_vf_max_bw(port, 0, 1000, check=False),
        "i40e_set_vf_tc_bw_alloc": lambda: ffi.i40e_set_vf_tc_bw_alloc(port, 0, [100], check=False),
        "i40e_set_vf_tc_max_bw": lambda: ffi.i40e_set_vf_tc_max_bw(port, 0, 0, 1000, check=False),
        "i40e_set_tc_strict_prio": lambda: ffi.i40e_set_tc_strict_prio(port, 0, check=False),
        "i40e_set_tx_loopback": lambda: ffi.i40e_set_tx_loopback(port, 1, check=False),
        "i40e_ping_vfs": lambda: ffi.i40e_ping_vfs(port, 0, check=False),
        "i40e_query_vfid_by_mac": lambda: ffi.i40e_query_vfid_by_mac(port, mac, check=False),
        "bnxt_set_vf_mac_addr": lambda: ffi.bnxt_set_vf_mac_addr(port, 0, mac, check=False),
        "bnxt_mac_addr_add": lambda: ffi.bnxt_mac_addr_add(port, mac, 0, check=False),
        "bnxt_set_vf_mac_anti_spoof": lambda: ffi.bnxt_set_vf_mac_anti_spoof(port, 0, 1, check=False),
        "bnxt_set_vf_vlan_anti_spoof": lambda: ffi.bnxt_set_vf_vlan_anti_spoof(port, 0, 1, check=False),
        "bnxt_set_vf_vlan_stripq": lambda: ffi.bnxt_set_vf_vlan_stripq(port, 0, 1, check=False),
        "bnxt_set_vf_vlan_insert": lambda: ffi.bnxt_set_vf_vlan_insert(port, 0, 100, check=False),
        "bnxt_set_vf_vlan_filter": lambda: ffi.bnxt_set_vf_vlan_filter(port, 100, 1, 1, check=False),
        "bnxt_set_vf_rxmode": lambda: ffi.bnxt_set_vf_rxmode(port, 0, ffi.RTE_ETH_VMDQ_ACCEPT_BROADCAST, 1,
                                                             check=False),
        "bnxt_set_vf_rate_limit": lambda: ffi.bnxt_set_vf_rate_limit(port, 0, 1000, 1, check=False),
        "bnxt_reset_vf_stats": lambda: ffi.bnxt_reset_vf_stats(port, 0, check=False),
        "bnxt_get_vf_rx_status": lambda: ffi.bnxt_get_vf_rx_status(port, 0, check=False),
        "bnxt_set_vf_persist_stats": lambda: ffi.bnxt_set_vf_persist_stats(port, 0, 1, check=False),
        "bnxt_set_tx_loopback": lambda: ffi.bnxt_set_tx_loopback(port, 1, check=False),
        "bnxt_set_all_queues_drop_en": lambda: ffi.bnxt_set_all_queues_drop_en(port, 1, check=False),
    }
    for name, fn in calls.items():
        res["codes"][name] = fn()
    res["pmd_call_count"] = len(calls) + 4
    for name, fn in {
        "i40e_get_vf_stats": lambda: ffi.i40e_get_vf_stats(port, 0),
        "bnxt_get_vf_stats": lambda: ffi.bnxt_get_vf_stats(port, 0),
        "bnxt_get_vf_tx_drop_count": lambda: ffi.bnxt_get_vf_tx_drop_count(port, 0),
        "i40e_remove_vf_mac_addr": lambda: ffi.i40e_remove_vf_mac_addr(port, 0, mac),
    }.items():
        try:
            fn()
            res["codes"][name] = 0
        except ffi.DpdkError as e:
            res["codes"][name] = e.code if not isinstance(e, ffi.SymbolMissing) else "SymbolMissing"
    bad = {k: v for k, v in res["codes"].items()
           if k.startswith(("ixgbe_", "i40e_", "bnxt_")) and "bad_port" not in k and v not in (-95, "SymbolMissing")}
    check("pmd_calls_enotsup", not bad, bad)

    # Mailbox event delivered through DPDK's own dispatch (rte_eth_dev_callback_process).
    seen: list[dict] = []

    def on_mbox(port_id, event, ret_param):
        p = ffi.ixgbe_mb_param(ret_param)
        words = ffi.ixgbe_msg_words(p)
        seen.append({"port": port_id, "event": event, "vfid": p.vfid, "msg_type": p.msg_type,
                     "retval_in": p.retval, "word0": words[0], "word1": words[1]})
        p.retval = ffi.RTE_PMD_IXGBE_MB_EVENT_NOOP_NACK
        return 0

    lsc_seen: list = []
    h_mbox = ffi.callback_register(port, ffi.RTE_ETH_EVENT_VF_MBOX, on_mbox)
    h_lsc = ffi.callback_register(port, ffi.RTE_ETH_EVENT_INTR_LSC, lambda p, e, r: lsc_seen.append((p, e, r)))
    msgbuf = (ctypes.c_uint32 * ffi.IXGBE_VFMAILBOX_SIZE)()
    msgbuf[0] = ffi.IXGBE_VF_SET_VLAN | (1 << ffi.IXGBE_VT_MSGINFO_SHIFT)  # add
    msgbuf[1] = 42
    param = ffi.RtePmdIxgbeMbEventParam(vfid=3, msg_type=ffi.IXGBE_VF_SET_VLAN,
                                        retval=ffi.RTE_PMD_IXGBE_MB_EVENT_PROCEED,
                                        msg=ctypes.addressof(msgbuf))
    t = time.monotonic()
    rc = ffi.callback_process(port, ffi.RTE_ETH_EVENT_VF_MBOX, param)
    res["callback_process_s"] = round(time.monotonic() - t, 6)
    res["mbox_seen"] = seen
    check("mbox_called_once", len(seen) == 1, seen)
    if seen:
        s = seen[0]
        check("mbox_fields", s["port"] == port and s["event"] == ffi.RTE_ETH_EVENT_VF_MBOX and s["vfid"] == 3
              and s["msg_type"] == ffi.IXGBE_VF_SET_VLAN and s["retval_in"] == ffi.RTE_PMD_IXGBE_MB_EVENT_PROCEED
              and s["word1"] == 42 and (s["word0"] >> ffi.IXGBE_VT_MSGINFO_SHIFT) & 0xFF == 1, s)
    check("mbox_verdict", param.retval == ffi.RTE_PMD_IXGBE_MB_EVENT_NOOP_NACK, param.retval)
    check("mbox_rc", rc == 0, rc)

    # i40e-shaped and bnxt-shaped params through the same dispatch.
    i40e_seen: list = []

    def on_i40e(port_id, event, ret_param):
        p = ffi.i40e_mb_param(ret_param)
        i40e_seen.append((p.vfid, p.msg_type, ffi.msg_bytes(p.msg, p.msglen)))
        p.retval = ffi.RTE_PMD_I40E_MB_EVENT_NOOP_ACK

    ffi.callback_unregister(h_mbox)
    h_i40e = ffi.callback_register(port, ffi.RTE_ETH_EVENT_VF_MBOX, on_i40e)
    payload = (ctypes.c_uint8 * 4)(0, 0, ffi.FLAG_VF_UNICAST_PROMISC, 0)
    p40 = ffi.RtePmdI40eMbEventParam(vfid=7, msg_type=ffi.VIRTCHNL_OP_CONFIG_PROMISCUOUS_MODE,
                                     retval=ffi.RTE_PMD_I40E_MB_EVENT_PROCEED, msg=ctypes.addressof(payload),
                                     msglen=4)
    ffi.callback_process(port, ffi.RTE_ETH_EVENT_VF_MBOX, p40)
    check("i40e_mbox", i40e_seen == [(7, ffi.VIRTCHNL_OP_CONFIG_PROMISCUOUS_MODE, bytes([0, 0, 1, 0]))]
          and p40.retval == ffi.RTE_PMD_I40E_MB_EVENT_NOOP_ACK, (i40e_seen, p40.retval))
    ffi.callback_unregister(h_i40e)

    bnxt_seen: list = []

    def on_bnxt(port_id, event, ret_param):
        p = ffi.bnxt_mb_param(ret_param)
        bnxt_seen.append((p.vf_id, ffi.hwrm_req_type(p.msg)))
        p.retval = ffi.RTE_PMD_BNXT_MB_EVENT_NOOP_NACK

    h_bnxt = ffi.callback_register(port, ffi.RTE_ETH_EVENT_VF_MBOX, on_bnxt)
    hwrm = (ctypes.c_uint8 * 24)()
    hwrm[0], hwrm[1] = ffi.HWRM_CFA_L2_SET_RX_MASK & 0xFF, ffi.HWRM_CFA_L2_SET_RX_MASK >> 8
    pbn = ffi.RtePmdBnxtMbEventParam(vf_id=5, retval=ffi.RTE_PMD_BNXT_MB_EVENT_PROCEED, msg=ctypes.addressof(hwrm))
    ffi.callback_process(port, ffi.RTE_ETH_EVENT_VF_MBOX, pbn)
    check("bnxt_mbox", bnxt_seen == [(5, ffi.HWRM_CFA_L2_SET_RX_MASK)]
          and pbn.retval == ffi.RTE_PMD_BNXT_MB_EVENT_NOOP_NACK, (bnxt_seen, pbn.retval))
    ffi.callback_unregister(h_bnxt)

    ffi.callback_process(port, ffi.RTE_ETH_EVENT_INTR_LSC, None)
    check("lsc", lsc_seen == [(port, ffi.RTE_ETH_EVENT_INTR_LSC, None)], lsc_seen)
    ffi.callback_unregister(h_lsc)
    before = (len(seen), len(i40e_seen), len(bnxt_seen), len(lsc_seen))
    ffi.callback_process(port, ffi.RTE_ETH_EVENT_VF_MBOX, param)
    ffi.callback_process(port, ffi.RTE_ETH_EVENT_INTR_LSC, None)
    check("unregistered", (len(seen), len(i40e_seen), len(bnxt_seen), len(lsc_seen)) == before)
    check("no_callbacks_left", not ffi.registered_callbacks(), ffi.registered_callbacks())

    # Unregistering from inside the running callback is refused (-EAGAIN); afterwards it works.
    inner: dict = {}

    def self_unregister(port_id, event, ret_param):
        inner["rc"] = ffi.callback_unregister(inner["h"], check=False)

    inner["h"] = ffi.callback_register(port, ffi.RTE_ETH_EVENT_INTR_RESET, self_unregister)
    ffi.callback_process(port, ffi.RTE_ETH_EVENT_INTR_RESET)
    res["codes"]["unregister_inside_callback"] = inner.get("rc")
    check("unregister_inside_eagain", inner.get("rc") == -11, inner)
    ffi.callback_unregister(inner["h"])

    # Port ids that name no device: -ENODEV from the wrappers, never a crash.
    res["codes"]["ixgbe_bad_port"] = ffi.ixgbe_set_vf_mac_anti_spoof(ffi.RTE_MAX_ETHPORTS - 1, 0, 1, check=False)
    res["codes"]["bnxt_rx_status_bad_port"] = ffi.bnxt_get_vf_rx_status(ffi.RTE_MAX_ETHPORTS - 1, 0, check=False)
    check("bad_port_enodev", res["codes"]["ixgbe_bad_port"] == -19 and res["codes"]["bnxt_rx_status_bad_port"] == -19,
          (res["codes"]["ixgbe_bad_port"], res["codes"]["bnxt_rx_status_bad_port"]))

    ffi.dev_stop(port)
    ffi.dev_close(port)
    ffi.mempool_free(pool)
    t = time.monotonic()
    ffi.eal_cleanup()
    res["eal_cleanup_s"] = round(time.monotonic() - t, 4)
    # rte_eal_cleanup leaves the (empty, with --no-shconf) runtime dir behind: remove ours if it is empty.
    runtime_dir = os.path.join(os.environ.get("XDG_RUNTIME_DIR", "/tmp") if os.geteuid() else "/var/run",
                               "dpdk", opts.prefix)
    try:
        os.rmdir(runtime_dir)
        res["runtime_dir_removed"] = runtime_dir
    except OSError as e:
        res["runtime_dir_left"] = f"{runtime_dir}: {e.strerror}"
    res["total_s"] = round(time.monotonic() - t_all, 4)
    res["failures"] = failures
    print("RESULT " + json.dumps(res, default=str), flush=True)
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
