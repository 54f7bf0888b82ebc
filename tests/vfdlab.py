"""Test harness: a real vfd daemon process on sim PFs in a temporary directory, and a real iplex.

Used by the integration tests (and the benchmarks): everything goes through real FIFOs and files.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parent.parent


def sim_pf(pf_id: str, vfs: int = 8, driver: str = "ixgbe", **extra) -> dict:
    return {"id": pf_id, "vfs_count": vfs, "sim": {"driver": driver}, **extra}


def vf_config(pciid: str, vfid: int, vlans=(10,), macs=None, name=None, **extra) -> dict:
    cfg = {"name": name or f"vm-{vfid}", "pciid": pciid, "vfid": vfid, "vlans": list(vlans)}
    if macs is not None:
        cfg["macs"] = list(macs)
    cfg.update(extra)
    return cfg


class VfdProcess:
    """One daemon with its own config, directories and FIFO under `root`."""

    def __init__(self, root: Path, pfs: list[dict] | None = None, **main_extra):
        self.root = Path(root)
        self.config_dir = self.root / "config"
        self.live_dir = self.root / "config_live"
        self.sim_dir = self.root / "sim"
        self.fifo = self.root / "run" / "request"
        self.cni_socket = self.root / "run" / "cni.sock"     # never the default /run/vfd/cni.sock: tests run side by side
        self.conf = self.root / "vfd.cfg"
        self.log = self.root / "vfd.stderr"
        self.main = {"log_dir": "stderr", "log_level": 2, "config_dir": str(self.config_dir),
                     "fifo": str(self.fifo), "cni_socket": str(self.cni_socket), "sim_state_dir": str(self.sim_dir),
                     "pid_fname": str(self.root / "vfd.pid"),
                     "pciids": pfs or [sim_pf("0000:07:00.0", 8)]}
        self.main.update(main_extra)
        self.proc: subprocess.Popen | None = None
        self.config_dir.mkdir(parents=True, exist_ok=True)

    def write_main(self) -> None:
        self.conf.write_text(json.dumps(self.main, indent=1))

    def start(self, wait: bool = True, timeout: float = 20) -> "VfdProcess":
        self.write_main()
        self._logf = open(self.log, "ab")
        self.proc = subprocess.Popen([str(BIN / "vfd"), "-f", "-p", str(self.conf)],
                                     stdout=self._logf, stderr=subprocess.STDOUT)
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vfd exited with {self.proc.returncode}:\n{self.log.read_text()}")
            if self.fifo.exists() and self.iplex("--timeout", "1", "ping").returncode == 0:
                return
            time.sleep(0.05)
        raise RuntimeError(f"vfd did not answer within {timeout}s:\n{self.log.read_text()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._logf.close()
        rc = self.proc.returncode
        self.proc = None
        return rc

    def kill9(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self._logf.close()
        self.proc = None

    # ---- clients ----------------------------------------------------------------------------
    def iplex(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run([str(BIN / "iplex"), "--conf", str(self.conf), *args], capture_output=True,
                              text=True, timeout=timeout)

    def request(self, action: str, timeout: float = 10, **params) -> dict:
        """In-process client (the same code iplex runs), for tests that need the raw reply."""
        from vfd.iplex import request
        return request(str(self.fifo), action, timeout, **params)

    def drop(self, port_id: str, cfg: dict | str | bytes) -> Path:
        path = self.config_dir / f"{port_id}.json"
        data = cfg if isinstance(cfg, (str, bytes)) else json.dumps(cfg)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        return path

    def add(self, port_id: str, cfg: dict) -> subprocess.CompletedProcess:
        self.drop(port_id, cfg)
        return self.iplex("add", port_id)

    # ---- inspection -------------------------------------------------------------------------
    def sim_state(self, pf_id: str = "0000:07:00.0") -> dict:
        return json.loads((self.sim_dir / f"{pf_id}.json").read_text())

    def vf_state(self, vfid: int, pf_id: str = "0000:07:00.0") -> dict:
        return self.sim_state(pf_id)["vfs"][str(vfid)]

    def live(self) -> list[str]:
        return sorted(p.name for p in self.live_dir.glob("*.json"))

    def snapshot(self) -> dict:
        """Everything a request could change: sim registers, the live dir and the drop dir."""
        regs = [p for p in sorted(self.sim_dir.glob("*.json")) if p.name.count(".json") == 1
                and not p.name.endswith((".stats.json", ".faults.json"))]
        snap = {"sim": {p.name: p.read_text() for p in regs},
                "live": {p.name: p.read_bytes() for p in sorted(self.live_dir.iterdir())},
                "config": {p.name: p.read_bytes() for p in sorted(self.config_dir.iterdir())}}
        return snap

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def pids_of(pattern: str) -> list[int]:
    out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout.split()
    return [int(p) for p in out if int(p) != os.getpid()]


def keep_programs(backend, programs: dict | None = None) -> dict:
    """Stand in for the manager of a backend driven directly: it holds the programs, (pf id, vfid) ->
    VFProgram, one kept once apply_vf returned and dropped once clear_vf did, and the backend asks it
    for them (NicBackend.desired) instead of keeping a copy. Pass `programs` to share them with the
    next backend over the same NIC (a restart: the live configs outlive the process)."""
    programs = {} if programs is None else programs
    apply, clear = backend.apply_vf, backend.clear_vf

    def applied(pf_id, vfid, program, previous):
        apply(pf_id, vfid, program, previous)
        programs[(pf_id, vfid)] = program

    def cleared(pf_id, vfid, previous):
        clear(pf_id, vfid, previous)
        programs.pop((pf_id, vfid), None)
    backend.apply_vf, backend.clear_vf = applied, cleared
    backend.desired = lambda pf_id: {v: p for (pid, v), p in programs.items() if pid == pf_id}
    return programs
