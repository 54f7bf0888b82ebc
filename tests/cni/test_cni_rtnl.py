"""The in-process plugin's start-up weight and the per-thread entry into a pod's network namespace
(vfd.integrations.cni.rtnl).

vfd-cni-inproc is one fresh process per CNI command: what it imports and whether it forks a helper to
reach the pod are its cost (docs/performance.md, "vfd-cni vs host-device"). In the daemon, the same
entry must move only the calling thread (the daemon's other threads stay in the host's namespace).
"""

from __future__ import annotations

import ipaddress
import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cni.cnilab import ip, link_json, netns_add, netns_del

_SEQ = itertools.count()
ROOT = Path(__file__).resolve().parents[2]


def test_plugin_needs_no_site_packages_and_imports_no_heavy_modules():
    """The in-process plugin (vfd-cni-inproc, the bench's `python -S` row) needs no site module: it may
    use the standard library and vfd only; none of pyroute2, pydantic, asyncio, the daemon's modules,
    dataclasses (inspect, ast, dis, ...), pathlib, or hashlib (OpenSSL's libcrypto) is loaded at start-up."""
    heavy = ("pyroute2", "pydantic", "asyncio", "dataclasses", "inspect", "pathlib", "hashlib", "_hashlib",
             "argparse", "subprocess")
    code = ("import sys, vfd.integrations.cni.main; "
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {heavy!r} "
            "or m.startswith('vfd.backends') or m.startswith('vfd.daemon')))")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, env=env, cwd="/")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_port_ids_keep_their_sha256_names():
    """The attachment ids (cache files, vfd's port names) are SHA-256 based; CPython's built-in
    SHA-256 gives the same digests as hashlib's, so ids made by earlier versions still match."""
    import hashlib

    from vfd.integrations.cni.main import tmp_name
    from vfd.integrations.cni.netconf import port_id
    assert port_id("abc123", "net1").endswith(hashlib.sha256(b"abc123\0net1").hexdigest()[:10])
    assert tmp_name("p") == "vfc" + hashlib.sha256(b"p").hexdigest()[:8]


root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)")


def _own_netns() -> int:
    return os.stat("/proc/thread-self/ns/net").st_ino


@pytest.fixture
def pod():
    name = f"rtnlpod{os.getpid() % 10000}{next(_SEQ)}"
    path = netns_add(name)
    subprocess.run(["ip", "-n", name, "link", "add", "podonly0", "type", "veth", "peer", "name", "podonly0p"], check=True)
    yield name, path
    netns_del(name)


@root_only
def test_socket_bound_to_pod_and_thread_comes_back(pod):
    from vfd.integrations.cni.rtnl import Rtnl
    name, path = pod
    before = _own_netns()
    with Rtnl(path) as ns, Rtnl() as host:
        assert _own_netns() == before                 # the thread is back in its own namespace
        assert ns.index("podonly0") is not None       # the pod's socket sees the pod's links ...
        assert host.index("podonly0") is None         # ... and the host's does not
        assert ns.index("no-such-link") is None
    assert _own_netns() == before


@root_only
def test_rename_mac_mtu_up_address_route_and_move_back(pod):
    from vfd.integrations.cni.rtnl import NetlinkError, Rtnl
    name, path = pod
    host_if = f"rtx{os.getpid() % 10000}{next(_SEQ)}"
    subprocess.run(["ip", "link", "add", host_if, "type", "veth", "peer", "name", host_if + "p"], check=True)
    try:
        with Rtnl(path) as ns, Rtnl() as host:
            idx = host.index(host_if)
            fd = os.open(path, os.O_RDONLY)
            try:
                host.set_link(idx, up=False, ifname="rtmoving")
                host.set_link(host.index("rtmoving"), netns_fd=fd)
            finally:
                os.close(fd)
            assert host.index("rtmoving") is None
            idx = ns.index("rtmoving")
            ns.set_link(idx, ifname="net1", mac="02:aa:bb:cc:dd:01", mtu=1400)
            ns.set_link(idx, up=True)
            ns.add_address(idx, ipaddress.ip_interface("10.77.0.5/24"))
            ns.add_route(ipaddress.ip_network("10.88.0.0/16"), idx, ipaddress.ip_address("10.77.0.1"))
            with pytest.raises(NetlinkError) as err:
                ns.add_address(idx, ipaddress.ip_interface("10.77.0.5/24"))
            assert err.value.code == 17                   # EEXIST, as the kernel says it
            got = ns.link("net1")
            assert got["index"] == idx and got["mac"] == "02:aa:bb:cc:dd:01" and got["mtu"] == 1400
            link = link_json("net1", netns=name)
            assert "UP" in link["flags"]
            assert "10.77.0.5/24" in ip("-4", "addr", "show", "dev", "net1", netns=name)
            assert "10.88.0.0/16 via 10.77.0.1" in ip("route", "show", netns=name)
            fd = os.open("/proc/self/ns/net", os.O_RDONLY)
            try:
                ns.set_link(idx, up=False)
                ns.set_link(idx, netns_fd=fd)
            finally:
                os.close(fd)
            back = host.link("net1")
            assert back is not None and back["mac"] == "02:aa:bb:cc:dd:01"
            host.set_link(back["index"], ifname=host_if)
            assert "10.77.0.5" not in ip("addr", "show", "dev", host_if)   # the move dropped the pod's address
    finally:
        subprocess.run(["ip", "link", "del", host_if], capture_output=True)
        subprocess.run(["ip", "link", "del", "net1"], capture_output=True)


def test_refused_netns_path_is_an_error_and_leaves_the_thread_home(tmp_path):
    from vfd.integrations.cni.rtnl import Rtnl
    before = _own_netns()
    not_ns = tmp_path / "plain-file"
    not_ns.write_text("")
    with pytest.raises(OSError):
        Rtnl(str(not_ns))
    assert _own_netns() == before
