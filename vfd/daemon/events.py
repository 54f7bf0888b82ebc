"""The daemon's event bus: what happened (a VF added, a request refused, drift repaired, a link
change), published once and handed to every subscriber (metrics, `iplex watch`).

In-process and synchronous: everything runs on the daemon's event loop, so publishing is a
function call per subscriber. A subscriber must not block (watchers queue and write
non-blocking); one that raises is logged and kept, so a bug there never fails a request.
"""

from __future__ import annotations

import logging
import time
from typing import Callable

log = logging.getLogger("vfd.events")

# kind -> what it means; the one list of event kinds (docs/observability.md)
KINDS = {
    "add": "a VF config was admitted and programmed",
    "update": "a live VF config was replaced",
    "delete": "a live VF config was removed and its VF cleared",
    "refused": "a request was refused (data: the rule)",
    "drift": "the NIC differed from a live config (fields) and was re-applied",
    "link": "a PF's link went up or down",
    "vf_reset": "a VF was reset by its guest or driver and re-programmed",
    "vfs_gone": "a PF's VFs disappeared and were re-created",
}

STRUCTURED = ("pf", "vf", "port", "rule")     # fields a JSON log line carries as its own keys
Subscriber = Callable[[dict], None]
_subscribers: list[Subscriber] = []


def subscribe(fn: Subscriber) -> Callable[[], None]:
    """Add a subscriber; returns the function that removes it."""
    _subscribers.append(fn)
    return lambda: _subscribers.remove(fn) if fn in _subscribers else None


def publish(kind: str, **fields) -> dict:
    """One event to every subscriber: {"time", "event", and the fields given (None ones left out)}."""
    if kind not in KINDS:
        raise ValueError(f"unknown event kind {kind!r}")
    # microseconds as a float without round(): float rounding is costly where floats are emulated
    ev = {"time": time.time_ns() // 1000 / 1e6, "event": kind, **{k: v for k, v in fields.items() if v is not None}}
    log.info("event %s: %s", kind, " ".join(f"{k}={v}" for k, v in ev.items() if k not in ("time", "event")),
             extra={k: ev[k] for k in STRUCTURED if k in ev})
    for fn in list(_subscribers):
        try:
            fn(ev)
        except Exception:  # noqa: BLE001 - a subscriber's bug must not fail the request that published
            log.exception("event subscriber failed on %s", kind)
    return ev


def reset() -> None:
    """Drop every subscriber (tests; a daemon has one bus for its life)."""
    _subscribers.clear()
