"""Request framing and dispatch of the FIFO server, without a daemon: replies are captured."""

import json

import pytest

from vfd.daemon.server import RequestServer
from vfd.protocol import MAX_REQUEST_BYTES, decode_response, encode_response


class Capture(RequestServer):
    def __init__(self):
        super().__init__(loop=None, fifo_path="/tmp/vfd-test/request", handler=self.handle)
        self.replies = []
        self.handled = []

    def handle(self, action, params, requester_uid):
        self.handled.append((action, params))
        return True, [f"did {action}"], None

    def _reply(self, r_fifo, rid, ok, lines, data=None):
        self.replies.append((r_fifo, rid, ok, lines))

    def feed(self, data: bytes):
        self.buf += data
        self._drain()


def req(action, **params):
    return json.dumps({"action": action, "params": {"r_fifo": "/tmp/vfd-test/r1", **params}}).encode()


def test_several_requests_in_one_read():
    s = Capture()
    s.feed(req("ping") + b"\n\n" + req("show", resource="all") + b"\n" + req("dump"))
    assert [a for a, _ in s.handled] == ["ping", "show", "dump"]


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
                                     b'{"action": 7, "params": 9}\n', b'{"params": {}}\n'])
def test_garbage_without_reply_fifo_is_dropped_and_server_continues(garbage):
    s = Capture()
    s.feed(garbage + b"\n" + req("ping"))
    assert [a for a, _ in s.handled] == ["ping"]


def test_malformed_json_with_reply_fifo_gets_error():
    s = Capture()
    s.feed(b'{"action": "ping", "params": {"r_fifo": "/tmp/vfd-test/r9", oops}\n' + req("ping"))
    assert s.replies[0][0] == "/tmp/vfd-test/r9" and s.replies[0][2] is False
    assert s.handled and s.handled[0][0] == "ping"


def test_oversized_request_is_discarded():
    s = Capture()
    s.feed(b'{"action": "add", "params": {"r_fifo": "/tmp/vfd-test/r2", "x": "' + b"a" * (MAX_REQUEST_BYTES + 10))
    assert s.buf == b"" and s.replies and s.replies[0][2] is False
    s.feed(req("ping"))
    assert s.handled[-1][0] == "ping"


def test_bad_types_in_params():
    s = Capture()
    s.feed(json.dumps({"action": "ping", "params": {"r_fifo": 5}}).encode())
    assert not s.handled and not s.replies
    s.feed(json.dumps({"action": ["add"], "params": {"r_fifo": "/tmp/vfd-test/r"}}).encode())
    assert s.replies[-1][2] is False


def test_reply_path_confined_to_fifo_dir():
    s = Capture()
    assert s._reply_path("/etc/passwd") is None
    assert s._reply_path("/tmp/vfd-test/../x") is None
    assert s._reply_path("/tmp/vfd-test/request") is None
    assert s._reply_path("/tmp/vfd-test/r1") == "/tmp/vfd-test/r1"
    assert s._reply_path("r2") == "/tmp/vfd-test/r2"


def test_response_is_valid_json_with_escapes():
    raw = encode_response('r"1', False, ['quote " and \\ and\nnewline', "two"]).decode()
    assert raw.endswith("@eom@\n")
    d = decode_response(raw)
    assert d["msg"] == ['quote " and \\ and\nnewline', "two"] and d["state"] == "ERROR" and d["vfd_rid"] == 'r"1'
