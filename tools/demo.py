"""`make demo`: a vfd daemon on two sim PFs in a temporary directory, driven by iplex.

Runs as an ordinary user. Starts the daemon in the foreground (as a child), adds the sample VF
configs from examples/, shows the result, shows a bad config being refused, deletes a VF, and
stops the daemon with SIGTERM, leaving no process behind.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def say(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m", flush=True)


def iplex(conf: Path, *args: str) -> int:
    print(f"$ iplex {' '.join(args)}", flush=True)
    rc = subprocess.run([str(BIN / "iplex"), "--conf", str(conf), *args]).returncode
    print(f"(exit {rc})", flush=True)
    return rc


def main() -> int:
    tmp = Path(tempfile.mkdtemp(prefix="vfd-demo-"))
    conf = tmp / "vfd.cfg"
    main_cfg = json.loads((ROOT / "examples" / "vfd.cfg").read_text())
    main_cfg.update(log_dir="stderr", log_level=0, config_dir=str(tmp / "config"), fifo=str(tmp / "run" / "request"),
                    sim_state_dir=str(tmp / "sim"), pid_fname=str(tmp / "vfd.pid"),
                    cni_socket=False)      # the demo runs no CNI commands; /run/vfd/cni.sock is a real vfd's
    conf.write_text(json.dumps(main_cfg, indent=2))
    (tmp / "config").mkdir()
    say(f"starting vfd in the foreground with two sim PFs (work dir {tmp})")
    daemon = subprocess.Popen([str(BIN / "vfd"), "-f", "-p", str(conf)])
    try:
        for _ in range(100):
            if subprocess.run([str(BIN / "iplex"), "--conf", str(conf), "--timeout", "1", "ping"],
                              capture_output=True).returncode == 0:
                break
            if daemon.poll() is not None:
                print("vfd exited during start-up", file=sys.stderr)
                return 1
            time.sleep(0.1)
        iplex(conf, "ping")
        say("adding the sample VF configs from examples/")
        for sample in sorted((ROOT / "examples").glob("*.json")):
            shutil.copy(sample, tmp / "config" / sample.name)
            if iplex(conf, "add", sample.stem) != 0:
                return 1
        say("iplex show all")
        iplex(conf, "show", "all")
        say("what the sim NIC has programmed for VF 1 of 0000:07:00.0 (its state file)")
        state = json.loads((tmp / "sim" / "0000:07:00.0.json").read_text())
        print(json.dumps(state["vfs"]["1"], indent=1))
        say("iplex status web-vm-port1: desired vs programmed")
        iplex(conf, "status", "web-vm-port1")
        say("a bad config is refused with every problem named; nothing live changes (the drop file becomes .error)")
        shutil.copy(ROOT / "examples" / "bad" / "broken-vm-port1.json", tmp / "config")
        if iplex(conf, "add", "broken-vm-port1") == 0:
            print("the bad config was accepted: demo failed", file=sys.stderr)
            return 1
        print("config dir now holds:", sorted(p.name for p in (tmp / "config").iterdir()))
        say("deleting db-vm-port1: its VF is cleared and gets a fresh random MAC")
        iplex(conf, "delete", "db-vm-port1")
        state = json.loads((tmp / "sim" / "0000:07:00.0.json").read_text())
        print("VF 2 now:", json.dumps(state["vfs"]["2"]))
        iplex(conf, "show", "pfs")
    finally:
        say("stopping vfd (SIGTERM)")
        daemon.send_signal(signal.SIGTERM)
        try:
            rc = daemon.wait(timeout=10)
        except subprocess.TimeoutExpired:
            daemon.kill()
            rc = daemon.wait()
        print(f"vfd exited with status {rc}")
        shutil.rmtree(tmp, ignore_errors=True)
    return 0 if rc == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
