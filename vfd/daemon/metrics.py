"""Prometheus metrics at `metrics_listen` (docs/observability.md).

Two kinds: what requests and events count (requests, durations, refusals by rule, drift repairs),
kept in prometheus_client instruments the loop updates; and what the NIC and the config say
(counters, link, live VFs, in sync), read by `StateCollector` from a snapshot the event loop
builds. The HTTP server runs in prometheus_client's own daemon thread, so a slow scraper never
holds up requests; the thread never touches the manager: it asks the loop for a snapshot (at
most one per CACHE_SECONDS, so a scrape costs at most one NIC read per PF and VF counter set per
second whatever the number of scrapers) and waits for it.

Counters are those `show` reports (since the last clear_stats), made monotonic as Prometheus
expects: a series whose value drops (clear_stats, or the NIC resetting its counters) continues
from where it was, adding what is counted after the drop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from vfd.daemon import events
from vfd.errors import VfdError
from vfd.model.mainconfig import split_listen
from vfd.program import compare

log = logging.getLogger("vfd.metrics")

CACHE_SECONDS = 1.0
SNAPSHOT_WAIT = 10.0            # a loop busy longer than this: the scrape gets the last snapshot
# metric suffix -> PortStats field (the same counters `show` prints)
# every metric family /metrics exports (the dashboard test checks its expressions against these)
EXPORTED = tuple(f"vfd_{scope}_{n}_total" for scope in ("pf", "vf") for n in ("rx_packets", "tx_packets", "rx_bytes",
                                                                               "tx_bytes")) + (
    "vfd_vf_spoofed_total", "vfd_vf_in_sync", "vfd_live_vfs", "vfd_pf_link_up", "vfd_requests_total",
    "vfd_admission_refusals_total", "vfd_drift_repairs_total", "vfd_request_duration_seconds")
PORT_COUNTERS = {"rx_packets": "rx_pkts", "tx_packets": "tx_pkts", "rx_bytes": "rx_bytes", "tx_bytes": "tx_bytes"}


@dataclass
class Snapshot:
    """What the loop read at `taken`: per PF its link, live VF count and counters; per VF its counters,
    port and whether the NIC matches the config."""
    taken: float
    pfs: list[dict] = field(default_factory=list)     # {pf, link_up, live, stats}
    vfs: list[dict] = field(default_factory=list)     # {pf, vf, port, in_sync, stats, spoofed}


def take_snapshot(manager, memo: dict | None = None) -> Snapshot:
    """On the event loop only (the manager and backends are not thread-safe). Counters as `show`
    gives them (after clear_stats baselines); in sync from the same compare `status` uses, run
    again only when the VF's program or what the NIC reports changed (`memo` keeps the last)."""
    snap = Snapshot(time.monotonic())
    memo = {} if memo is None else memo
    for pf in manager.pfs.values():
        backend = manager.backends[pf.backend]
        try:
            st = manager._stats(pf, None)
        except Exception as exc:  # noqa: BLE001 - one unreadable PF must not hide the others
            log.warning("metrics: PF %s unreadable: %s", pf.id, exc)
            continue
        snap.pfs.append({"pf": pf.id, "link_up": st.link == "UP", "live": len(pf.vfs), "stats": st})
        unverifiable = backend.unverifiable_fields(pf.id)
        for vfid, vf in sorted(pf.vfs.items()):
            try:
                vst = manager._stats(pf, vfid)
                actual = backend.read_vf(pf.id, vfid)
                last = memo.get((pf.id, vfid))
                if last is not None and last[0] is vf.program and last[1] == actual:
                    in_sync = last[2]
                else:
                    in_sync = not any(c.differs for c in compare(vf.program, actual, unverifiable))
                    memo[(pf.id, vfid)] = (vf.program, actual, in_sync)
            except Exception as exc:  # noqa: BLE001
                log.warning("metrics: PF %s VF %d unreadable: %s", pf.id, vfid, exc)
                continue
            snap.vfs.append({"pf": pf.id, "vf": str(vfid), "port": vf.port_id, "in_sync": in_sync, "stats": vst})
    return snap


class Monotonic:
    """Per series: the last value seen and an offset, so that what is exported never goes back."""

    def __init__(self):
        self.seen: dict[tuple, tuple[int, int]] = {}     # key -> (last raw value, offset)

    def value(self, key: tuple, raw: int) -> int:
        last, offset = self.seen.get(key, (0, 0))
        if raw < last:                  # cleared or reset: carry what was counted so far
            offset += last
        self.seen[key] = (raw, offset)
        return offset + raw


class StateCollector:
    """The NIC and config metrics, from the loop's snapshot (cached CACHE_SECONDS)."""

    def __init__(self, snapshot_fn):
        self.snapshot_fn = snapshot_fn       # () -> Snapshot; thread-safe (Metrics.snapshot)
        self.mono = Monotonic()
        self.lock = threading.Lock()
        self._built: tuple[Snapshot | None, list] = (None, [])     # families of the last snapshot

    def describe(self):
        return []                              # collected on scrape only (not at registration)

    def collect(self):
        with self.lock:
            snap = self.snapshot_fn()
            if self._built[0] is not snap:            # scrapes within the cache share the families too
                self._built = (snap, self._families(snap))
            families = self._built[1]
        yield from families

    def _families(self, snap: Snapshot) -> list:
        fams = {}
        for scope, labels in (("pf", ["pf"]), ("vf", ["pf", "vf", "port"])):
            for name in PORT_COUNTERS:
                fams[(scope, name)] = CounterMetricFamily(f"vfd_{scope}_{name}", f"{scope.upper()} {name.replace('_', ' ')} "
                                                          "since the last clear_stats (monotonic)", labels=labels)
        spoofed = CounterMetricFamily("vfd_vf_spoofed", "packets the NIC dropped as spoofed", labels=["pf", "vf", "port"])
        in_sync = GaugeMetricFamily("vfd_vf_in_sync", "1 when the NIC matches the VF's config, else 0",
                                    labels=["pf", "vf", "port"])
        live = GaugeMetricFamily("vfd_live_vfs", "live VF configs on the PF", labels=["pf"])
        link = GaugeMetricFamily("vfd_pf_link_up", "1 when the PF's link is up", labels=["pf"])
        for p in snap.pfs:
            for name, attr in PORT_COUNTERS.items():
                fams[("pf", name)].add_metric([p["pf"]], self.mono.value(("pf", name, p["pf"]), getattr(p["stats"], attr)))
            live.add_metric([p["pf"]], p["live"])
            link.add_metric([p["pf"]], 1 if p["link_up"] else 0)
        for v in snap.vfs:
            lv = [v["pf"], v["vf"], v["port"]]
            for name, attr in PORT_COUNTERS.items():
                fams[("vf", name)].add_metric(lv, self.mono.value(("vf", name, *lv), getattr(v["stats"], attr)))
            spoofed.add_metric(lv, self.mono.value(("vf", "spoofed", *lv), v["stats"].spoofed))
            in_sync.add_metric(lv, 1 if v["in_sync"] else 0)
        return [*fams.values(), spoofed, in_sync, live, link]


class Metrics:
    """The daemon's registry, its instruments and the endpoint."""

    def __init__(self, manager):
        self.manager = manager
        self.loop: asyncio.AbstractEventLoop | None = None
        self.registry = CollectorRegistry(auto_describe=False)
        self.requests = Counter("vfd_requests", "requests served, by action and result (ok, error)",
                                ["action", "result"], registry=self.registry)
        self.duration = Histogram("vfd_request_duration_seconds", "time to serve a request, by action", ["action"],
                                  registry=self.registry)
        self.refusals = Counter("vfd_admission_refusals", "requests refused, by the rule that refused them",
                                ["rule"], registry=self.registry)
        self.drift = Counter("vfd_drift_repairs", "VFs found differing from their config and re-applied", ["pf"],
                             registry=self.registry)
        self.collector = StateCollector(self.snapshot)
        self.registry.register(self.collector)
        self._snap: Snapshot | None = None
        self._memo: dict = {}
        self._server = None
        self._unsubscribe = events.subscribe(self.on_event)

    # ---- the loop's side ----------------------------------------------------------------------
    def request_done(self, action: str, ok: bool, seconds: float) -> None:
        self.requests.labels(action, "ok" if ok else "error").inc()
        self.duration.labels(action).observe(seconds)

    def on_event(self, ev: dict) -> None:
        if ev["event"] == "refused":
            self.refusals.labels(ev.get("rule", "other")).inc()
        elif ev["event"] == "drift":
            self.drift.labels(ev["pf"]).inc()

    # ---- the scraping thread's side -----------------------------------------------------------
    def snapshot(self) -> Snapshot:
        """The cached snapshot, or a fresh one built on the loop (called under the collector's lock)."""
        snap = self._snap
        if snap is not None and time.monotonic() - snap.taken < CACHE_SECONDS:
            return snap
        if self.loop is None or not self.loop.is_running():      # starting or stopping: nothing read
            fresh = snap or Snapshot(time.monotonic())
        else:
            fut: concurrent.futures.Future = concurrent.futures.Future()

            def build():
                if fut.set_running_or_notify_cancel():
                    try:
                        fut.set_result(take_snapshot(self.manager, self._memo))
                    except BaseException as exc:  # noqa: BLE001 - handed to the scraping thread
                        fut.set_exception(exc)
            self.loop.call_soon_threadsafe(build)
            try:
                fresh = fut.result(SNAPSHOT_WAIT)
            except concurrent.futures.TimeoutError:
                fut.cancel()
                log.warning("metrics: the loop did not build a snapshot within %.0fs; serving the last one",
                            SNAPSHOT_WAIT)
                fresh = snap or Snapshot(time.monotonic())
        self._snap = fresh
        return fresh

    def serve(self, listen: str) -> None:
        """Start the /metrics endpoint (prometheus_client's HTTP server in a daemon thread), at
        start-up: an address that cannot be bound stops the daemon with the reason. Until the loop
        runs (`attach`), scrapes get no NIC series."""
        from prometheus_client import start_http_server
        host, port = split_listen(listen)
        try:
            self._server = start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            raise VfdError(f"metrics_listen {listen!r}: cannot listen there: {exc.strerror or exc}") from None
        log.info("metrics on http://%s/metrics", listen)

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def close(self) -> None:
        self._unsubscribe()
        if self._server is not None and isinstance(self._server, tuple):
            server, thread = self._server
            server.shutdown()
            server.server_close()
            self._server = None
