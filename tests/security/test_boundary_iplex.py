"""The iplex side of the boundary: its reply FIFO, closed stdout, options, printing outside data."""

import json
import os
import signal
import subprocess

import pytest

import vfd.iplex
from tests.vfdlab import BIN


def _default_signals():
    """As from an interactive shell (a background job starts with SIGINT ignored)."""
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL)


def test_iplex_killed_by_sigterm_removes_its_reply_fifo(lab):
    d = lab(socket=False)
    run = d.fifo.parent
    os.kill(d.proc.pid, signal.SIGSTOP)         # requests wait unread: iplex sits waiting for its reply
    try:
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            p = subprocess.Popen([str(BIN / "iplex"), "--conf", str(d.conf), "--timeout", "60", "ping"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=_default_signals)
            mine = []
            while not mine and p.poll() is None:    # made after iplex set its signal handlers
                mine = [n for n in os.listdir(run) if n.startswith(f"request_IPLEX.{p.pid}")]
            assert mine, p.communicate()
            p.send_signal(sig)
            assert p.wait(30) == 128 + sig
            assert not os.path.exists(run / mine[0]), sig
            assert b"Traceback" not in p.stderr.read()
    finally:
        os.kill(d.proc.pid, signal.SIGCONT)


def test_iplex_into_a_closed_pipe_exits_quietly(lab):
    d = lab()
    r, w = os.pipe()
    os.close(r)                                 # `iplex show all | true` where true has already gone
    p = subprocess.run([str(BIN / "iplex"), "--conf", str(d.conf), "show", "all"], stdout=w,
                       stderr=subprocess.PIPE, timeout=60)
    os.close(w)
    assert p.stderr == b"" and p.returncode == 128 + signal.SIGPIPE
    out = subprocess.run(f"{BIN}/iplex --conf {d.conf} show all | true", shell=True, capture_output=True,
                         timeout=60)
    assert out.stderr == b""


def test_verbose_needs_a_level_in_range(lab):
    d = lab()
    for args in (["verbose"], ["--loglevel", "9", "verbose"], ["verbose", "--loglevel=-1"],
                 ["--loglevel", "x", "ping"]):
        r = d.iplex(*args)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
    assert "verbose needs --loglevel" in d.iplex("verbose").stderr
    assert "outside the range 0..5" in d.iplex("--loglevel", "9", "verbose").stderr
    assert d.iplex("--loglevel", "5", "verbose").returncode == 0


# ---- what iplex prints, with a stand-in daemon reply ----------------------------------------------
@pytest.fixture
def reply(monkeypatch, tmp_path, capsys):
    conf = tmp_path / "vfd.cfg"
    conf.write_text(json.dumps({"fifo": str(tmp_path / "request"), "config_dir": str(tmp_path / "config")}))
    sent = {}

    def run(answer, *argv):
        def fake(fifo, action, timeout, **params):
            sent.update(params, action=action)
            return answer
        monkeypatch.setattr(vfd.iplex, "request", fake)
        rc = vfd.iplex.main(["--conf", str(conf), *argv])
        out = capsys.readouterr()
        return rc, out.out, out.err, sent
    return run


def test_export_prints_the_config_text_and_sends_no_output_path(reply):
    text = '{\n  "name": "vm1",\n  "vfid": 1\n}\n'
    rc, out, err, sent = reply({"state": "OK", "msg": ["exported vm1"], "data": {"config": text}}, "export", "vm1")
    assert rc == 0 and out == text and "output" not in sent and sent["filename"] == "vm1.json"


def test_status_exit_code_follows_in_sync(reply):
    base = {"state": "OK", "msg": ["vm1: status"]}
    assert reply({**base, "data": {"in_sync": False, "fields": []}}, "status", "vm1")[0] == 1
    assert reply({**base, "data": {"in_sync": True, "fields": []}}, "status", "vm1")[0] == 0


def test_outside_text_in_reply_lines_is_escaped(reply):
    rc, out, err, _ = reply({"state": "OK", "msg": ["pf 0 vf 1 live evil\npf 0 vf 2 free\x1b[2J"]}, "show", "pci")
    assert out == "pf 0 vf 1 live evil\\npf 0 vf 2 free\\x1b[2J\n"


def test_json_prints_the_whole_reply_with_data(reply):
    answer = {"action": "response", "vfd_rid": "r", "state": "OK", "msg": ["x"], "data": {"in_sync": True}}
    rc, out, _, _ = reply(answer, "--json", "status", "vm1")
    assert json.loads(out) == answer
