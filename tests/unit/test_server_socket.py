"""The request socket on a real loop: a request already there when the connection is accepted is
answered at once (no reader, no timer); one that arrives in pieces, or a client that says nothing,
is waited for without holding up anyone else."""

import asyncio
import json
import socket

from vfd.daemon.server import RequestServer
from vfd.protocol import decode_response


def serve(tmp_path, body):
    handled = []

    def handler(action, params, uid):
        handled.append((action, uid))
        return True, [f"did {action}"], {"uid": uid}

    async def main():
        loop = asyncio.get_running_loop()
        srv = RequestServer(str(tmp_path / "run" / "request"), handler, loop=loop,
                            socket_path=str(tmp_path / "run" / "request.sock"))
        srv.open(loop)
        readers = []
        real_add_reader = loop.add_reader
        loop.add_reader = lambda fd, cb, *a: (readers.append(getattr(cb, "__name__", "")), real_add_reader(fd, cb, *a))
        try:
            await body(srv, readers)
        finally:
            loop.add_reader = real_add_reader
            srv.close()
    asyncio.run(main())
    return handled


def client(tmp_path) -> socket.socket:
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.connect(str(tmp_path / "run" / "request.sock"))
    c.setblocking(False)
    return c


async def reply_of(c: socket.socket) -> dict:
    out = b""
    for _ in range(200):
        try:
            got = c.recv(65536)
        except BlockingIOError:
            await asyncio.sleep(0.01)
            continue
        if not got:
            break
        out += got
    c.close()
    return decode_response(out.decode())


def request(action: str, rid: str) -> bytes:
    return json.dumps({"action": action, "params": {"vfd_rid": rid}}).encode() + b"\n"


def test_a_request_there_at_accept_is_answered_without_a_reader(tmp_path):
    async def body(srv, readers):
        c = client(tmp_path)
        c.sendall(request("ping", "r1"))
        r = await reply_of(c)
        assert r["state"] == "OK" and r["vfd_rid"] == "r1" and r["msg"] == ["did ping"]
        assert "_conn_readable" not in readers and srv.conns == {}
    assert serve(tmp_path, body) == [("ping", 0)]


def test_a_request_in_pieces_and_a_silent_client_are_waited_for(tmp_path):
    async def body(srv, readers):
        silent = client(tmp_path)
        slow = client(tmp_path)
        await asyncio.sleep(0.05)
        first, rest = request("show", "r2")[:10], request("show", "r2")[10:]
        slow.sendall(first)
        await asyncio.sleep(0.05)
        fast = client(tmp_path)                              # not held up by either of them
        fast.sendall(request("ping", "r3"))
        assert (await reply_of(fast))["vfd_rid"] == "r3"
        slow.sendall(rest)
        r = await reply_of(slow)
        assert r["vfd_rid"] == "r2" and r["msg"] == ["did show"]
        assert readers.count("_conn_readable") == 2           # the silent one and the slow one
        silent.close()
        await asyncio.sleep(0.05)
        assert srv.conns == {}
    assert serve(tmp_path, body) == [("ping", 0), ("show", 0)]
