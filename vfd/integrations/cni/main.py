"""`vfd-cni`: the CNI commands (spec 1.0.0; 0.3.x/0.4.0 configs accepted; STATUS and GC of 1.1).

ADD   deviceID -> (PF, VF) from sysfs; the VF config is written to vfd's config_dir and the daemon is
      asked to admit and program it (its refusal is the CNI error, and nothing is left behind);
      then the VF netdev goes into the pod, IPAM is delegated and applied, and the result printed.
      Any failure after the daemon said yes is rolled back step by step.
DEL   idempotent: whatever the cache says was done is undone; a missing netns, cache, netdev or live
      config is no error. The daemon not answering is (code 11): its policy would stay on the VF.
CHECK the daemon's status says in sync, and the pod's interface has the expected name and MAC.

`execute(environ, stdin) -> (exit code, stdout, stderr)` is the one entry: the vfd daemon calls it in a
worker thread per request of its CNI socket (vfd/daemon/cni.py, fed by the static front end
tools/cni-frontend/vfd-cni.c), and `main()` (the console script vfd-cni-inproc) calls it in a plugin
process of its own. A request's inputs never come from the process (os.environ, sys.stdin) nor go to
it: the request's environment is passed down (VFD_CNI_TIMEOUT alone is the process's setting),
diagnostics go to the request's stderr, and a pod's namespace is entered by the calling thread
only (rtnl.socket_in).
"""

from __future__ import annotations

import contextvars
import io
import json
import os
import sys

from vfd import iplex
from vfd.integrations.cni import cache, ipam, netdev
from vfd.integrations.cni.errors import (ALREADY_ATTACHED, CHECK_FAILED, INVALID_ENV, INVALID_NETCONF, IO_FAILURE,
                                         PLUGIN_NOT_AVAILABLE, TRY_AGAIN_LATER, VFD_REFUSED, CniError)
from vfd.integrations.cni.netconf import (SUPPORTED_VERSIONS, Env, NetConf, parse_netconf, port_id, read_env,
                                          sha256)
from vfd.integrations.cni.vf import find_vf, vf_netdev

REQUEST_TIMEOUT = float(os.environ.get("VFD_CNI_TIMEOUT", "30"))


# Where log() writes: the stderr of the request being executed (execute() sets it per call; a worker
# thread of the daemon starts with a fresh context, so requests never share it).
_STDERR: contextvars.ContextVar = contextvars.ContextVar("vfd_cni_stderr", default=None)


def log(msg: str) -> None:
    (_STDERR.get() or sys.stderr).write(f"vfd-cni: {msg}\n")


class Daemon:
    """vfd, reached through its request FIFO as iplex does; found through its main config."""

    def __init__(self, conf_path: str):
        try:
            self.conf = iplex.find_config(conf_path)
        except iplex.ClientError as exc:
            raise CniError(INVALID_NETCONF, f"vfdConfig: {exc}") from None
        self.fifo = iplex.fifo_path(self.conf)
        self.socket = iplex.socket_of(self.conf, self.fifo)
        self.config_dir = iplex.config_dir(self.conf)
        self.live_dir = self.config_dir.rstrip("/") + "_live"

    def call(self, action: str, **params) -> tuple[bool, list[str], dict]:
        try:
            reply = iplex.request(self.fifo, action, REQUEST_TIMEOUT, reply_tag="cni", socket_path=self.socket,
                                  **params)
        except iplex.ClientError as exc:
            raise CniError(TRY_AGAIN_LATER, f"vfd is not answering: {exc}") from None
        except ValueError as exc:
            raise CniError(TRY_AGAIN_LATER, f"vfd sent an unreadable reply to {action}: {exc}") from None
        data = reply.get("data") if isinstance(reply.get("data"), dict) else {}
        return reply.get("state") == "OK", [str(x) for x in reply.get("msg", [])], data

    def is_live(self, pid: str) -> bool:
        return os.path.exists(os.path.join(self.live_dir, f"{pid}.json"))

    def delete(self, pid: str) -> None:
        """Have vfd release the port (restoring the VF as it found it); a port it has not is done."""
        if not self.is_live(pid):
            return
        ok, lines, _ = self.call("delete", filename=f"{pid}.json")
        if not ok and self.is_live(pid):
            raise CniError(VFD_REFUSED, f"vfd refused delete of {pid}: {'; '.join(lines)}")


def tmp_name(pid: str) -> str:
    return "vfc" + sha256(pid.encode()).hexdigest()[:8]


# ---- ADD --------------------------------------------------------------------------------------------
def cmd_add(env: Env, nc: NetConf, environ: dict) -> dict:
    if not nc.device_id:
        raise CniError(INVALID_NETCONF, "deviceID is missing: the VF's PCI address (Multus passes the one "
                                        "the SR-IOV device plugin allocated)")
    from vfd.store import atomic_write   # ADD only (see cache.save)
    daemon = Daemon(nc.vfd_config)
    slot = find_vf(nc.device_id, daemon.conf, environ)
    pid = port_id(env.container_id, env.ifname)
    with cache.vf_lock(nc.cache_dir, slot.device_id):
        if cache.load(nc.cache_dir, pid) is not None:
            raise CniError(ALREADY_ATTACHED, f"container {env.container_id} already has {env.ifname} "
                                             f"(attachment {pid}); DEL it first")
        name = f"{nc.name}/{env.container_id[:12]}/{env.ifname}"
        cfg = nc.vf_config(name, slot.pf_id, slot.vfid, slot.pf_speed)
        path = os.path.join(daemon.config_dir, f"{pid}.json")
        try:
            atomic_write(path, (json.dumps(cfg, indent=1) + "\n").encode())
        except OSError as exc:
            raise CniError(IO_FAILURE, f"cannot write the VF config {path}: {exc.strerror}") from None
        ok, lines, data = daemon.call("add", filename=path)
        if not ok:
            for p in (path, path + ".error"):
                try:
                    os.unlink(p)
                except FileNotFoundError:
                    pass
            raise nc.refusal(data) or CniError(VFD_REFUSED, f"vfd refused {slot.device_id} (PF {slot.pf_id} "
                                                            f"VF {slot.vfid}): {'; '.join(lines)}")
        state = {"port_id": pid, "device_id": slot.device_id, "pf_id": slot.pf_id, "vfid": slot.vfid,
                 "container_id": env.container_id, "netns": env.netns, "ifname": env.ifname,
                 "netdev": slot.netdev, "tmp_name": tmp_name(pid), "vfd_config": nc.vfd_config,
                 "cache_dir": nc.cache_dir,
                 "netconf": {k: v for k, v in nc.raw.items() if k != "prevResult"}, "stage": "vfd"}
        try:
            return _add_rest(env, nc, daemon, slot, state, cfg, environ)
        except BaseException as exc:
            log(f"ADD {pid} failed ({exc}); rolling back")
            _undo(state, daemon, environ, env.path, quiet=True)
            raise


def _add_rest(env, nc, daemon, slot, state, cfg, environ) -> dict:
    cache.save(nc.cache_dir, state["port_id"], state)
    iface = {"name": env.ifname, "sandbox": env.netns}
    if slot.netdev:
        with netdev.host() as ipr:
            info = netdev.link_info(ipr, slot.netdev)
        if info is None:
            raise CniError(INVALID_ENV, f"VF netdev {slot.netdev} vanished from the host")
        state.update(host_mac=info["mac"], host_mtu=info["mtu"], stage="netdev")
        cache.save(nc.cache_dir, state["port_id"], state)
        want_mac = cfg.get("mac") or (cfg.get("macs") or [None])[0]
        got = netdev.move_in(slot.netdev, state["tmp_name"], env.netns, env.ifname, want_mac, nc.mtu)
        iface["mac"] = got["mac"]
        state["pod_mac"] = got["mac"]
    elif cfg.get("mac"):
        iface["mac"] = cfg["mac"]
    if nc.cni_version == "1.1.0":
        iface["pciID"] = slot.device_id
    result = {"cniVersion": nc.cni_version, "interfaces": [iface], "ips": [], "routes": [], "dns": {}}
    if nc.ipam:
        state["stage"] = "ipam"
        cache.save(nc.cache_dir, state["port_id"], state)
        ipres = ipam.delegate("ADD", nc.ipam["type"], nc.raw, env.path, environ) or {}
        ips = []
        for ip in ipres.get("ips") or []:
            ip = dict(ip)
            ip["interface"] = 0
            if nc.cni_version.startswith("1."):
                ip.pop("version", None)
            ips.append(ip)
        result.update(ips=ips, routes=ipres.get("routes") or [], dns=ipres.get("dns") or {})
        if slot.netdev:
            netdev.configure_ips(env.netns, env.ifname, result)
    state["stage"] = "done"
    state["result"] = result
    cache.save(nc.cache_dir, state["port_id"], state)
    return result


# ---- DEL --------------------------------------------------------------------------------------------
def _undo(state: dict, daemon: Daemon, environ: dict, cni_path: list[str], quiet: bool = False) -> None:
    """Undo what `state` records, last step first. quiet: roll-back after a failed ADD (best effort)."""
    def step(fn, *a):
        try:
            fn(*a)
        except CniError as exc:
            if not quiet:
                raise
            log(f"roll-back step failed: {exc.msg}")

    if state.get("netdev") and state.get("stage") in ("netdev", "ipam", "done"):
        step(_netdev_home, state, environ)
    conf = state.get("netconf") or {}
    if state.get("stage") in ("ipam", "done") and isinstance(conf.get("ipam"), dict) and conf["ipam"].get("type"):
        step(ipam.delegate, "DEL", conf["ipam"]["type"], conf, cni_path, environ)
    step(daemon.delete, state["port_id"])
    cache.remove(state["cache_dir"], state["port_id"])


def _netdev_home(state: dict, environ: dict) -> None:
    host_name, tmp = state["netdev"], state["tmp_name"]
    if netdev.move_out(state.get("netns", ""), [state["ifname"], tmp], tmp, host_name,
                       state.get("host_mtu"), state.get("host_mac")):
        return
    # The netns is gone: the kernel moved the VF netdev back to the host under its pod name (or devN).
    now = vf_netdev(state["device_id"], environ)
    if now:
        netdev.restore_host_name([now], host_name, state.get("host_mtu"), state.get("host_mac"))


def cmd_del(env: Env, nc: NetConf, environ: dict) -> None:
    pid = port_id(env.container_id, env.ifname)
    state = cache.load(nc.cache_dir, pid)
    if state is None:
        # Nothing recorded (a second DEL, or an ADD that never got far): release what the netconf names.
        daemon = Daemon(nc.vfd_config)
        if nc.ipam:
            ipam.delegate("DEL", nc.ipam["type"], nc.raw, env.path, environ)
        daemon.delete(pid)
        return
    daemon = Daemon(state.get("vfd_config") or nc.vfd_config)
    with cache.vf_lock(nc.cache_dir, state["device_id"]):
        if env.netns:
            state["netns"] = env.netns
        _undo(state, daemon, environ, env.path)


# ---- CHECK ------------------------------------------------------------------------------------------
def cmd_check(env: Env, nc: NetConf, environ: dict) -> None:
    pid = port_id(env.container_id, env.ifname)
    state = cache.load(nc.cache_dir, pid)
    if state is None:
        raise CniError(CHECK_FAILED, f"no attachment {env.ifname} of container {env.container_id} "
                                     f"(no cache {pid} in {nc.cache_dir})")
    daemon = Daemon(state.get("vfd_config") or nc.vfd_config)
    ok, lines, data = daemon.call("status", filename=f"{pid}.json")
    where = f"PF {state['pf_id']} VF {state['vfid']} ({state['device_id']})"
    if not ok:
        raise CniError(CHECK_FAILED, f"vfd has no live config for {where}: {'; '.join(lines)}")
    if "in_sync" not in data:
        raise CniError(CHECK_FAILED, f"vfd's status reply for {pid} carries no 'in_sync' (daemon too old?)")
    if not data["in_sync"]:
        off = [f.get("field") for f in data.get("fields") or []
               if isinstance(f, dict) and (f.get("differs") or f.get("in_sync") is False)]
        raise CniError(CHECK_FAILED, f"{where} differs from vfd's config" + (f": {', '.join(map(str, off))}" if off
                                                                              else "") + " (vfd repairs drift)")
    if state.get("netdev"):
        link = netdev.pod_link(env.netns, env.ifname)
        if link is None:
            raise CniError(CHECK_FAILED, f"{env.ifname} is missing in {env.netns}")
        if state.get("pod_mac") and link["mac"] != state["pod_mac"]:
            raise CniError(CHECK_FAILED, f"{env.ifname} in {env.netns} has MAC {link['mac']}, "
                                         f"expected {state['pod_mac']}")
    if nc.ipam:
        ipam.delegate("CHECK", nc.ipam["type"], nc.raw, env.path, environ)


# ---- STATUS / GC (spec 1.1) -------------------------------------------------------------------------
def cmd_status(nc: NetConf) -> None:
    daemon = Daemon(nc.vfd_config)
    try:
        ok, lines, _ = daemon.call("ping")
    except CniError as exc:
        raise CniError(PLUGIN_NOT_AVAILABLE, exc.msg) from None
    if not ok:
        raise CniError(PLUGIN_NOT_AVAILABLE, f"vfd: {'; '.join(lines)}")


def cmd_gc(env: Env, nc: NetConf, environ: dict) -> None:
    """Undo every cached attachment the runtime no longer lists in cni.dev/valid-attachments."""
    valid = nc.raw.get("cni.dev/valid-attachments") or []
    keep = {port_id(a.get("containerID", ""), a.get("ifname", "")) for a in valid if isinstance(a, dict)}
    for pid in cache.all_ports(nc.cache_dir):
        if pid in keep:
            continue
        state = cache.load(nc.cache_dir, pid)
        if not state or state.get("netconf", {}).get("name") != nc.name:
            continue
        with cache.vf_lock(nc.cache_dir, state["device_id"]):
            _undo(state, Daemon(state.get("vfd_config") or nc.vfd_config), environ, env.path)


# ---- entry ------------------------------------------------------------------------------------------
def run(environ: dict, stdin: bytes) -> tuple[int, dict | None]:
    version = "1.0.0"
    try:
        env = read_env(environ)
        if env.command == "VERSION":
            try:
                version = json.loads(stdin or b"{}").get("cniVersion") or version
            except (ValueError, AttributeError):
                pass
            return 0, {"cniVersion": version, "supportedVersions": SUPPORTED_VERSIONS}
        try:
            version = json.loads(stdin).get("cniVersion") or version
        except (ValueError, AttributeError):
            pass
        nc = parse_netconf(stdin, environ)
        version = nc.cni_version
        if env.command == "ADD":
            return 0, cmd_add(env, nc, environ)
        if env.command == "DEL":
            cmd_del(env, nc, environ)
        elif env.command == "CHECK":
            cmd_check(env, nc, environ)
        elif env.command == "STATUS":
            cmd_status(nc)
        elif env.command == "GC":
            cmd_gc(env, nc, environ)
        else:
            raise CniError(INVALID_ENV, f"CNI_COMMAND {env.command!r} is unknown "
                                        "(want ADD, DEL, CHECK, VERSION, STATUS or GC)")
        return 0, None
    except CniError as exc:
        return 1, exc.to_json(version if version in SUPPORTED_VERSIONS else "1.0.0")


def execute(environ: dict, stdin: bytes) -> tuple[int, bytes, bytes]:
    """One CNI command: its exit code, the bytes for its stdout and for its stderr."""
    err = io.StringIO()
    token = _STDERR.set(err)
    try:
        rc, out = run(environ, stdin)
    finally:
        _STDERR.reset(token)
    return rc, (b"" if out is None else (json.dumps(out) + "\n").encode()), err.getvalue().encode()


def main() -> int:
    """The in-process plugin (console script vfd-cni-inproc): this process is the plugin."""
    stdin = b"" if sys.stdin is None or sys.stdin.isatty() else sys.stdin.buffer.read()
    rc, out, err = execute(dict(os.environ), stdin)
    sys.stderr.buffer.write(err)
    sys.stdout.buffer.write(out)
    sys.stdout.flush()
    return rc


if __name__ == "__main__":
    sys.exit(main())
