"""Metrics, `iplex watch` and JSON logs during a real daemon's life (issue 14)."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.vfdlab import BIN, VfdProcess, sim_pf, vf_config
from vfd.daemon.metrics import EXPORTED
from vfd.protocol import encode_request

PF = "0000:07:00.0"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port: int) -> dict[tuple, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def vf_series(name: str, vf: int, port: str) -> tuple:
    return (name, (("pf", PF), ("port", port), ("vf", str(vf))))


def wait_for(cond, what: str, limit: float = 20):
    end = time.monotonic() + limit
    while time.monotonic() < end:
        got = cond()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"never happened: {what}")


def write_stats(d: VfdProcess, vf: int, rx: int, tx: int) -> None:
    (d.sim_dir / f"{PF}.stats.json").write_text(json.dumps(
        {"pf": {"rx_pkts": rx * 10, "tx_pkts": tx * 10, "rx_bytes": rx * 640, "tx_bytes": tx * 640},
         "vfs": {str(vf): {"rx_pkts": rx, "tx_pkts": tx, "rx_bytes": rx * 64, "tx_bytes": tx * 64, "spoofed": 3}}}))


@pytest.fixture
def daemon(tmp_path):
    port = free_port()
    d = VfdProcess(tmp_path, [sim_pf(PF, 8)], metrics_listen=f"127.0.0.1:{port}", reconcile_interval=3600)
    d.metrics_port = port
    d.start()
    yield d
    d.stop()


def start_watch(d: VfdProcess) -> subprocess.Popen:
    n = d.log_text().count("watcher added")
    w = subprocess.Popen([str(BIN / "iplex"), "--conf", str(d.conf), "watch", "--json"], stdout=subprocess.PIPE,
                         text=True)
    wait_for(lambda: d.log_text().count("watcher added") > n, "the daemon registers the watcher")
    return w


def test_metrics_and_watch_follow_a_daemon_life(daemon):
    d = daemon
    watcher = start_watch(d)
    try:
        assert d.add("vm-1", vf_config(PF, 1, vlans=[10])).returncode == 0
        refused = d.add("vm-dup", vf_config(PF, 1, vlans=[20], name="dup"))      # VF 1 is taken
        assert refused.returncode == 1
        # drift made in the sim state file: VF 1's VLANs changed behind vfd's back
        state = d.sim_state()
        state["vfs"]["1"]["vlans"] = [99]
        (d.sim_dir / f"{PF}.json").write_text(json.dumps(state))
        wait_for(lambda: d.vf_state(1)["vlans"] == [10], "drift repaired")
        write_stats(d, 1, rx=100, tx=50)

        events = []
        while len(events) < 3:
            events.append(json.loads(watcher.stdout.readline()))
    finally:
        watcher.terminate()
        watcher.wait()
    assert [e["event"] for e in events] == ["add", "refused", "drift"]
    assert events[0]["port"] == "vm-1" and events[0]["vf"] == 1 and events[0]["pf"] == PF
    assert events[1]["rule"] == "vf_free" and events[1]["action"] == "add" and events[1]["port"] == "vm-dup"
    assert events[2]["port"] == "vm-1" and events[2]["repaired"] is True

    show = d.request("show", resource="all")["data"]["pfs"][0]
    vf_row = next(v for v in show["vfs"] if v["vf"] == 1)
    assert vf_row["stats"]["rx_pkts"] == 100
    m = wait_for(lambda: (s := scrape(d.metrics_port)).get(vf_series("vfd_vf_rx_packets_total", 1, "vm-1")) == 100
                 and s, "the scrape sees the new counters")
    assert m[vf_series("vfd_vf_tx_packets_total", 1, "vm-1")] == vf_row["stats"]["tx_pkts"]
    assert m[vf_series("vfd_vf_rx_bytes_total", 1, "vm-1")] == vf_row["stats"]["rx_bytes"]
    assert m[vf_series("vfd_vf_spoofed_total", 1, "vm-1")] == 3
    assert m[("vfd_pf_rx_packets_total", (("pf", PF),))] == show["stats"]["rx_pkts"] == 1000
    assert m[vf_series("vfd_vf_in_sync", 1, "vm-1")] == 1
    assert m[("vfd_live_vfs", (("pf", PF),))] == 1
    assert m[("vfd_pf_link_up", (("pf", PF),))] == 1
    assert m[("vfd_requests_total", (("action", "add"), ("result", "ok")))] == 1
    assert m[("vfd_requests_total", (("action", "add"), ("result", "error")))] == 1
    assert m[("vfd_admission_refusals_total", (("rule", "vf_free"),))] == 1
    assert m[("vfd_drift_repairs_total", (("pf", PF),))] == 1
    assert m[("vfd_request_duration_seconds_count", (("action", "add"),))] == 2
    names = {name for name, _ in m}
    assert {n for n in EXPORTED if not n.endswith("duration_seconds")} <= names

    # clear_stats: show restarts at 0; the counter does not go back, and follows what is counted after
    assert d.iplex("clear_stats", "all").returncode == 0
    write_stats(d, 1, rx=130, tx=50)
    show = d.request("show", resource="all")["data"]["pfs"][0]
    assert next(v for v in show["vfs"] if v["vf"] == 1)["stats"]["rx_pkts"] == 30
    m = wait_for(lambda: (s := scrape(d.metrics_port)).get(vf_series("vfd_vf_rx_packets_total", 1, "vm-1")) != 100
                 and s, "the scrape after clear_stats")
    assert m[vf_series("vfd_vf_rx_packets_total", 1, "vm-1")] == 130
    assert m[vf_series("vfd_vf_tx_packets_total", 1, "vm-1")] == 50
    # the NIC resets its counters itself: still no step back
    write_stats(d, 1, rx=7, tx=1)
    m = wait_for(lambda: (s := scrape(d.metrics_port)).get(vf_series("vfd_vf_rx_packets_total", 1, "vm-1")) != 130
                 and s, "the scrape after a NIC reset")
    assert m[vf_series("vfd_vf_rx_packets_total", 1, "vm-1")] == 137


def test_a_stalled_watcher_does_not_block_requests(daemon):
    d = daemon
    stalled = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.connect(str(d.fifo) + ".sock")
    stalled.sendall(encode_request("watch", None, vfd_rid="stall"))          # and never read
    wait_for(lambda: "watcher added" in d.log_text(), "the stalled watcher is registered")
    n = 0
    while "dropped" not in d.log_text():                  # every refused delete is one event for it
        reply = d.request("delete", filename=f"nobody-{n}-" + "x" * 150 + ".json")
        assert reply["state"] == "ERROR"
        n += 1
        assert n < 5000, "the stalled watcher was never dropped"
    assert d.request("ping")["state"] == "OK"
    stalled.setblocking(True)
    stalled.settimeout(10)
    while stalled.recv(65536):                           # what was queued, then the end of the stream
        pass
    stalled.close()


def test_json_logs_parse_line_by_line(tmp_path):
    d = VfdProcess(tmp_path, [sim_pf(PF, 8)], log_format="json")
    d.start()
    try:
        assert d.add("vm-1", vf_config(PF, 2)).returncode == 0
        assert d.request("delete", filename="nope.json")["state"] == "ERROR"
    finally:
        d.stop()
    lines = [json.loads(line) for line in d.log_text().splitlines() if line.strip()]
    assert all({"time", "level", "logger", "message"} <= set(x) for x in lines)
    added = [x for x in lines if x["message"].startswith("event add")]
    assert added and added[0]["port"] == "vm-1" and added[0]["vf"] == 2 and added[0]["pf"] == PF
    assert any(x.get("rule") == "not_live" for x in lines)


def test_metrics_address_in_use_stops_start_up_with_the_reason(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        d = VfdProcess(tmp_path, [sim_pf(PF, 8)], metrics_listen=f"127.0.0.1:{port}")
        d.write_main()
        r = subprocess.run([str(BIN / "vfd"), "-f", "-p", str(d.conf)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert f"metrics_listen '127.0.0.1:{port}': cannot listen there" in r.stderr


def test_watch_over_the_fifo_is_refused_naming_the_socket(tmp_path):
    d = VfdProcess(tmp_path, [sim_pf(PF, 8)], socket=False)
    d.start()
    try:
        r = d.iplex("watch")
        assert r.returncode == 1 and "socket: false" in r.stderr
        reply = d.request("watch", socket_path=False)
        assert reply["state"] == "ERROR" and "watch is served over the daemon's socket only" in reply["msg"][0]
    finally:
        d.stop()


def test_reconcile_publishes_drift_with_its_fields(tmp_path):
    from tests.integration.test_transactions import Rig
    from vfd.daemon import events
    rig = Rig(tmp_path)
    got = []
    stop = events.subscribe(got.append)
    try:
        rig.drop("p1", vf_config(PF, 1, vlans=(10,)))
        assert rig.m.add("p1", requester_uid=0).ok
        rig.sim._pf(PF).vf(1)["vlans"] = [10, 99]            # changed behind vfd's back
        assert rig.m.reconcile() == 1
    finally:
        stop()
        rig.m.close()
    drift = [e for e in got if e["event"] == "drift"]
    assert [(e["pf"], e["vf"], e["port"], e["fields"], e["repaired"]) for e in drift] == [(PF, 1, "p1", ["vlans"], True)]
