"""Bad input, fuzzed (issue 3): property-based tests of the parsers, and thousands of hostile
requests against a real daemon, which must keep answering and change nothing."""

import json
import os
import random
import threading

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vfd.daemon.server import RequestServer
from vfd.errors import ConfigError
from vfd.model.mainconfig import parse_main_config
from vfd.model.vfconfig import parse_vf_config
from tests.vfdlab import vf_config

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=10), kids, max_size=4),
    max_leaves=12)
VF_KEYS = ["name", "pciid", "vfid", "vlans", "macs", "mac", "strip_stag", "insert_stag", "allow_bcast", "rate",
           "min_rate", "queues", "mirror", "link_status", "start_cb", "vlan_proto", "mac_anti_spoof"]


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.sampled_from(VF_KEYS) | st.text(max_size=8), json_values, max_size=10))
def test_vf_config_parser_only_raises_config_error(data):
    try:
        cfg = parse_vf_config(json.dumps(data), "fuzz.json")
    except ConfigError as exc:
        assert str(exc).startswith("fuzz.json: ")
        return
    assert 1 <= len(cfg.vlans) <= 64 and 0 <= cfg.rate <= 1 and cfg.vfid >= 0


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_vf_config_parser_on_raw_bytes(raw):
    try:
        parse_vf_config(raw, "fuzz.json")
    except ConfigError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["pciids", "cpu_mask", "cpu_alarm", "numa_mem", "log_keep", "backend"])
                       | st.text(max_size=6), json_values, max_size=6))
def test_main_config_parser_only_raises_config_error(data):
    try:
        parse_main_config(json.dumps(data), "fuzz.cfg")
    except ConfigError:
        pass


class Capture(RequestServer):
    def __init__(self):
        super().__init__(fifo_path="/tmp/vfd-fuzz/request", handler=self.handle)
        self.handled = []

    def handle(self, action, params, requester_uid):
        assert isinstance(params, dict)
        self.handled.append(action)
        return True, ["ok"], None

    def _reply(self, *a):
        pass


requests = st.fixed_dictionaries({"action": json_values | st.sampled_from(["ping", "add", "show"]),
                                  "params": json_values | st.fixed_dictionaries({"r_fifo": json_values})})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=200) | requests.map(lambda r: json.dumps(r).encode()), max_size=8),
       st.integers(1, 64))
def test_request_framing_never_raises_and_resyncs(chunks, cut):
    s = Capture()
    data = b"\n".join(chunks)
    for i in range(0, len(data), cut):      # arbitrary read boundaries
        s.buf += data[i:i + cut]
        s._drain()
    s.buf += b'\n{"action": "ping", "params": {"r_fifo": "x"}}\n'
    s._drain()
    assert s.handled and s.handled[-1] == "ping"        # the server is back in step after garbage


def hostile_requests(d, rng: random.Random, n: int, canary: str):
    ghost = str(d.fifo.parent / "never_read")
    os.mkfifo(ghost)
    names = ["../../etc/passwd", f"{canary}/x.json", "/etc/shadow", "..", "", "a" * 5000, "x\u0000y",
             str(d.config_dir / ".." / "vfd.cfg"), "p9", "p0.json.error", "p0/../p1"]
    actions = ["add", "delete", "update", "status", "export", "show", "mirror", "verbose", "cpu_alarm", "ping",
               "a", "dump ", 7, None, ["add"], {"x": 1}]
    for i in range(n):
        kind = rng.randrange(6)
        if kind == 0:
            yield bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300)))
        elif kind == 1:
            yield json.dumps(rng.choice([[1, 2], "str", 3.5, None, True, {"params": []}])).encode()
        else:
            params = {"r_fifo": rng.choice([ghost, f"{canary}/reply", "/etc/passwd", str(d.fifo), "nofifo",
                                            None, 5]),
                      "filename": rng.choice(names + [None, 3, ["x"]]),
                      "resource": rng.choice(["all", "0 9 in 3", "0 1 in 1", "9 9 all 9", "%s" * 50, None, 7]),
                      "output": rng.choice([f"{canary}/out", "/tmp/x", "../x", None]),
                      "loglevel": rng.choice([0, 5, -1, "x", 10**20]), "vfd_rid": rng.choice(["r", 5, None])}
            yield json.dumps({"action": rng.choice(actions), "params": params}).encode()


def test_thousands_of_hostile_requests_change_nothing(vfd, tmp_path):
    canary = tmp_path / "canary"
    canary.mkdir()
    for n in range(2):
        assert vfd.add(f"p{n}", vf_config("0000:07:00.0", n, name=f"p{n}")).returncode == 0
    before = vfd.snapshot()
    rng = random.Random(7)
    fd = os.open(vfd.fifo, os.O_WRONLY)
    try:
        sent = 0
        for payload in hostile_requests(vfd, rng, 3000, str(canary)):
            os.write(fd, payload + rng.choice([b"", b"\n", b"\n\n"]))
            sent += 1
        # one 1 MiB request, written from a thread: the pipe holds 64 KiB at a time
        big = b'{"action": "add", "params": {"r_fifo": "x", "filename": "' + b"A" * (1 << 20) + b'"}}'
        t = threading.Thread(target=os.write, args=(fd, big))
        t.start()
        t.join(30)
        assert not t.is_alive()
    finally:
        os.close(fd)
    assert sent == 3000
    for _ in range(3):
        assert vfd.iplex("ping", timeout=20).returncode == 0
    after = vfd.snapshot()
    for name in before["sim"]:
        b, a = json.loads(before["sim"][name]), json.loads(after["sim"][name])
        for vf in b["vfs"]:
            assert a["vfs"][vf] == b["vfs"][vf], (name, vf, b["vfs"][vf], a["vfs"][vf])
        assert a == b
    assert after["live"] == before["live"]
    assert sorted(after["config"]) == sorted(before["config"])
    assert list(canary.iterdir()) == []
    assert not os.path.exists("/tmp/x")
    assert vfd.proc.poll() is None
