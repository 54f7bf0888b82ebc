"""Request framing and dispatch of the FIFO server, without a daemon: replies are captured."""

import json
import os
import stat

import pytest

from vfd.daemon.rundir import RunDir, RunDirError
from vfd.daemon.server import RequestServer
from vfd.protocol import (MAX_DEPTH, MAX_REQUEST_BYTES, decode_response, decode_responses, drop_unfinished,
                          encode_response, frame, printable)


class Capture(RequestServer):
    def __init__(self):
        super().__init__(fifo_path="/tmp/vfd-test/request", handler=self.handle)
        self.replies = []
        self.handled = []

    def handle(self, action, params, requester_uid):
        self.handled.append((action, params))
        return True, [f"did {action}"], None

    def _reply(self, name, rid, ok, lines, data=None):
        self.replies.append((name, rid, ok, lines))

    def feed(self, data: bytes):
        self.buf += data
        self._drain()


def req(action, **params):
    return json.dumps({"action": action, "params": {"r_fifo": "/tmp/vfd-test/r1", **params}}).encode()


def test_several_requests_in_one_read():
    s = Capture()
    s.feed(req("ping") + b"\n\n" + req("show", resource="all") + b"\n" + req("dump") + req("ping"))
    assert [a for a, _ in s.handled] == ["ping", "show", "dump", "ping"]


def test_request_split_across_reads():
    s = Capture()
    data = req("ping", vfd_rid="abc")
    s.feed(data[:10])
    assert not s.handled
    s.feed(data[10:])
    assert s.handled[0][0] == "ping" and s.replies[0][1] == "abc"


def test_full_action_names_only():
    s = Capture()
    s.feed(req("delete_everything") + b"\n" + req("Dump") + b"\n" + req("s"))
    assert [a for a, _ in s.handled] == ["dump"]
    assert [r[2] for r in s.replies] == [False, True, False]
    assert "unrecognised request" in s.replies[0][3][0]


@pytest.mark.parametrize("garbage", [b"\x00\xff\xfe garbage", b"[1,2,3]\n", b'"just a string"\n', b"{{{{",
                                     b'{"action": 7, "params": 9}\n', b'{"params": {}}\n', b"{" * 5000,
                                     b"[" * 100000, b'{"action": "ping", "params": {"r_fifo": "x", ',
                                     b'{"action": "ping", "params": {"r_fifo": "/tmp/vfd-test/r1", "x": "\xff"}}'])
def test_garbage_only_fails_itself(garbage):
    s = Capture()
    s.feed(garbage + b"\n" + req("ping"))
    assert [a for a, _ in s.handled] == ["ping"] and s.buf == b""


def test_nesting_bomb_refused_before_parsing():
    s = Capture()
    bomb = b'{"action": "ping", "params": {"r_fifo": "/tmp/vfd-test/r9", "x": ' + b"[" * 1505 + b"]" * 1505 + b"}}"
    s.feed(bomb + req("ping"))
    assert s.replies[0][0] == "r9" and s.replies[0][2] is False
    assert f"deeper than {MAX_DEPTH}" in s.replies[0][3][0]
    assert [a for a, _ in s.handled] == ["ping"]


def test_depth_limit_is_exact():
    ok = b'{"action": "ping", "params": {"r_fifo": "r", "x": ' + b"[" * (MAX_DEPTH - 2) + b"]" * (MAX_DEPTH - 2) + b"}}"
    items, rest = frame(ok)
    assert items[0].request is not None and rest == b""
    deep = ok.replace(b'"x": ', b'"x": [').replace(b"]}}", b"]]}}")
    items, _ = frame(deep)
    assert items[0].request is None and "deeper" in items[0].error


def test_invalid_utf8_refused_and_next_served():
    s = Capture()
    s.feed(b'{"action": "ping", "params": {"r_fifo": "/tmp/vfd-test/r9", "x": "\xc3\x28"}}' + req("ping"))
    assert s.replies[0][2] is False and "UTF-8" in s.replies[0][3][0]
    assert [a for a, _ in s.handled] == ["ping"]


def test_unfinished_request_then_next_one_in_the_same_read():
    s = Capture()
    s.feed(b'{"action": "ping", "params": {"r_fifo": "/tmp/vfd-test/r9", "x": {' + req("show", resource="pfs"))
    assert [a for a, _ in s.handled] == ["show"] and s.buf == b""
    assert s.replies[0][0] == "r9" and "unfinished" in s.replies[0][3][0]


def test_unfinished_request_kept_until_dropped():
    s = Capture()
    s.feed(b'{"action": "ping", "params": {"r_fifo": "/tmp/vfd-test/r9", ')
    assert s.buf and not s.replies
    item, rest = drop_unfinished(s.buf)
    assert "unfinished" in item.error and rest == b""


def test_pretty_printed_request_with_newline_brace_is_served():
    s = Capture()
    pretty = json.dumps({"action": "show", "params": {"r_fifo": "/tmp/vfd-test/r1", "resource": "all",
                                                       "x": {"y": [1, {"z": 2}]}}}, indent=2).encode()
    assert b"\n{" in pretty.replace(b"\n  ", b"\n").replace(b"\n ", b"\n") or b"{\n" in pretty
    s.feed(pretty.replace(b": {", b":\n{") + b"\n" + req("ping"))
    assert [a for a, _ in s.handled] == ["show", "ping"]


def test_oversized_request_is_refused_even_when_complete():
    s = Capture()
    big = req("ping", x="a" * (MAX_REQUEST_BYTES + 10))
    s.feed(big + b"\n" + req("dump"))
    assert s.replies[0][2] is False and "larger than" in s.replies[0][3][0]
    assert [a for a, _ in s.handled] == ["dump"]
    exact = req("ping", x="")
    exact = req("ping", x="a" * (MAX_REQUEST_BYTES - len(exact)))
    assert len(exact) == MAX_REQUEST_BYTES
    s.feed(exact)
    assert s.handled[-1][0] == "ping"


def test_oversized_request_arriving_in_pieces_is_discarded():
    s = Capture()
    s.feed(b'{"action": "add", "params": {"r_fifo": "/tmp/vfd-test/r2", "x": "' + b"a" * (MAX_REQUEST_BYTES + 10))
    assert s.buf == b"" and s.replies and s.replies[0][2] is False
    s.feed(b"a" * 1000 + b'"}}\n' + req("ping"))
    assert s.handled[-1][0] == "ping"


def test_bad_types_in_params():
    s = Capture()
    s.feed(json.dumps({"action": "ping", "params": {"r_fifo": 5}}).encode())
    assert not s.handled and not s.replies
    s.feed(json.dumps({"action": ["add"], "params": {"r_fifo": "/tmp/vfd-test/r"}}).encode())
    assert s.replies[-1][2] is False


def test_handler_exception_fails_only_that_request():
    s = Capture()
    calls = []

    def boom(action, params, uid):
        calls.append(action)
        if action == "dump":
            raise RecursionError("deep")
        return True, ["ok"], None
    s.handler = boom
    s.feed(req("dump") + req("ping"))
    assert calls == ["dump", "ping"] and s.replies[0][2] is False and s.replies[1][2] is True


def test_reply_path_confined_to_fifo_dir():
    r = RunDir("/tmp/vfd-test/request")
    assert r.reply_name("/etc/passwd") is None
    assert r.reply_name("/tmp/vfd-test/../x") is None
    assert r.reply_name("/tmp/vfd-test/request") is None
    assert r.reply_name("/tmp/vfd-test/r1") == "r1"
    assert r.reply_name("r2") == "r2"
    assert r.reply_name("sub/r2") is None


def test_response_is_valid_json_with_escapes():
    raw = encode_response('r"1', False, ['quote " and \\ and\nnewline', "two"]).decode()
    assert raw.endswith("@eom@\n")
    d = decode_response(raw)
    assert d["msg"] == ['quote " and \\ and\nnewline', "two"] and d["state"] == "ERROR" and d["vfd_rid"] == 'r"1'


def test_decode_responses_picks_each_reply():
    raw = (encode_response("a", True, ["x"]) + encode_response("b", True, ["y"], {"k": 1})).decode()
    assert [r["vfd_rid"] for r in decode_responses(raw)] == ["a", "b"]


def test_printable_escapes_line_breaks_and_controls():
    assert printable("a\nfree\x1b[2J\u2028z") == "a\\nfree\\x1b[2J\\u2028z"
    assert printable("plain ok") == "plain ok"


# ---- the run directory ---------------------------------------------------------------------------
def test_planted_regular_file_at_fifo_path_is_refused_and_kept(tmp_path):
    (tmp_path / "request").write_text("precious")
    with pytest.raises(RunDirError, match=r"request: exists and is a regular file, not a FIFO"):
        RunDir(str(tmp_path / "request")).prepare()
    assert (tmp_path / "request").read_text() == "precious"


def test_symlink_at_fifo_path_is_refused(tmp_path):
    target = tmp_path / "target"
    target.write_text("x")
    (tmp_path / "request").symlink_to(target)
    with pytest.raises(RunDirError, match="is a symlink"):
        RunDir(str(tmp_path / "request")).prepare()
    assert (tmp_path / "request").is_symlink() and stat.S_IMODE(target.stat().st_mode) != 0o620


def test_fifo_dir_that_is_a_file_is_one_clear_error(tmp_path):
    (tmp_path / "afile").write_text("")
    with pytest.raises(RunDirError) as e:
        RunDir(str(tmp_path / "afile" / "run" / "request")).prepare()
    assert str(e.value) == f"fifo {tmp_path}/afile/run/request: {tmp_path}/afile is not a directory"


def test_created_run_dir_is_1730_and_trusted(tmp_path):
    r = RunDir(str(tmp_path / "run" / "request"))
    r.prepare()
    assert stat.S_IMODE(os.stat(tmp_path / "run").st_mode) == 0o1730 and r.trusted
    st = os.stat(tmp_path / "run" / "request")
    assert stat.S_ISFIFO(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o620
    r.close()


def test_listable_run_dir_is_not_trusted(tmp_path):
    os.chmod(tmp_path, 0o1755)
    r = RunDir(str(tmp_path / "request"))
    r.prepare()
    name = "request_IPLEX.1.AAAAAAAAAAAAAAAAAAAAAAAA"
    os.mkfifo(tmp_path / name)
    assert not r.trusted and r.requester(name) is None
    os.chmod(tmp_path, 0o1730)
    r2 = RunDir(str(tmp_path / "request"))
    r2.prepare()
    assert r2.trusted and r2.requester(name) == os.geteuid()
    assert r2.requester("request_IPLEX.1") is None              # guessable name: not trusted
    r.close()
    r2.close()


def test_stale_reply_fifos_removed_only_for_dead_pids(tmp_path):
    r = RunDir(str(tmp_path / "request"))
    r.prepare()
    dead = 4194303
    names = {f"request_IPLEX.{dead}.x": "fifo", f"request_IPLEX.{os.getpid()}.y": "fifo",
             f"request_IPLEX.{dead}": "fifo", f"request_IPLEX.{dead}.file": "file", "other": "fifo"}
    for n, kind in names.items():
        os.mkfifo(tmp_path / n) if kind == "fifo" else (tmp_path / n).write_text("")
        os.utime(tmp_path / n, (1, 1))
    (tmp_path / f"request_IPLEX.{dead}.link").symlink_to(tmp_path / "other")
    assert r.remove_stale() == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["request", f"request_IPLEX.{os.getpid()}.y", f"request_IPLEX.{dead}.file", "other",
         f"request_IPLEX.{dead}.link"])
    r.close()


@pytest.mark.parametrize("stream", [
    req("ping") + req("show", resource="all"),
    b'{\n  "action": "add",\n  "params": {"filename": "a{b}[c]\\"d", "r_fifo": "/tmp/vfd-test/r1"}\n}\n\n' + req("ping"),
    req("ping")[:-3],                                              # unfinished
    b'{"action": "ping", "params": {"x": ' + b"[" * 40 + b"]" * 40 + b"}}",   # deeper than MAX_DEPTH
    b'{"action": "ping", "params": {"x": ' + b"[" * 20 + b"]" * 20 + b"}}" + req("ping"),
    b'{"action": "ping", "params": {"r_fifo": "x", "name": "\xc3\xa9t\xc3\xa9"}}' + req("ping"),  # UTF-8
    b'{"action": "ping", "params": {"x": NaN, "y": 1e400}}',
    b'{"action": "ping", "params": {}} garbage ' + req("ping"),
    b'{"action": "ping", "params": {"a": 1,}}' + req("ping"),       # invalid JSON, then a request
])
def test_the_c_parser_shortcut_frames_exactly_as_the_scanner(stream, monkeypatch):
    import vfd.protocol as protocol
    fast = frame(stream)
    monkeypatch.setattr(protocol, "_whole", lambda *a: None)
    slow = frame(stream)
    assert [(f.raw, f.request, f.error) for f in fast[0]] == [(f.raw, f.request, f.error) for f in slow[0]]
    assert fast[1] == slow[1]
