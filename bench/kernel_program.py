"""Programming N VFs on a real kernel: vfd's kernel backend vs `ip link set` and raw pyroute2.

On the host (root): boots ONE kernel-lab guest (tools/kernel-lab, Debian's 6.1 kernel + netdevsim,
max_vfs raised to N) and runs this script inside it with --in-guest. Inside, on the same PF and
the same N VFs, each given the same settings (MAC, port VLAN, spoofchk, trust, link state, max
and min TX rate):

  ip link set, 1 process/VF   a shell script with one `ip link set PF vf i ...` per VF (how
                              shell scripts and older agents do it)
  pyroute2, 1 message/VF      IPRoute().link("set", vf={...}) per VF, every attribute in it
  pyroute2, 1 message         IPRoute().link("set", vf=[...all N...]): the kernel walks the list
  vfd restore                 the daemon starting with N live configs (as after a reboot):
                              admission, the VFs batched per PF, read-back; from its log line
  vfd add (socket requests)   N `add` requests from one client over the request socket (as iplex sends them; admission,
                              one message per VF, read-back, live file written, reply)
  vfd delete                  N `delete` requests (the original state of each VF put back)

It also prints where the daemon's start-up goes: the interpreter, `import pyroute2`, vfd's own
imports, and the daemon's start to its first answer (polled in-process: an `iplex` process costs
seconds under emulation).

The two figures the adds goal compares are measured in ROUNDS paired rounds, each with the
daemon running and holding no live VF: vfd deletes the N VFs (each put back to its blank
original), the daemon is paused (SIGSTOP, so it takes no CPU) and raw pyroute2 programs the N VFs
with one message per VF, the VFs are blanked again (untimed), the daemon resumes and N adds go
through its socket (the client iplex runs, called in this process with file names built before
the clock starts, as pyroute2's specs are). Each round gives one ratio (adds / pyroute2) from two runs seconds apart; the
median ratio is the result (the guest's speed wanders by +-25% and more within a run, far more
than between two neighbouring measurements).

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
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SPEED = 10000
ROUNDS = 9          # paired rounds: vfd deletes, pyroute2 1 message/VF, vfd adds (the median ratio counts)


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


def pyroute2_spec(i: int) -> dict:
    s = settings(i)
    return {"vf": i, "mac": s["mac"], "vlan": s["vlan"], "spoofchk": 1, "trust": 0, "link_state": 1,
            "rate": {"min_tx_rate": s["min"], "max_tx_rate": s["max"]}}


def set_vfs(lab: Lab, specs: list[dict], one_message: bool = False) -> float:
    """Raw pyroute2 (its synchronous IPRoute, as a script would use it): the time of the messages."""
    from pyroute2 import IPRoute
    ipr = IPRoute()
    try:
        index = ipr.link_lookup(ifname=lab.pf)[0]
        t = time.perf_counter()
        if one_message:
            ipr.link("set", index=index, vf=specs)
        else:
            for spec in specs:
                ipr.link("set", index=index, vf=spec)
        return time.perf_counter() - t
    finally:
        ipr.close()


def run_pyroute2(lab: Lab, one_message: bool) -> float:
    """Raw pyroute2 programming the N VFs (blank before), checked after."""
    took = set_vfs(lab, [pyroute2_spec(i) for i in range(lab.n)], one_message)
    lab.check("pyroute2 " + ("1 message" if one_message else "1 message/VF"))
    return took


def timed(cmd: list[str], runs: int = 2) -> float:
    best = None
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        took = time.perf_counter() - t
        best = took if best is None else min(best, took)
    return best


def start_breakdown(lab: Lab) -> dict[str, float]:
    py = str(ROOT / ".venv" / "bin" / "python")
    if not Path(py).exists():
        py = sys.executable
    lab.blank(create=False)
    t = time.perf_counter()
    lab.numvfs.write_text(str(lab.n))                      # VF creation (netdevsim: synchronous)
    created = time.perf_counter() - t
    lab.blank(create=False)
    return {"sriov_numvfs 0 -> N": created,
            "python -c pass": timed([py, "-c", "pass"]),
            "python -c 'import pyroute2'": timed([py, "-c", "import pyroute2"]),
            "python -c 'import vfd.daemon.main'": timed([py, "-c", "import vfd.daemon.main"]),
            "python -c 'import vfd's kernel backend'": timed([py, "-c", "import vfd.backends.kernel"]),
            "python -c 'import both'": timed([py, "-c", "import vfd.daemon.main, vfd.backends.kernel"])}


def vf_cfg(lab: Lab, i: int) -> dict:
    s = settings(i)
    return {"name": f"bench-{i}", "pciid": lab.pf, "vfid": i, "vlans": [s["vlan"]], "strip_stag": True,
            "macs": [s["mac"]], "mac_anti_spoof": True, "allow_un_ucast": False, "link_status": "on",
            "rate": s["max"] / SPEED, "min_rate": s["min"] / SPEED}


def blank_spec(i: int, blank: dict) -> dict:
    """pyroute2's spec putting VF i back to the blank state read before anything was set."""
    return {"vf": i, "mac": blank["address"], "vlan": 0, "spoofchk": int(blank["spoofchk"]),
            "trust": int(blank["trust"]), "link_state": {"auto": 0, "enable": 1, "disable": 2}[blank["link_state"]],
            "rate": {"min_tx_rate": 0, "max_tx_rate": 0}}


def run_vfd(lab: Lab, blank: dict) -> dict:
    """The daemon started with N live configs (restore), then ROUNDS paired rounds (module doc)."""
    from tests.vfdlab import VfdProcess
    from vfd.iplex import request
    d = VfdProcess(Path(tempfile.mkdtemp(prefix="vfd-bench-")),
                   [{"id": lab.pf, "backend": "kernel", "vfs_count": lab.n, "speed": SPEED}],
                   log_level=1, reconcile_interval=600)
    d.live_dir.mkdir(parents=True, exist_ok=True)
    for i in range(lab.n):
        (d.live_dir / f"bench{i}.json").write_text(json.dumps(vf_cfg(lab, i)))
    t0 = time.perf_counter()
    d.start(wait=False)
    while True:                                  # first answer, polled in-process (no iplex process)
        if d.proc.poll() is not None:
            raise SystemExit(f"vfd exited:\n{d.log_text()[-3000:]}")
        if d.fifo.exists():
            try:
                if request(str(d.fifo), "ping", 2).get("state") == "OK":
                    break
            except Exception:  # noqa: BLE001 - not answering yet
                pass
        time.sleep(0.02)
    ready = time.perf_counter() - t0
    m = re.search(r"restored (\d+) VFs on \d+ PFs in ([0-9.]+)s", d.log_text())
    if not m or int(m.group(1)) != lab.n:
        raise SystemExit(f"vfd restore: no 'restored {lab.n} VFs' line\n{d.log_text()[-3000:]}")
    restore = float(m.group(2))
    lab.check("vfd restore")
    print(f"  (daemon start to first answer: {ready:.1f}s, of which restore {restore:.2f}s)", flush=True)

    fifo = str(d.fifo)

    def req(action: str, filename: str) -> None:
        r = request(fifo, action, 120, filename=filename)      # the client iplex runs, in this process
        if r.get("state") != "OK":
            raise SystemExit(f"{action} {filename}: {r.get('msg')}")

    # the requests' arguments are built before the clock starts, as the pyroute2 runs' specs are
    configs = [str(d.config_dir / f"bench{i}.json") for i in range(lab.n)]
    names = [f"bench{i}.json" for i in range(lab.n)]

    rounds = []
    for _ in range(ROUNDS):
        t = time.perf_counter()
        for name in names:
            req("delete", name)                  # puts back the original (blank) state of each VF
        deleted = time.perf_counter() - t
        d.proc.send_signal(signal.SIGSTOP)         # the daemon takes no CPU while pyroute2 is timed
        try:
            raw = run_pyroute2(lab, one_message=False)
            set_vfs(lab, [blank_spec(i, blank) for i in range(lab.n)])
        finally:
            d.proc.send_signal(signal.SIGCONT)
        time.sleep(0.5)                            # the daemon's check of the events it missed
        req("ping", "")
        for i in range(lab.n):
            d.drop(f"bench{i}", vf_cfg(lab, i))
        t = time.perf_counter()
        for name in configs:
            req("add", name)
        added = time.perf_counter() - t
        lab.check("vfd add")
        rounds.append({"pyroute2": raw, "add": added, "delete": deleted})
    d.stop()
    for r in rounds:
        print(f"  (round: pyroute2 1 msg/VF {r['pyroute2']:.2f}s, vfd adds {r['add']:.2f}s = "
              f"{r['add'] / r['pyroute2']:.2f}x, deletes {r['delete']:.2f}s)", flush=True)
    return {"restore": restore, "ready": ready, "rounds": rounds}


def in_guest(n: int) -> int:
    lab = Lab(n)
    lab.blank(create=True)
    blank = lab.vfs()[0]                       # what a new VF reads (put back between rounds)
    print(f"kernel {os.uname().release}, PF {lab.pf} (netdevsim), {n} VFs", flush=True)
    t_ip = run_ip(lab)
    lab.blank(create=True)
    t_pr1_fresh = run_pyroute2(lab, one_message=False)
    lab.blank(create=True)
    t_prn = run_pyroute2(lab, one_message=True)
    lab.blank(create=False)                    # vfd creates the VFs itself (sriov_numvfs)
    v = run_vfd(lab, blank)
    rounds, restore, ready = v["rounds"], v["restore"], v["ready"]
    t_pr1 = statistics.median(r["pyroute2"] for r in rounds)
    adds = statistics.median(r["add"] for r in rounds)
    deletes = statistics.median(r["delete"] for r in rounds)
    add_ratio = statistics.median(r["add"] / r["pyroute2"] for r in rounds)
    rows = [("ip link set, 1 process/VF", t_ip), ("pyroute2, 1 message/VF (new VFs)", t_pr1_fresh),
            ("pyroute2, 1 message/VF (median)", t_pr1), ("pyroute2, 1 message", t_prn),
            ("vfd restore (daemon start-up)", restore), ("vfd add, socket requests (median)", adds),
            ("vfd delete, restore originals (median)", deletes)]
    print(f"\n## Programming {n} VFs (MAC, port VLAN, spoofchk, trust, link state, max+min rate), guest TCG")
    print(f"  {'method':<40} {'total':>9} {'per VF':>10} {'ip / this':>10} {'pyroute2 1 msg/VF / this':>25}")
    for name, t in rows:
        print(f"  {name:<40} {t:8.2f}s {t / n * 1000:8.1f}ms {t_ip / t:9.1f}x {t_pr1 / t:24.2f}x")
    print(f"  goals: restore >= 1x pyroute2 1 msg/VF: {t_pr1 / restore:.2f}x; adds within 2x of it: "
          f"{add_ratio:.2f}x its time (median of {len(rounds)} paired rounds; "
          f"{min(r['add'] / r['pyroute2'] for r in rounds):.2f}-{max(r['add'] / r['pyroute2'] for r in rounds):.2f}x)")
    br = start_breakdown(lab)
    print("\n## Daemon start-up with %d live VFs (guest TCG)" % n)
    for name, t in br.items():
        print(f"  {name:<40} {t:7.2f}s")
    print(f"  {'daemon start to first answer':<40} {ready:7.2f}s (restore {restore:.2f}s of it)")
    floor = br["python -c 'import pyroute2'"] + restore
    print(f"  goal: within 2x of import pyroute2 + restore = {floor:.2f}s: {ready / floor:.2f}x")
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
    # An installed package ships its .pyc files; a checkout run with PYTHONDONTWRITEBYTECODE (or
    # from a read-only tree) compiles vfd's ~30 modules at every start: ~10 s under emulation.
    subprocess.run([str(python), "-m", "compileall", "-q", str(ROOT / "vfd"), str(ROOT / "tests" / "vfdlab.py")],
                   check=True, stdout=subprocess.DEVNULL)
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
