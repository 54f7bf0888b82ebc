"""`iplex`: the command-line client of vfd (the original's commands and options, its bugs fixed).

It sends one JSON request over the daemon's Unix socket when it answers (the kernel tells vfd
who asks), else on the request FIFO with the reply read on a private FIFO created next to it
(docs/iplex.md). Start-up is kept light: only the standard library's small modules.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import sys
import time

from vfd import __version__
from vfd.protocol import EOM, LOG_LEVELS, PIPE_BUF, decode_responses, encode_request, printable

CONFIG_CANDIDATES = ("/etc/vfd/vfd.cfg", "/var/lib/vfd/etc/vfd.cfg")
CONTAINER_FIFO = "/var/lib/vfd/pipes/request"
EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2


class ClientError(Exception):
    pass


def find_config(path: str | None) -> dict:
    """The main config's fifo and config_dir: from --conf, $VFD_CONF, or the standard places.

    The original checked one path and opened another; here the path checked is the path read.
    """
    if path is None:
        path = os.environ.get("VFD_CONF")
    candidates = [path] if path else [p for p in CONFIG_CANDIDATES if os.path.exists(p)]
    for cand in candidates:
        try:
            with open(cand) as f:
                data = json.load(f)
        except OSError as exc:
            raise ClientError(f"cannot read config {cand}: {exc.strerror}") from None
        except ValueError as exc:
            raise ClientError(f"config {cand} is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ClientError(f"config {cand} is not a JSON object")
        return data
    return {}


def _common_options(p: argparse.ArgumentParser, suppress: bool) -> None:
    """Options accepted before or after the command (`iplex add vm1 --loglevel=2`, as the original)."""
    import argparse     # here, not at the top: vfd-cni imports this module and pays for every import
    d = (lambda v: argparse.SUPPRESS) if suppress else (lambda v: v)
    p.add_argument("--conf", default=d(None),
                   help="vfd main config (default: $VFD_CONF, /etc/vfd/vfd.cfg, /var/lib/vfd/etc/vfd.cfg)")
    p.add_argument("--loglevel", type=_loglevel, default=d(None),
                   help="daemon log level 0..5 for this request (default 0); with verbose: the new level")
    p.add_argument("--json", action="store_true", default=d(False), help="print the daemon's raw JSON response")
    p.add_argument("--timeout", type=float, default=d(30.0), help="seconds to wait for the reply (default 30)")
    p.add_argument("--rid", default=d(None), help="request id echoed by the daemon (vfd_rid)")


def _loglevel(text: str) -> int:
    import argparse
    try:
        lvl = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number 0..5") from None
    if lvl not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(f"{lvl} is outside the range 0..5")
    return lvl


def build_parser() -> argparse.ArgumentParser:
    import argparse
    p = argparse.ArgumentParser(prog="iplex", description="Control vfd, the Virtual Function Daemon.",
                                epilog="Exit status: 0 OK, 1 error reported by vfd, no answer, or (status) a VF not in sync "
                                       "with its config, 2 usage error.")
    _common_options(p, suppress=False)
    p.add_argument("--version", action="version", version=f"iplex 1.3 (vfd {__version__})")
    sub = p.add_subparsers(dest="command", metavar="command")
    sub.required = True

    def cmd(name: str, text: str) -> argparse.ArgumentParser:
        s = sub.add_parser(name, help=text, description=text.replace("%%", "%"))
        _common_options(s, suppress=True)
        return s

    for name, text in (("add", "admit <port-id>.json from config_dir and program its VF"),
                       ("update", "replace a live VF's config in place with <port-id>.json from config_dir"),
                       ("delete", "remove a live VF config and clear its VF"),
                       ("status", "show a live VF's desired settings next to what the NIC reports")):
        cmd(name, text).add_argument("port_id", metavar="port-id")
    cmd("export", "print a live VF config").add_argument("config_id", metavar="config-id")
    cmd("show", "counters: all, pfs, extended, mirror, pci (VF PCI addresses), a PF number or PF id") \
        .add_argument("what", nargs="?", default="all")
    s = cmd("mirror", "set a VF's mirror: <pf> <vf> in|out|all|off [<target>] (both/on = all)")
    s.add_argument("pf")
    s.add_argument("vf")
    s.add_argument("dir", choices=("in", "out", "all", "both", "on", "off"))
    s.add_argument("target", nargs="?")
    cmd("cpu_alarm", "set the daemon's CPU alarm threshold in percent, e.g. 30%%") \
        .add_argument("pctg", help="percentage, with or without %%")
    s = cmd("clear_stats", "restart counters at 0: all PFs, one PF (number or id) or one VF")
    s.add_argument("pf", nargs="?")
    s.add_argument("vf", nargs="?")
    cmd("verbose", "set the daemon's log level to --loglevel (required, 0..5)")
    cmd("ping", "check that the daemon answers")
    cmd("dump", "write the daemon's state to its log")
    cmd("watch", "print the daemon's events (adds, updates, deletes, refusals, drift, link changes) as they "
                 "happen, one line each (--json: JSON lines), until interrupted")
    return p


def fifo_path(conf: dict) -> str:
    fifo = conf.get("fifo")
    if isinstance(fifo, str) and fifo:
        return fifo
    return CONTAINER_FIFO if os.path.exists(CONTAINER_FIFO) else "/var/lib/vfd/request"


def socket_of(conf: dict, fifo: str) -> str | bool:
    """The daemon's socket (main config `socket`: null = `<fifo>.sock`, false = none)."""
    sock = conf.get("socket")
    if sock is False:
        return False
    return sock if isinstance(sock, str) and sock else fifo + ".sock"


def config_dir(conf: dict) -> str:
    d = conf.get("config_dir")
    return d if isinstance(d, str) and d else "/var/lib/vfd/config"


def reply_fifo_name(fifo: str, reply_tag: str = "") -> str:
    """`<fifo>_IPLEX.<pid>[.<tag>].<random>`: the pid lets vfd remove it if this process dies; the
    128 random bits keep others from naming it in their requests (vfd then trusts its owner as
    the requester: docs/operations.md, Security)."""
    tag = f".{reply_tag}" if reply_tag else ""
    return f"{fifo}_IPLEX.{os.getpid()}{tag}.{os.urandom(16).hex()}"


def request(fifo: str, action: str, timeout: float, *, reply_tag: str = "", socket_path: str | bool | None = None,
            **params) -> dict:
    """Send one request and wait for its reply.

    Over vfd's Unix socket when it answers (`socket_path`; None: `<fifo>.sock`; False: never),
    where the kernel tells vfd who asks; else over the FIFO, with a private reply FIFO removed on
    every path. Only the reply carrying this request's `vfd_rid` is accepted (a random one unless
    the caller gives its own): a reply the daemon wrote for someone else's request is ignored.
    `reply_tag` keeps concurrent callers of one process apart (the os-vif plugin, tests).
    """
    if params.get("vfd_rid") is None:
        params["vfd_rid"] = os.urandom(16).hex()
    rid = params["vfd_rid"]
    if socket_path is None:
        socket_path = fifo + ".sock"
    if socket_path:
        reply = _via_socket(socket_path, encode_request(action, None, **params), rid, timeout)
        if reply is not None:
            return reply
    if not os.path.exists(fifo):
        raise ClientError(f"vfd request fifo {fifo} does not exist (is vfd running?)")
    r_fifo = reply_fifo_name(fifo, reply_tag)
    try:
        try:
            os.mkfifo(r_fifo, 0o600)
        except OSError as exc:
            raise ClientError(f"cannot create reply fifo {r_fifo}: {exc.strerror}") from None
        # O_RDWR: never sees EOF, so a daemon that replies late is still heard until the timeout.
        rfd = os.open(r_fifo, os.O_RDWR | os.O_NONBLOCK | os.O_NOFOLLOW)
        try:
            payload = encode_request(action, r_fifo, **params)
            if len(payload) > PIPE_BUF:
                raise ClientError(f"request is {len(payload)} bytes; at most {PIPE_BUF} can be sent atomically")
            try:
                wfd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except FileNotFoundError:
                raise ClientError(f"vfd request fifo {fifo} does not exist (is vfd running?)") from None
            except OSError as exc:
                reason = "no daemon is reading it (is vfd running?)" if exc.errno == 6 else exc.strerror
                raise ClientError(f"cannot open vfd request fifo {fifo}: {reason}") from None
            try:
                os.write(wfd, payload)
            except BlockingIOError:
                raise ClientError(f"vfd request fifo {fifo} is full (daemon busy or hung)") from None
            finally:
                os.close(wfd)
            return _read_reply(rfd, rid, timeout)
        finally:
            os.close(rfd)
    finally:
        try:
            os.unlink(r_fifo)
        except OSError:
            pass


def _via_socket(path: str, payload: bytes, rid: str, timeout: float) -> dict | None:
    """One request over the socket; None when no daemon listens there (then the FIFO is tried)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        try:
            sock.connect(path)
        except TimeoutError:
            raise ClientError(f"vfd socket {path} did not accept within {timeout:g}s (daemon busy or hung)") from None
        except OSError:
            return None
        try:
            sock.sendall(payload)
        except OSError as exc:
            raise ClientError(f"cannot send to vfd socket {path}: {exc.strerror}") from None
        sock.setblocking(False)
        return _read_reply(sock.fileno(), rid, timeout, recv=sock.recv)
    finally:
        sock.close()


def _wait_readable(fds: list[int], timeout: float) -> list[int]:
    """The fds of `fds` readable within `timeout`. select.select survives eventlet (see _read_reply)
    but cannot take a descriptor >= FD_SETSIZE (1024), which a process with a raised descriptor
    limit reaches (the daemon, running CNI commands that call this): poll() then."""
    if max(fds) < 1024:
        return select.select(fds, [], [], timeout)[0]
    p = select.poll()
    for fd in fds:
        p.register(fd, select.POLLIN)
    return [fd for fd, _ in p.poll(max(0, int(timeout * 1000)))]


def _read_reply(fd: int, rid: str, timeout: float, recv=None) -> dict:
    """Read replies until the one carrying `rid`; others are ignored. select.select rather than
    poll: it survives eventlet's monkey-patching (nova-compute loads the os-vif plugin, which uses
    this function, in a patched process)."""
    deadline = time.monotonic() + timeout
    chunks = b""
    ignored = 0
    mark = f"\n{EOM}".encode()
    while True:
        done, sep, rest = chunks.rpartition(mark)
        if sep:
            for reply in decode_responses((done + sep).decode("utf-8", "replace")):
                if reply.get("vfd_rid") == rid:
                    return reply
                ignored += 1
            chunks = rest
        left = deadline - time.monotonic()
        if left <= 0:
            extra = f" ({ignored} replies to other requests ignored)" if ignored else ""
            raise ClientError(f"no reply from vfd within {timeout:g}s{extra}")
        watched = [fd] if _WAKE_FD is None else [fd, _WAKE_FD]
        readable = _wait_readable(watched, left)
        if _WAKE_FD is not None and _WAKE_FD in readable:
            _drain(_WAKE_FD)         # a signal came: its handler runs now, before the next bytecode
            readable = [r for r in readable if r != _WAKE_FD]
        if readable:
            try:
                got = recv(65536) if recv else os.read(fd, 65536)
            except BlockingIOError:
                continue
            except OSError as exc:
                raise ClientError(f"reading vfd's reply failed: {exc.strerror}") from None
            if not got and recv:
                raise ClientError("vfd closed the connection without a reply to this request")
            chunks += got


# A signal that lands after Python checked for pending signals but before select() blocks would
# otherwise go unnoticed until the timeout: the C handler writes to this pipe, which wakes select.
_WAKE_FD: int | None = None


def _watch_signals() -> None:
    global _WAKE_FD
    r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(w, warn_on_full_buffer=False)
    _WAKE_FD = r


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 512):
            pass
    except BlockingIOError:
        pass


class _Signalled(Exception):
    def __init__(self, signum: int):
        self.signum = signum


def _on_signal(signum, frame) -> None:
    raise _Signalled(signum)     # unwinds through request(), whose finally removes the reply FIFO


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return EXIT_USAGE if exc.code not in (0, None) else EXIT_OK
    if args.command == "verbose" and args.loglevel is None:
        parser.print_usage(sys.stderr)
        print("iplex: error: verbose needs --loglevel N (0..5)", file=sys.stderr)
        return EXIT_USAGE
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) != signal.SIG_IGN:      # `nohup iplex ...` keeps ignoring SIGHUP
            signal.signal(sig, _on_signal)
    _watch_signals()
    try:
        return run(args)
    except ClientError as exc:
        if args.json:
            print(json.dumps({"state": "ERROR", "msg": [str(exc)]}))
        else:
            print(f"iplex: {printable(exc)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 128 + signal.SIGINT
    except _Signalled as exc:
        return 128 + exc.signum
    except BrokenPipeError:
        # stdout closed early (`iplex show all | head -1`): stop quietly, like other Unix tools
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 128 + signal.SIGPIPE


def run(args: argparse.Namespace) -> int:
    conf = find_config(args.conf)
    fifo = fifo_path(conf)
    cdir = config_dir(conf)
    live = cdir.rstrip("/") + "_live"
    common = {"loglevel": args.loglevel if args.loglevel is not None else 0, "vfd_rid": args.rid}
    cmd = args.command
    if cmd == "watch":
        return watch(socket_of(conf, fifo), args.json, common)
    if cmd in ("add", "update"):
        path = os.path.join(cdir, _json_name(args.port_id))
        if not os.path.exists(path):
            raise ClientError(f"VF config for {args.port_id} doesn't exist: {path}")
        params = {"filename": path}
    elif cmd in ("delete", "status"):
        name = _json_name(args.port_id)
        if cmd == "delete" and os.path.isdir(live) and not os.path.exists(os.path.join(live, name)):
            raise ClientError(f"VF live config for {args.port_id} doesn't exist: {os.path.join(live, name)}")
        params = {"filename": name}   # a bare name: resolved in the daemon's live directory
    elif cmd == "export":
        params = {"filename": _json_name(os.path.basename(args.config_id))}
    elif cmd == "show":
        params = {"resource": args.what}
    elif cmd == "mirror":
        parts = [args.pf, args.vf, args.dir] + ([args.target] if args.target is not None else [])
        params = {"resource": " ".join(parts)}
    elif cmd == "cpu_alarm":
        params = {"resource": args.pctg}
    elif cmd == "clear_stats":
        params = {"resource": " ".join(x for x in (args.pf, args.vf) if x is not None) or "all"}
    else:
        params = {}
    reply = request(fifo, cmd, args.timeout, socket_path=socket_of(conf, fifo), **params, **common)
    ok = reply.get("state") == "OK"
    msg = reply.get("msg")
    lines = [printable(x) for x in msg] if isinstance(msg, list) else []
    data = reply.get("data") if isinstance(reply.get("data"), dict) else {}
    if args.json:
        print(json.dumps(reply, indent=1))
    elif cmd == "export" and ok and isinstance(data.get("config"), str):
        sys.stdout.write(data["config"])       # exactly the live config's text
        if lines:
            print("\n".join(lines), file=sys.stderr)
    else:
        if lines:
            print("\n".join(lines), file=sys.stdout if ok else sys.stderr)
    sys.stdout.flush()                          # here, so a closed stdout is seen by main()
    if cmd == "status" and ok and data.get("in_sync") is False:
        return EXIT_ERROR                       # reported fields differ from the NIC (docs/iplex.md)
    return EXIT_OK if ok else EXIT_ERROR


def watch(path: str | bool, as_json: bool, common: dict) -> int:
    """`iplex watch`: a `watch` request over the socket, then the daemon's JSON lines until
    interrupted (docs/observability.md). The stream exists on the socket only."""
    if not path:
        raise ClientError("watch needs the daemon's socket; the main config has socket: false")
    rid = common.get("vfd_rid") or os.urandom(16).hex()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        try:
            sock.connect(path)
            sock.sendall(encode_request("watch", None, loglevel=common.get("loglevel"), vfd_rid=rid))
        except OSError as exc:
            raise ClientError(f"cannot watch through vfd socket {path}: {exc.strerror} (is vfd running?)") from None
        buf = b""
        mark = f"\n{EOM}\n".encode()
        while mark not in buf:
            got = sock.recv(65536)
            if not got:
                raise ClientError("vfd closed the connection without answering the watch request")
            buf += got
        head, _, buf = buf.partition(mark)
        replies = decode_responses((head + mark).decode("utf-8", "replace"))
        reply = replies[0] if replies else {}
        if reply.get("state") != "OK":
            msg = reply.get("msg") if isinstance(reply.get("msg"), list) else ["no valid reply"]
            raise ClientError("watch refused: " + "; ".join(printable(m) for m in msg))
        while True:
            while b"\n" in buf:
                line, _, buf = buf.partition(b"\n")
                print(line.decode("utf-8", "replace") if as_json else event_line(line), flush=True)
            got = sock.recv(65536)
            if not got:
                raise ClientError("vfd closed the watch stream (daemon stopped, or this watcher fell too far behind)")
            buf += got
    finally:
        sock.close()


def event_line(raw: bytes) -> str:
    """One event as a line for people: `<UTC time> <event> key=value ...`."""
    try:
        ev = json.loads(raw)
    except ValueError:
        return printable(raw.decode("utf-8", "replace"))
    if not isinstance(ev, dict):
        return printable(ev)
    t = ev.pop("time", None)
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t)) if isinstance(t, (int, float)) else "-"
    kind = ev.pop("event", "?")
    rest = " ".join(f"{k}={','.join(map(str, v)) if isinstance(v, list) else v}" for k, v in ev.items())
    return printable(f"{when} {kind} {rest}".rstrip())


def _json_name(port_id: str) -> str:
    return port_id if port_id.endswith(".json") else f"{port_id}.json"


if __name__ == "__main__":
    sys.exit(main())
