"""Units of issue 14: the dashboard's expressions, the monotonic counters, the config keys, JSON logs."""

from __future__ import annotations

import io
import json
import logging
import re
import time
from pathlib import Path

import pytest

from vfd.daemon import events
from vfd.daemon.logsetup import JsonFormatter
from vfd.daemon.metrics import EXPORTED, Monotonic
from vfd.model.mainconfig import MainConfig, split_listen

ROOT = Path(__file__).resolve().parents[2]
HISTOGRAM_SERIES = ("_bucket", "_sum", "_count")


def test_dashboard_parses_and_every_expression_names_exported_metrics():
    dash = json.loads((ROOT / "deploy/grafana/vfd-dashboard.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    assert exprs
    known = set(EXPORTED) | {f"{n}{s}" for n in EXPORTED for s in HISTOGRAM_SERIES}
    used = set()
    for e in exprs:
        names = set(re.findall(r"\bvfd_[a-z_]+", e))
        assert names, f"expression names no vfd metric: {e}"
        assert names <= known, f"{e}: {sorted(names - known)} not exported"
        used |= names
    # every exported family shows somewhere on the dashboard
    assert {n for n in EXPORTED} <= {re.sub(r"_(bucket|sum|count)$", "", n) for n in used}


def test_monotonic_counter_carries_on_after_a_drop():
    m = Monotonic()
    assert [m.value(("k",), v) for v in (5, 9, 0, 4, 2, 3)] == [5, 9, 9, 13, 15, 16]
    assert m.value(("other",), 1) == 1


@pytest.mark.parametrize("bad", ["9469", "host:", ":9469", "h:0", "h:70000", "h:12x", "h:²"])
def test_metrics_listen_refuses_what_is_not_host_port(bad):
    with pytest.raises(Exception) as exc:
        MainConfig.model_validate({"pciids": [{"id": "p"}], "metrics_listen": bad})
    assert "metrics_listen" in str(exc.value) and "HOST:PORT" in str(exc.value)


def test_metrics_listen_and_log_format_accepted():
    cfg = MainConfig.model_validate({"pciids": [{"id": "p"}], "metrics_listen": "[::1]:9469", "log_format": "json"})
    assert split_listen(cfg.metrics_listen) == ("::1", 9469)
    assert MainConfig.model_validate({"pciids": [{"id": "p"}]}).metrics_listen is None
    with pytest.raises(Exception):
        MainConfig.model_validate({"pciids": [{"id": "p"}], "log_format": "xml"})


def test_json_log_line_carries_structured_fields():
    buf = io.StringIO()
    h = logging.StreamHandler(buf)
    h.setFormatter(JsonFormatter())
    lg = logging.getLogger("vfd.test.json")
    lg.addHandler(h)
    lg.propagate = False
    lg.warning('refused "x"\nnext', extra={"pf": "p0", "vf": 3, "port": "vm", "rule": "vf_free"})
    lg.removeHandler(h)
    (line,) = buf.getvalue().splitlines()
    rec = json.loads(line)
    assert rec["message"] == 'refused "x"\nnext' and rec["level"] == "WARNING" and rec["logger"] == "vfd.test.json"
    assert (rec["pf"], rec["vf"], rec["port"], rec["rule"]) == ("p0", 3, "vm", "vf_free")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", rec["time"])


def test_event_bus_hands_each_event_to_every_subscriber_and_survives_a_failing_one():
    got = []
    stop_a = events.subscribe(lambda ev: 1 / 0)
    stop_b = events.subscribe(got.append)
    try:
        events.publish("add", pf="p", vf=1, port="vm", missing=None)
        with pytest.raises(ValueError):
            events.publish("no-such-kind")
    finally:
        stop_a()
        stop_b()
    assert [(e["event"], e["pf"], e["vf"], e["port"], "missing" in e) for e in got] == [("add", "p", 1, "vm", False)]


def test_an_events_time_is_now_in_seconds_to_the_microsecond():
    before = time.time()
    ev = events.publish("add", pf="p", vf=1, port="vm")
    after = time.time()
    assert isinstance(ev["time"], float) and before - 1e-6 <= ev["time"] <= after
    assert len(repr(ev["time"]).split(".")[1]) <= 6
