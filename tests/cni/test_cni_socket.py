"""vfd's CNI socket and the static front end (vfd/daemon/cni.py, vfd/integrations/cni/wire.py,
tools/cni-frontend/vfd-cni.c): who may ask, what a malformed request gets, the front end with no
daemon, and a command that takes long neither blocking the daemon nor holding up its stop."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cni.cnilab import PLUGIN, fake_vf_sysfs, run_plugin
from tests.vfdlab import VfdProcess, sim_pf
from vfd.integrations.cni import wire
from vfd.model.mainconfig import DEFAULT_CNI_SOCKET

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "tools" / "cni-frontend" / "vfd-cni.c"
PF = "0000:07:00.0"
NO_NETDEV_VF = "0000:07:10.6"

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (the CNI socket serves root only)")


def test_front_end_and_daemon_agree_on_the_default_socket_and_the_variables():
    src = SOURCE.read_text()
    assert re.search(r'#define VFD_CNI_SOCKET_DEFAULT "([^"]+)"', src).group(1) == DEFAULT_CNI_SOCKET
    names = re.search(r"ENV_NAMES\[\] = \{[^}]*\}", src).group(0)
    assert tuple(re.findall(r'"([A-Z_]+)"', names)) == wire.ENV_NAMES
    assert "MAX_STDIN (1u << 20)" in src and wire.MAX_STDIN == 1 << 20
    assert wire.MAX_REPLY == (1 << 20) + (64 << 10) + 12 and "MAX_REPLY ((1u << 20) + (64u << 10) + 12)" in src


def _program_header_types(path: str) -> set[int]:
    """p_type of every program header of a 64-bit little-endian ELF file."""
    data = Path(path).read_bytes()
    assert data[:6] == b"\x7fELF\x02\x01", "not a 64-bit little-endian ELF file"
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    return {struct.unpack_from("<I", data, phoff + i * phentsize)[0] for i in range(phnum)}


def test_front_end_is_a_static_binary():
    """No PT_INTERP (no dynamic loader) and no PT_DYNAMIC: it runs on a node with no libraries of ours."""
    PT_DYNAMIC, PT_INTERP = 2, 3
    types = _program_header_types(PLUGIN)
    assert PT_INTERP not in types and PT_DYNAMIC not in types, types
    assert PT_INTERP in _program_header_types(sys.executable) or PT_DYNAMIC in _program_header_types(sys.executable)


@pytest.mark.parametrize("command,code", [("ADD", 11), ("DEL", 11), ("STATUS", 50)])
def test_front_end_without_a_daemon_prints_a_cni_error_naming_the_socket(tmp_path, command, code):
    # a path longer than sun_path's 108 bytes too: the front end connects through the directory
    for sock in (tmp_path / "cni.sock", tmp_path / ("d" * 120) / "cni.sock"):
        sock.parent.mkdir(exist_ok=True)
        rc, out, err = run_plugin(command, {"cniVersion": "0.4.0", "name": "n", "type": "vfd-cni"}, "c1",
                                  "/var/run/netns/x", extra_env={"VFD_CNI_SOCKET": str(sock)})
        assert rc == 1, (out, err)
        assert out["cniVersion"] == "0.4.0" and out["code"] == code
        assert out["msg"] == f"vfd is not answering: cannot connect to its CNI socket {sock}: No such file or directory"


@pytest.fixture
def lab(tmp_path):
    fake_vf_sysfs(tmp_path / "sys", PF, {3: (NO_NETDEV_VF, None)})
    d = VfdProcess(tmp_path / "vfd", [sim_pf(PF, 8, "ixgbe", speed=10000)],
                   cni_socket=str(tmp_path / "cnisock" / "cni.sock"))
    d.cni_socket = tmp_path / "cnisock" / "cni.sock"
    d.start()
    d.env = {"VFD_CNI_SOCKET": str(d.cni_socket), "VFD_CNI_SYSFS": str(tmp_path / "sys")}
    yield d
    d.stop()


def _ask(path: Path, data: bytes, shut: bool = True) -> tuple[int, dict | None]:
    """Send raw bytes to the CNI socket; the reply's exit code and its stdout as JSON."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(20)
        s.connect(str(path))
        s.sendall(data)
        if shut:
            s.shutdown(socket.SHUT_WR)
        got = b""
        while chunk := s.recv(65536):
            got += chunk
    rc, out, _ = wire.decode_reply(got)
    return rc, json.loads(out) if out else None


def _version_works(d) -> bool:
    rc, out, err = run_plugin("VERSION", {"cniVersion": "1.0.0"}, extra_env=d.env)
    return rc == 0 and "1.0.0" in out["supportedVersions"]


@root_only
def test_socket_is_root_only(lab):
    st = os.stat(lab.cni_socket)
    assert (oct(st.st_mode & 0o777), st.st_uid) == ("0o600", 0)


@root_only
@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv to connect as another user")
def test_a_non_root_peer_is_refused_by_its_credentials_and_logged(lab):
    os.chmod(lab.cni_socket, 0o666)         # as if the mode were wrong: the peer's uid still decides
    os.chmod(lab.cni_socket.parent, 0o755)
    # the front end itself, run as nobody: vfd answers before reading the request, and the front end
    # prints that answer even when its own write failed (EPIPE)
    code = ("import os,sys; os.environ['VFD_CNI_SOCKET'] = sys.argv[1]; "
            "os.execv(sys.argv[2], [sys.argv[2]])")
    req = b'{"cniVersion": "1.0.0"}'
    dfd = os.open(lab.cni_socket.parent, os.O_PATH | os.O_DIRECTORY)    # past pytest's 0700 tmp directories
    try:
        p = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "/usr/bin/python3",
                            "-c", code, f"/proc/self/fd/{dfd}/cni.sock", PLUGIN], input=req, capture_output=True,
                           timeout=30, pass_fds=(dfd,), env={"CNI_COMMAND": "VERSION", "PATH": "/usr/bin:/bin"})
    finally:
        os.close(dfd)
    err = json.loads(p.stdout)
    assert p.returncode == 1 and err["code"] == 107 and "root only" in err["msg"] and "uid 65534" in err["msg"], err
    assert re.search(r"CNI request from uid 65534 \(pid \d+\) refused", lab.log_text())
    assert _version_works(lab)


def _frame(body: bytes, magic: bytes = wire.REQUEST_MAGIC) -> bytes:
    return wire.HEADER.pack(magic, len(body)) + body


def _var(s: bytes) -> bytes:
    return struct.pack(">I", len(s)) + s


@root_only
@pytest.mark.parametrize("data,code,words", [
    (b"GET / HTTP/1.0\r\n\r\n", 7, "not a vfd-cni request"),
    (wire.HEADER.pack(wire.REQUEST_MAGIC, wire.MAX_REQUEST + 1), 4, "over the limit"),
    (_frame(struct.pack(">I", 99)), 7, "carries 99 environment variables"),
    (_frame(struct.pack(">I", 1) + _var(b"LD_PRELOAD=/tmp/x.so") + _var(b"{}")), 7, "'LD_PRELOAD' is not one"),
    (_frame(struct.pack(">I", 2) + _var(b"CNI_COMMAND=ADD") + _var(b"CNI_COMMAND=DEL") + _var(b"{}")), 7,
     "CNI_COMMAND is given twice"),
    (_frame(struct.pack(">I", 1) + struct.pack(">I", wire.MAX_VAR + 1)), 7, "variable 0 is 16385 bytes"),
    (_frame(struct.pack(">II", 0, wire.MAX_STDIN + 1)), 4, "at most 1048576"),
    (_frame(struct.pack(">II", 0, 10) + b"{}"), 7, "truncated request: stdin needs 10 bytes"),
    (_frame(struct.pack(">I", 0) + _var(b"{}") + b"xx"), 7, "2 bytes after the request's end"),
    (_frame(struct.pack(">I", 0))[:6], 7, "truncated request: the connection closed after 6 bytes"),
    (wire.encode_request({"CNI_COMMAND": "VERSION"}, b"{}") + b"z", 7, "1 bytes after the request's end"),
])
def test_malformed_requests_get_a_cni_error_and_the_daemon_serves_on(lab, data, code, words):
    rc, out = _ask(lab.cni_socket, data)
    assert rc == 1 and out["code"] == code and words in out["msg"], out
    assert _version_works(lab)
    assert lab.proc.poll() is None


@root_only
def test_an_incomplete_request_is_answered_after_the_read_deadline(lab):
    t0 = time.monotonic()
    rc, out = _ask(lab.cni_socket, wire.HEADER.pack(wire.REQUEST_MAGIC, 100) + bytes(10), shut=False)
    assert rc == 1 and out["code"] == 7 and "incomplete request" in out["msg"], out
    assert 4 < time.monotonic() - t0 < 15
    assert _version_works(lab)


def _slow_ipam(tmp_path: Path, seconds: int) -> tuple[Path, Path]:
    """An IPAM plugin that says it started (a file) and then takes `seconds`."""
    d = tmp_path / "cnibin"
    d.mkdir()
    mark = tmp_path / "ipam-started"
    (d / "slow-ipam").write_text(f"#!/bin/sh\ntouch {mark}\nsleep {seconds}\n"
                                 "echo '{\"cniVersion\": \"1.0.0\", \"ips\": []}'\n")
    os.chmod(d / "slow-ipam", 0o755)
    return d, mark


def _wait(cond, what: str, limit: float = 20.0) -> None:
    deadline = time.monotonic() + limit
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


def _slow_add(lab, tmp_path, seconds):
    cni_bin, mark = _slow_ipam(tmp_path, seconds)
    conf = {"cniVersion": "1.0.0", "name": "slow", "type": "vfd-cni", "deviceID": NO_NETDEV_VF, "vlan": 100,
            "vfdConfig": str(lab.conf), "cacheDir": str(tmp_path / "cache"), "ipam": {"type": "slow-ipam"}}
    env = {k: v for k, v in os.environ.items() if not k.startswith("CNI_")}
    env.update(lab.env, CNI_COMMAND="ADD", CNI_CONTAINERID="slow", CNI_NETNS="/proc/self/ns/net", CNI_IFNAME="net1",
               CNI_PATH=str(cni_bin))
    p = subprocess.Popen([PLUGIN], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    p.stdin.write(json.dumps(conf).encode())
    p.stdin.close()
    p.stdin = None                          # communicate() later reads only
    _wait(mark.exists, "the IPAM plugin to start")
    return p


@root_only
def test_a_slow_command_does_not_block_the_daemon(lab, tmp_path):
    p = _slow_add(lab, tmp_path, 4)
    t0 = time.monotonic()
    assert lab.iplex("--timeout", "5", "ping").returncode == 0       # the loop answers meanwhile
    assert _version_works(lab)                                       # and so does another CNI request
    assert time.monotonic() - t0 < 3.5 and p.poll() is None
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, (out, err)
    assert json.loads(out)["interfaces"][0]["name"] == "net1"


@root_only
def test_sigterm_does_not_wait_for_a_hung_command(lab, tmp_path):
    from vfd.daemon.cni import DRAIN
    p = _slow_add(lab, tmp_path, 300)
    t0 = time.monotonic()
    lab.proc.send_signal(signal.SIGTERM)
    lab.proc.wait(timeout=DRAIN + 20)
    assert time.monotonic() - t0 < DRAIN + 15
    out, err = p.communicate(timeout=30)
    res = json.loads(out)
    assert p.returncode == 1 and res["code"] == 11 and "vfd stopped while ADD slow/net1 was running" in res["msg"], res


@root_only
def test_a_command_past_the_deadline_is_answered_and_finishes_on_its_own(tmp_path, monkeypatch):
    """The CNI server alone (a real socket and loop, a stand-in command): the front end is told to try
    again at REQUEST_DEADLINE; the command's thread still finishes and is accounted for."""
    import asyncio
    import threading

    from vfd.daemon import cni
    monkeypatch.setattr(cni, "REQUEST_DEADLINE", 0.5)
    release, finished = threading.Event(), threading.Event()

    def execute(env, stdin):
        release.wait(20)
        finished.set()
        return 0, b"{}\n", b""

    srv = cni.CniServer(str(tmp_path / "cni.sock"), execute)

    async def scenario():
        loop = asyncio.get_running_loop()
        srv.open(loop)
        req = wire.encode_request({"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "late", "CNI_IFNAME": "net1"}, b"{}")
        t0 = time.monotonic()
        got = await loop.run_in_executor(None, _ask, Path(srv.path), req)
        took = time.monotonic() - t0
        assert srv.running == 1 and not finished.is_set()
        release.set()
        for _ in range(200):
            if srv.running == 0:
                break
            await asyncio.sleep(0.05)
        srv.close()
        return got, took

    (rc, out), took = asyncio.run(scenario())
    assert rc == 1 and out["code"] == 11 and "ADD late/net1 did not finish within 0.5s" in out["msg"], out
    assert took < 5 and finished.is_set() and srv.running == 0
    assert not os.path.exists(srv.path)
