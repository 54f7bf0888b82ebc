"""Programming N VFs on a real kernel: vfd's kernel backend vs one `ip link set` process per VF.

On the host (root): boots ONE kernel-lab guest (tools/kernel-lab, Debian's 6.1 kernel + netdevsim,
max_vfs raised to N) and runs this script inside it with --in-guest. Inside, on the same PF and
the same N VFs, each given the same settings (MAC, port VLAN, spoofchk, trust, link state, max
and min TX rate):

  ip link set, 1 process/VF   a shell script with one `ip link set PF vf i ...` per VF (how
                              shell scripts and older agents do it)
  vfd restore                 the daemon starting with N live configs (as after a reboot):
                              admission + one netlink message per VF + read-back, from its log
  vfd add (FIFO requests)     N `add` requests from one client over the request FIFO (admission,
                              one message per VF, read-back, live file written, reply)

Between methods the VFs are destroyed and netdevsim's remembered settings cleared, so every
method starts from blank VFs. Everything in the guest runs under software emulation (20-35x
slower than the host): compare the ratios, not the absolute times.

    python3 bench/kernel_program.py [-n 64]          # host: boots the guest (~2-3 min)
Not part of `make test`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SPEED = 10000


def settings(i: int) -> dict:
    return {"mac": f"02:be:00:00:{i // 256:02x}:{i % 256:02x}", "vlan": 100 + i, "max": 100 + 10 * (i % 50),
            "min": 10}


# ============================================================================== guest side ======
class Lab:
    def __init__(self, n: int):
        self.pf = os.environ["VFD_LAB_PF"]
        self.numvfs = Path(os.environ["VFD_LAB_NSIM_DEV"]) / "sriov_numvfs"
        self.maxvfs = Path(os.environ["VFD_LAB_NSIM_DEBUGFS"]) / "max_vfs"
        self.n = n

    def blank(self, create: bool) -> None:
        """Destroy the VFs and clear netdevsim's remembered settings; optionally create N blank VFs."""
        self.numvfs.write_text("0")
        self.maxvfs.write_text(str(self.n))
        if create:
            self.numvfs.write_text(str(self.n))

    def vfs(self) -> dict[int, dict]:
        out = subprocess.run(["ip", "-j", "-d", "link", "show", "dev", self.pf], capture_output=True, text=True,
                             check=True).stdout
        return {v["vf"]: v for v in json.loads(out)[0].get("vfinfo_list", [])}

    def check(self, method: str) -> None:
        vfs = self.vfs()
        bad = []
        for i in range(self.n):
            s, v = settings(i), vfs.get(i)
            vl = (v or {}).get("vlan_list", [{}])[0]
            if not v or (v["address"], vl.get("vlan"), v["rate"]["max_tx"], v["rate"]["min_tx"], v["spoofchk"],
                         v["trust"], v["link_state"]) != (s["mac"], s["vlan"], s["max"], s["min"], True, False,
                                                          "enable"):
                bad.append(i)
        if bad:
            raise SystemExit(f"{method}: VFs {bad[:8]} not programmed as asked")


def run_ip(lab: Lab) -> float:
    lines = []
    for i in range(lab.n):
        s = settings(i)
        lines.append(f"ip link set {lab.pf} vf {i} mac {s['mac']} vlan {s['vlan']} qos 0 spoofchk on trust off "
                     f"state enable max_tx_rate {s['max']} min_tx_rate {s['min']}")
    with tempfile.NamedTemporaryFile("w", suffix=".sh", delete=False) as f:
        f.write("set -e\n" + "\n".join(lines) + "\n")
    t = time.perf_counter()
    subprocess.run(["sh", f.name], check=True)
    took = time.perf_counter() - t
    os.unlink(f.name)
    lab.check("ip link set")
    return took


def vf_cfg(lab: Lab, i: int) -> dict:
    s = settings(i)
    return {"name": f"bench-{i}", "pciid": lab.pf, "vfid": i, "vlans": [s["vlan"]], "strip_stag": True,
            "macs": [s["mac"]], "mac_anti_spoof": True, "allow_un_ucast": False, "link_status": "on",
            "rate": s["max"] / SPEED, "min_rate": s["min"] / SPEED}


def run_vfd(lab: Lab) -> tuple[float, float, float]:
    from tests.vfdlab import VfdProcess
    d = VfdProcess(Path(tempfile.mkdtemp(prefix="vfd-bench-")),
                   [{"id": lab.pf, "backend": "kernel", "vfs_count": lab.n, "speed": SPEED}],
                   log_level=1, reconcile_interval=600)
    d.live_dir.mkdir(parents=True, exist_ok=True)
    for i in range(lab.n):
        (d.live_dir / f"bench{i}.json").write_text(json.dumps(vf_cfg(lab, i)))
    t0 = time.perf_counter()
    d.start(timeout=600)
    ready = time.perf_counter() - t0
    m = re.search(r"restored (\d+) VFs on \d+ PFs in ([0-9.]+)s", d.log_text())
    if not m or int(m.group(1)) != lab.n:
        raise SystemExit(f"vfd restore: no 'restored {lab.n} VFs' line\n{d.log_text()[-3000:]}")
    restore = float(m.group(2))
    lab.check("vfd restore")
    print(f"  (daemon start to first answer: {ready:.1f}s, of which restore {restore:.2f}s)", flush=True)

    def req(action: str, filename: str) -> None:
        r = d.request(action, timeout=120, filename=filename)
        if r.get("state") != "OK":
            raise SystemExit(f"{action} {filename}: {r.get('msg')}")

    t = time.perf_counter()
    for i in range(lab.n):
        req("delete", f"bench{i}.json")      # puts back the original (blank) state of each VF
    deletes = time.perf_counter() - t
    for i in range(lab.n):
        d.drop(f"bench{i}", vf_cfg(lab, i))
    t = time.perf_counter()
    for i in range(lab.n):
        req("add", str(d.config_dir / f"bench{i}.json"))
    adds = time.perf_counter() - t
    lab.check("vfd add")
    d.stop()
    return restore, adds, deletes


def in_guest(n: int) -> int:
    lab = Lab(n)
    lab.blank(create=True)
    print(f"kernel {os.uname().release}, PF {lab.pf} (netdevsim), {n} VFs", flush=True)
    t_ip = run_ip(lab)
    lab.blank(create=False)                    # vfd creates the VFs itself (sriov_numvfs)
    restore, adds, deletes = run_vfd(lab)
    rows = [("ip link set, 1 process/VF", t_ip), ("vfd restore (daemon start-up)", restore),
            ("vfd add, FIFO requests", adds), ("vfd delete (restore originals)", deletes)]
    print(f"\n## Programming {n} VFs (MAC, port VLAN, spoofchk, trust, link state, max+min rate), guest TCG")
    print(f"  {'method':<32} {'total':>9} {'per VF':>10} {'ip / this':>10}")
    for name, t in rows:
        print(f"  {name:<32} {t:8.2f}s {t / n * 1000:8.1f}ms {t_ip / t:9.1f}x")
    print("  (software emulation inflates every absolute time; the ratios are the result)")
    return 0


# =============================================================================== host side ======
def on_host(n: int, timeout: int) -> int:
    if os.geteuid() != 0:
        print("bench/kernel_program.py needs root (the kernel lab: apt-get, QEMU 9p export of /)", file=sys.stderr)
        return 2
    lab = ROOT / "tools" / "kernel-lab"
    subprocess.run(["bash", str(lab / "setup.sh")], check=True)
    python = ROOT / ".venv" / "bin" / "python"
    if not python.exists():
        python = Path(sys.executable)
    t = time.monotonic()
    rc = subprocess.run([str(lab / "run-in-guest"), "--timeout", str(timeout), "--max-vfs", str(n), "--",
                         str(python), str(Path(__file__).resolve()), "--in-guest", "-n", str(n)], cwd=ROOT).returncode
    print(f"(guest run: {time.monotonic() - t:.0f}s, exit {rc})")
    return rc


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-n", type=int, default=64, help="VFs to program (netdevsim max_vfs is raised to it)")
    p.add_argument("--in-guest", action="store_true", help="run the measurement (inside the lab guest)")
    p.add_argument("--timeout", type=int, default=900, help="guest timeout, seconds")
    a = p.parse_args()
    if a.in_guest:
        if os.environ.get("VFD_LAB") != "1":
            print("--in-guest runs inside tools/kernel-lab/run-in-guest", file=sys.stderr)
            return 2
        return in_guest(a.n)
    return on_host(a.n, a.timeout)


if __name__ == "__main__":
    sys.exit(main())
