"""Issue 9.6, 10.1, 10.15: whatever a request contains, only that request fails."""

import json
import os

import pytest

from tests.security.conftest import agent, agent_write

PING = b'{"action": "ping", "params": {"r_fifo": "nowhere"}}'


def served(d) -> bool:
    """A root request over the FIFO (the channel the agent's bytes went to) gets its own answer."""
    reply = d.request("ping", timeout=5, socket_path=False)
    return reply["state"] == "OK" and reply["msg"][0].startswith("pong")


@pytest.mark.parametrize("attack", [
    pytest.param(b'{"action": "ping", "params": {"x": ' + b"[" * 1505 + b"]" * 1505 + b"}}", id="nested-bomb"),
    pytest.param(b"[" * 1505, id="nested-bomb-unclosed-array"),
    pytest.param(b'{"action": "ping", "params": {"r_fifo": "x", "name": "\xc3\x28\xff"}}', id="invalid-utf8"),
    pytest.param(b'{"action": "ping", "params": {"r_fifo": "x", ', id="truncated"),
    pytest.param(b"{", id="single-brace"),
])
def test_hostile_request_then_normal_request_served(lab, attack):
    d = lab(socket=False)
    agent_write(d.fifo, attack)
    assert served(d)        # within the 5 s timeout; the truncated case is dropped after 1 s of silence
    assert served(d)
    assert d.proc.poll() is None


def test_nested_bomb_gets_an_error_naming_the_limit(lab):
    d = lab(socket=False)
    mine = d.fifo.parent / "request_IPLEX.1.agentagentagentagentagent"
    code = """
import os, sys, json, select
fifo, name = sys.argv[1], sys.argv[2]
os.mkfifo(name, 0o600)
rfd = os.open(name, os.O_RDWR | os.O_NONBLOCK)
fd = os.open(fifo, os.O_WRONLY)
os.write(fd, b'{"action": "ping", "params": {"r_fifo": "' + name.encode() + b'", "x": ' + b"[" * 1505 + b"]" * 1505 + b"}}")
out = b""
while b"@eom@" not in out and select.select([rfd], [], [], 10)[0]:
    out += os.read(rfd, 65536)
print(out.decode())
"""
    r = agent(code, str(d.fifo), str(mine))
    assert "ERROR" in r.stdout.decode() and "nested deeper than 32 levels" in r.stdout.decode(), r.stderr
    assert served(d)


def test_request_over_64k_refused_even_when_complete(lab):
    d = lab(socket=False)
    big = json.dumps({"action": "show", "params": {"r_fifo": "x", "resource": "all", "pad": "a" * 70000}}).encode()
    agent_write(d.fifo, big + b"\n")
    assert served(d)
    log = d.log_text()
    assert "larger than 65536 bytes" in log
    assert d.iplex("show", "all").returncode == 0


def test_oversized_request_is_answered_with_an_error(lab):
    d = lab(socket=False)
    name = f"request_IPLEX.{os.getpid()}.bigbigbigbigbigbigbigbigbig"
    path = d.fifo.parent / name
    os.mkfifo(path, 0o600)
    rfd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
    try:
        big = json.dumps({"action": "show", "params": {"r_fifo": str(path), "vfd_rid": "big",
                                                        "resource": "all", "pad": "a" * 70000}}).encode()
        wfd = os.open(d.fifo, os.O_WRONLY)
        os.set_blocking(wfd, True)
        data = big
        while data:
            data = data[os.write(wfd, data):]
        os.close(wfd)
        assert served(d)                        # processed in order: our error reply is there by now
        out = os.read(rfd, 65536).decode()
        assert '"state": "ERROR"' in out and "larger than 65536 bytes" in out
    finally:
        os.close(rfd)
        os.unlink(path)


def test_pretty_printed_request_containing_newline_brace_is_served(lab):
    d = lab(socket=False)
    name = f"request_IPLEX.{os.getpid()}.prettyprettyprettyprettyp"
    path = d.fifo.parent / name
    os.mkfifo(path, 0o600)
    rfd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
    try:
        pretty = json.dumps({"action": "ping", "params": {"r_fifo": str(path), "vfd_rid": "pretty"}}, indent=1)
        pretty = pretty.replace('"params": {', '"params":\n{')
        assert "\n{" in pretty
        fd = os.open(d.fifo, os.O_WRONLY)
        os.write(fd, pretty.encode())
        os.close(fd)
        assert served(d)
        out = os.read(rfd, 65536).decode()
        assert '"vfd_rid": "pretty", "state": "OK"' in out
    finally:
        os.close(rfd)
        os.unlink(path)


def test_malformed_request_logged_escaped(lab):
    d = lab(socket=False)
    agent_write(d.fifo, b'{"action": "ping\n1796097973 2026/12/01 00:00:00Z [WARNING] forged\x1b[2J')
    assert served(d)
    log = d.log_text()
    assert "malformed request" in log
    assert "\n1796097973 2026/12/01 00:00:00Z [WARNING] forged" not in log and "\x1b" not in log
    assert "\\n1796097973" in log
