"""`vfd`: the daemon's entry point. Loads the main config, opens the PFs, restores every live VF,
serves the request FIFO and reacts to signals and NIC events, all from one asyncio loop."""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import logging
import os
import signal
import socket
import sys
import time
from typing import TYPE_CHECKING

from vfd import __version__
from vfd.backends import create_backend
from vfd.daemon import events
from vfd.daemon.callbacks import Batch, Callback, run_callbacks
from vfd.daemon.cni import CniServer
from vfd.daemon.logsetup import level_for, setup_logging
from vfd.daemon.paths import check_paths
from vfd.daemon.manager import VFManager
from vfd.daemon.reply import Reply
from vfd.daemon.watch import WatchHub
from vfd.daemon.rundir import raise_fd_limit
from vfd.daemon.server import RequestServer
from vfd.errors import ConfigError, VfdError
from vfd.model.mainconfig import MainConfig, load_main_config, parse_cpu_alarm
from vfd.policy.authz import ROOT_ONLY, PermissionRefused, require_root
from vfd.protocol import ACTIONS
from vfd.store import Store

if TYPE_CHECKING:
    from vfd.daemon.metrics import Metrics

log = logging.getLogger("vfd")

CPU_CHECK_EVERY = 5.0
# All stop callbacks together get at most this long: well inside systemd's stop timeout (90 s by
# default and in packaging/vfd.service), leaving time to turn mirrors off and close the PFs.
STOP_CALLBACKS_CAP = 60.0
# requests that change a VF -> the event they publish when they succeed
CHANGES = {"add": "add", "update": "update", "mirror": "update", "delete": "delete"}
VERBOSE_MIN, VERBOSE_MAX = 0, 5      # the original's verbosity range (iplex verbose --loglevel)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="vfd", description="Virtual Function Daemon: owns SR-IOV VF policy and serves iplex requests.")
    p.add_argument("-p", dest="config", default="/etc/vfd/vfd.cfg", help="main config file (default %(default)s)")
    p.add_argument("-f", dest="foreground", action="store_true", help="stay in the foreground (no fork)")
    p.add_argument("-q", dest="qos", action="store_true", help="force QoS on (as enable_qos)")
    p.add_argument("-F", dest="flowcontrol", action="store_true", help="enable flow control (as enable_flowcontrol)")
    p.add_argument("-H", dest="no_huge", action="store_true", help="no huge pages (dpdk backend; as huge_pages false)")
    p.add_argument("--check", action="store_true", help="validate the main config and every live VF config, then exit")
    p.add_argument("--schema", choices=("main", "vf"), help="print the JSON Schema of a config format and exit")
    p.add_argument("-v", "--version", action="version", version=f"vfd {__version__}")
    return p.parse_args(argv)


def apply_flags(main: MainConfig, args: argparse.Namespace) -> MainConfig:
    changes = {}
    if args.qos:
        changes["enable_qos"] = True
    if args.flowcontrol:
        changes["enable_flowcontrol"] = True
    if args.no_huge:
        changes["huge_pages"] = False
    if not changes:
        return main
    flagged = main.model_copy(update=changes)
    try:
        flagged._checks()           # the same cross-field rules as the file (model_copy skips them)
    except ValueError as exc:
        raise ConfigError("command-line flags", [str(exc)]) from None
    return flagged


def daemonise(pid_file: str) -> None:
    if os.fork() > 0:
        os._exit(0)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    with open(pid_file, "w") as f:
        f.write(f"{os.getpid()}\n")


def sd_notify(state: str) -> None:
    """Tell systemd (Type=notify) we are ready; a no-op elsewhere. Five lines, so no dependency."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(state.encode(), addr)


class Daemon:
    def __init__(self, main: MainConfig, config_path: str, args: argparse.Namespace):
        self.main = main
        self.config_path = config_path
        self.args = args
        self.store = Store(main.config_dir, main.live_dir, main.delete_keep)
        names = sorted({main.backend_of(pf) for pf in main.pciids})
        self.backends = {n: create_backend(n, main) for n in names}
        self.manager = VFManager(main, self.backends, self.store)
        self.commands = self._command_table()
        assert set(self.commands) == set(ACTIONS), "every protocol action has one handler"
        self.loop: asyncio.AbstractEventLoop | None = None
        self.server: RequestServer | None = None
        self.stopping: asyncio.Event | None = None
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="vfd-cb")
        self.start_batch: Batch | None = None
        self.cpu_alarm = main.cpu_alarm
        self.level = level_for(main.log_level)
        self._cpu_last = (time.monotonic(), sum(os.times()[:2]))
        self.metrics: Metrics | None = None
        if main.metrics_listen:          # prometheus_client (and its HTTP server) only when asked for
            from vfd.daemon.metrics import Metrics
            self.metrics = Metrics(self.manager)
        self.watch: WatchHub | None = None
        self.cni: CniServer | None = None

    # ---- requests ---------------------------------------------------------------------------
    def handle(self, action: str, params: dict, requester_uid: int | None = 0) -> tuple[bool, list[str], dict | None]:
        t0 = time.perf_counter()
        reply = self._handle(action, params, requester_uid)
        self._observe(action, params, reply, time.perf_counter() - t0)
        return reply.ok, reply.lines, reply.data

    def _observe(self, action: str, params: dict, reply: Reply, seconds: float) -> None:
        """Every request counted and timed; changes and refusals published (vfd/daemon/events.py)."""
        if self.metrics is not None:
            self.metrics.request_done(action, reply.ok, seconds)
        data = reply.data if isinstance(reply.data, dict) else {}
        where = {k: data.get(k) for k in ("port", "pf", "vf")}
        name = params.get("filename")
        if where["port"] is None and isinstance(name, str):     # a refused add names its port only here
            where["port"] = os.path.basename(name).removesuffix(".json")[:200] or None
        if reply.ok and action in CHANGES:
            events.publish(CHANGES[action], action=action, **where)
        elif not reply.ok and isinstance(data.get("rule"), str):
            events.publish("refused", action=action, rule=data["rule"], field=data.get("field"), **where,
                           message=reply.lines[0] if reply.lines else None)

    def _on_nic_event(self, ev) -> None:
        """Backend events: the manager re-applies; then what happened is published."""
        self.manager.on_event(ev)
        pf = self.manager.pfs.get(ev.pf_id)
        if pf is None:
            return
        vf = pf.vfs.get(ev.vfid) if ev.vfid is not None else None
        where = {"pf": ev.pf_id, "vf": ev.vfid, "port": vf.port_id if vf else None, "detail": ev.detail or None}
        if ev.kind in ("link_up", "link_down"):
            events.publish("link", state="up" if ev.kind == "link_up" else "down", **where)
        elif ev.kind == "drift" and vf is not None:
            events.publish("drift", repaired=(ev.pf_id, ev.vfid) not in self.manager.apply_errors, **where)
        elif ev.kind in ("vf_reset", "vfs_gone"):
            events.publish(ev.kind, **where)

    def _handle(self, action: str, params: dict, requester_uid: int | None) -> Reply:
        lvl = params.get("loglevel", 0)
        raised = isinstance(lvl, int) and not isinstance(lvl, bool) and level_for(lvl) < log.level
        if raised:
            log.setLevel(level_for(lvl))  # per-request verbosity, restored when the reply is built
        try:
            reply = self._dispatch(action, params, requester_uid)
        finally:
            if raised:
                log.setLevel(self.level)
        return reply

    def _dispatch(self, action: str, params: dict, uid: int | None):
        if action in ROOT_ONLY:        # daemon-wide settings (vfd/policy/authz.py)
            try:
                require_root(action, "(a daemon-wide setting)", uid)
            except PermissionRefused as exc:
                log.warning("refused: %s", exc)
                return Reply(False, [str(exc)], {"rule": "permission", "action": exc.action,
                                                 "requester_uid": exc.requester_uid})
        return self.commands[action](params, uid)

    def _command_table(self) -> dict:
        """action -> handler(params, requester_uid): the one place a request reaches the manager.
        The actions are the protocol's (vfd/protocol.py); the root-only ones are vfd/policy/authz.py's."""
        m = self.manager

        def filename(p: dict):
            return p.get("filename", p.get("resource"))

        return {
            "add": lambda p, uid: m.add(filename(p), requester_uid=uid),
            "update": lambda p, uid: m.update(filename(p), requester_uid=uid),
            "delete": lambda p, uid: m.delete(filename(p), requester_uid=uid),
            "status": lambda p, uid: m.status(filename(p)),
            "show": lambda p, uid: m.show(p.get("resource", "all")),
            "ping": lambda p, uid: m.ping(),
            # the server hands the connection to the watch hub after this reply
            "watch": lambda p, uid: Reply(True, ["watching vfd events until interrupted"],
                                          {"watch": sorted(events.KINDS)}),
            "dump": lambda p, uid: m.dump(),
            "mirror": lambda p, uid: m.mirror(p.get("resource"), requester_uid=uid),
            "export": lambda p, uid: m.export(filename(p), p.get("output"), requester_uid=uid),
            "verbose": lambda p, uid: self._verbose(p.get("loglevel")),
            "cpu_alarm": lambda p, uid: self._cpu_alarm(p.get("resource")),
            "clear_stats": lambda p, uid: m.clear_stats(p.get("resource", "all"), requester_uid=uid),
        }

    def _verbose(self, lvl: object) -> Reply:
        """The original's verbosity 0..5 (logsetup.LEVELS); anything else, or none, is refused."""
        if lvl is None:
            return Reply(False, [f"verbose needs a level: loglevel {VERBOSE_MIN}..{VERBOSE_MAX} (none given)"])
        if not isinstance(lvl, int) or isinstance(lvl, bool) or not VERBOSE_MIN <= lvl <= VERBOSE_MAX:
            return Reply(False, [f"verbose level {lvl!r} is not a whole number in {VERBOSE_MIN}..{VERBOSE_MAX}"])
        self.level = level_for(lvl)
        log.setLevel(self.level)
        return Reply(True, [f"verbose level changed to: {lvl}"])

    def _cpu_alarm(self, value: object) -> Reply:
        """A percentage, as iplex sends it ("30%" or "30"); the fraction form (a JSON number) is the
        main config's only: no client could send it (docs/differences.md)."""
        if not isinstance(value, str):
            return Reply(False, [f"cpu_alarm needs a percentage such as 30% or 30, got {value!r}"])
        try:
            frac = parse_cpu_alarm(value)
        except ValueError:
            return Reply(False, [f"cpu_alarm needs a percentage such as 30% or 30, got {value!r}"])
        if frac != frac or frac in (float("inf"), float("-inf")):
            return Reply(False, [f"cpu_alarm {value!r} is not a finite number"])
        if frac < 0.05:
            return Reply(False, [f"cpu_alarm {value!r} is {frac * 100:g}%, below the floor of 5% "
                                 f"(the value is a percentage: 30 or 30% means 30%)"])
        self.cpu_alarm = frac
        return Reply(True, [f"cpu alarm threshold changed to: {frac * 100:.0f}%"])

    # ---- life cycle -------------------------------------------------------------------------
    def start(self) -> None:
        self.store.ensure_dirs()
        raise_fd_limit()
        self.server = RequestServer(self.main.fifo, self.handle, self.main.fifo_group,
                                    socket_path=self.main.socket_path)
        self.server.prepare()      # the run directory and the FIFO are checked before any NIC is touched
        path = self.main.cni_socket_path
        if path and self.main.cni_socket is None and os.geteuid() != 0:
            log.info("no CNI socket: vfd is not root (CNI commands need root); set cni_socket to have one")
        elif path:
            self.cni = CniServer(path)
            self.cni.bind()
        if self.metrics is not None:
            self.metrics.serve(self.main.metrics_listen)
        self.manager.open_pfs()
        self.manager.restore()

    async def run(self) -> int:
        self.loop = asyncio.get_running_loop()
        self.stopping = asyncio.Event()
        if self.server is None:
            self.server = RequestServer(self.main.fifo, self.handle, self.main.fifo_group,
                                        socket_path=self.main.socket_path)
        self.server.open(self.loop)
        self.watch = self.server.watch_hub = WatchHub(self.loop)
        if self.cni is not None:
            self.cni.open(self.loop)
        if self.metrics is not None:
            self.metrics.attach(self.loop)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
            self.loop.add_signal_handler(sig, self.stopping.set)
        self.loop.add_signal_handler(signal.SIGHUP, self.reload)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        for b in self.backends.values():
            b.attach(self.loop, self._on_nic_event)
        self._schedule_cpu_check()
        self.loop.call_later(self.main.reconcile_interval, self._reconcile)
        self.run_callbacks("start_cb")
        log.setLevel(self.level)
        sd_notify("READY=1")
        log.warning("vfd %s running: %d PFs, %d live VFs, fifo %s", __version__, len(self.manager.pfs),
                    len(self.manager.live), self.main.fifo)
        await self.stopping.wait()
        sd_notify("STOPPING=1")
        log.warning("vfd stopping")
        if self.cni is not None:
            await self.cni.drain()     # running CNI commands still need this loop for their requests
        return 0

    def run_callbacks(self, which: str, wait: bool = False) -> None:
        """One batch: every VF's callback concurrently, all within one budget (callback_timeout; at
        shutdown also at most STOP_CALLBACKS_CAP). start_cb runs in the background, stop_cb is awaited."""
        batch = [Callback(which, port, cmd, uid) for port, cmd, uid in self.manager.callbacks(which)]
        if not batch:
            return
        budget = self.main.callback_timeout
        if wait:
            run_callbacks(batch, min(budget, STOP_CALLBACKS_CAP))
        else:
            self.start_batch = Batch(batch)
            self.pool.submit(self.start_batch.wait, budget)

    def reload(self) -> None:
        """SIGHUP: re-read the main config's log settings, then re-apply every VF. Settings that
        cannot be used (a bad config, an unusable log_dir) are logged and the old ones kept; the
        re-apply happens either way."""
        try:
            fresh = load_main_config(self.config_path)
            setup_logging(fresh.log_dir, fresh.log_keep, fresh.log_level, fresh.log_format)
            self.level = level_for(fresh.log_level)
            log.warning("SIGHUP: log settings re-read; re-applying every VF")
        except VfdError as exc:
            log.error("SIGHUP: main config not re-read: %s", exc)
        except OSError as exc:
            log.error("SIGHUP: log_dir %s unusable (%s); keeping the current log; re-applying every VF",
                      fresh.log_dir, exc.strerror or exc)
        self.manager.reapply_all()

    def _reconcile(self) -> None:
        """Periodic drift check: catches changes no event reported (e.g. a VF edited by hand)."""
        try:
            self.manager.reconcile()
        except Exception:  # noqa: BLE001 - the timer must keep running
            log.exception("reconcile failed")
        self.loop.call_later(self.main.reconcile_interval, self._reconcile)

    def _schedule_cpu_check(self) -> None:
        self.loop.call_later(CPU_CHECK_EVERY, self._cpu_check)

    def _cpu_check(self) -> None:
        now, cpu = time.monotonic(), sum(os.times()[:2])
        wall, used = now - self._cpu_last[0], cpu - self._cpu_last[1]
        self._cpu_last = (now, cpu)
        if wall > 0 and used / wall > self.cpu_alarm:
            log.warning("%s High CPU utilization: %.0f%%", self.main.cpu_alarm_type, 100 * used / wall)
        self._schedule_cpu_check()

    def shutdown(self) -> None:
        """Stop callbacks, mirrors off, ports closed: exiting with PFs open has crashed hosts."""
        try:
            if self.start_batch is not None:
                self.start_batch.stop()           # start_cbs still running would hold up the exit
            self.run_callbacks("stop_cb", wait=True)
            self.manager.mirrors_off()
        finally:
            if self.watch is not None:
                self.watch.close()
            if self.metrics is not None:
                self.metrics.close()
            if self.cni is not None:
                self.cni.close()
            if self.server:
                self.server.close()
            self.manager.close()
            self.pool.shutdown(wait=False)
            log.warning("vfd stopped")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.schema:
        import json
        from vfd.model.vfconfig import VFConfig
        model = MainConfig if args.schema == "main" else VFConfig
        print(json.dumps(model.model_json_schema(), indent=2))
        return 0
    try:
        main_cfg = apply_flags(load_main_config(args.config), args)
    except VfdError as exc:
        print(f"vfd: {exc}", file=sys.stderr)
        return 1
    if args.check:
        return check(main_cfg)
    problems = check_paths(main_cfg, daemonise=not args.foreground)
    if problems:
        for line in problems:
            print(f"vfd: {line}", file=sys.stderr)
        return 1
    if not args.foreground:
        daemonise(main_cfg.pid_fname)
    setup_logging(main_cfg.log_dir, main_cfg.log_keep, main_cfg.init_log_level, main_cfg.log_format)
    daemon = None
    try:
        daemon = Daemon(main_cfg, args.config, args)
        daemon.start()
    except (VfdError, OSError) as exc:
        log.critical("CRI: start-up failed: %s", exc)
        print(f"vfd: start-up failed: {exc}", file=sys.stderr)
        if daemon is not None:
            daemon.manager.close()      # PFs opened before the failure are released (DPDK: EAL cleaned up)
            if daemon.metrics is not None:
                daemon.metrics.close()
            if daemon.cni is not None:
                daemon.cni.close()
        return 1
    try:
        return asyncio.run(daemon.run())
    finally:
        daemon.shutdown()
        if not args.foreground:
            try:
                os.unlink(main_cfg.pid_fname)
            except OSError:
                pass


def check(main_cfg: MainConfig) -> int:
    """--check: what start-up would refuse, without touching a NIC: the paths, each PF's settings
    against its driver (sim PFs; a kernel or dpdk PF's driver is only known from the device, so its
    settings are checked at start), then every live config parsed and, on sim PFs, admitted in the
    order start-up admits them (so two configs for one VF, or too many MACs, are found here too)."""
    from vfd.backends.sim import sim_pf_info
    from vfd.model.vfconfig import parse_vf_config
    from vfd.policy.admission import admit
    from vfd.state import LiveVF, PFState
    bad = 0
    for line in check_paths(main_cfg, daemonise=False):
        bad += 1
        print(line)
    pfs: dict[str, PFState | None] = {}
    for index, pf in enumerate(main_cfg.pciids):
        backend = main_cfg.backend_of(pf)
        if backend != "sim":
            pfs[pf.id] = None
            print(f"PF {pf.id} ({backend} backend): its driver is known only from the device; PF settings "
                  f"and admission of its VF configs are checked at start")
            continue
        try:
            info = sim_pf_info(main_cfg, pf)
        except VfdError as exc:
            bad += 1
            pfs[pf.id] = None
            print(exc)
            continue
        pfs[pf.id] = PFState(cfg=pf, backend=backend, profile=info.profile, vfs_count=info.vfs_count,
                             link_speed=info.link_speed, mtu=main_cfg.mtu_of(pf), qos=main_cfg.enable_qos,
                             index=index)
    store = Store(main_cfg.config_dir, main_cfg.live_dir)
    files = store.live_files() if os.path.isdir(main_cfg.live_dir) else []
    bad_files = 0
    for path in files:
        port_id = path.name[: -len(".json")]
        try:
            rf = store.read(path, port_id)
            cfg = parse_vf_config(rf.data, str(path))
            if main_cfg.pf(cfg.pciid) is None:
                raise VfdError(f"{path}: PF {cfg.pciid} is not in the main config")
            pf_state = pfs.get(cfg.pciid)
            if pf_state is not None:
                program = admit(cfg, pf_state)
                pf_state.add(LiveVF(port_id=port_id, config=cfg, program=program, owner_uid=rf.owner_uid,
                                    raw=rf.data))
        except (VfdError, OSError) as exc:
            bad_files += 1
            print(f"{path}: {exc}" if str(path) not in str(exc) else exc)
    print(f"main config {'ok' if not bad else f'has {bad} problem(s)'}; {len(files) - bad_files} live configs ok, "
          f"{bad_files} bad")
    return 1 if bad or bad_files else 0


if __name__ == "__main__":
    sys.exit(main())
