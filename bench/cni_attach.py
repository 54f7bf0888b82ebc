"""Attaching a VF to a pod: vfd-cni ADD+DEL vs Debian's host-device plugin ADD+DEL, same guest run.

On the host (root): boots ONE kernel-lab guest with two emulated 82576 ports (`run-in-guest --igb 2`)
and runs this script inside it with --in-guest. Inside, on the same VF and the same network
namespace, each CNI plugin is run as a runtime runs it (a fresh process, CNI_* environment, netconf
on stdin), no IPAM:

  host-device    moves the VF netdev into the pod and back (nothing else: no VF policy)
  vfd-cni        the deployed plugin: the static front end (.venv/bin/vfd-cni, `make install`) hands
                 each command to the daemon's CNI socket; vfd executes it (admits and programs the
                 VF -- VLAN, MAC -- on ADD and restores it on DEL, plus the same netdev move)
  vfd-cni-inproc the same commands in a Python plugin process of their own, started as the old
                 DaemonSet shim started it (`python -S -P`): the design before the CNI socket
  floor          two `python -S -P -c pass` processes: what any Python plugin pays before doing anything

Goal (issue 12): vfd-cni within 2x of host-device. Everything runs under software emulation (TCG),
which inflates process start-up the most: compare the ratio, not absolute times.

    python3 bench/cni_attach.py [-n 5]       # host: boots the guest
    python3 bench/cni_attach.py --profile    # one in-process ADD and DEL profiled (imports, cProfile, IPAM, tuning)
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


# The in-process plugin as the DaemonSet's shim ran it before the CNI socket: `python -S -P` (no site
# module, no cwd on sys.path) with vfd's directory appended after the standard library's.
FRONTEND = str(ROOT / ".venv" / "bin" / "vfd-cni")
LEAN = [sys.executable, "-S", "-P", "-c", f"import sys; sys.path.append({str(ROOT)!r}); "
        "from vfd.integrations.cni.main import main; sys.exit(main())"]


def in_guest(n: int) -> int:
    import tempfile

    from tests.cni.guest.igblab import sh, start_lab, vf_netdev, vf_pci

    root = Path(tempfile.mkdtemp(prefix="cnibench-"))
    d, pfs = start_lab(root / "vfd", vfs=1)
    try:
        dev = vf_pci(pfs[0][0], 0)
        host_name = vf_netdev(dev)
        sh("ip", "netns", "add", "benchpod")
        ns = "/var/run/netns/benchpod"
        vfd_conf = {"cniVersion": "1.0.0", "name": "bench", "type": "vfd-cni", "deviceID": dev, "vlan": 100,
                    "mac": "02:be:00:00:00:01", "vfdConfig": str(d.conf), "cacheDir": str(root / "cache")}
        hd_conf = {"cniVersion": "1.0.0", "name": "bench", "type": "host-device", "device": host_name}
        sock = {"VFD_CNI_SOCKET": str(d.cni_socket)}
        plugins = (("host-device", hd_conf, ["/usr/lib/cni/host-device"]),
                   ("vfd-cni", vfd_conf, [FRONTEND]),
                   ("vfd-cni-inproc", vfd_conf, LEAN),
                   ("python-floor", None, [sys.executable, "-S", "-P", "-c", "pass"]))
        times: dict[str, list[float]] = {label: [] for label, _, _ in plugins}
        for i in range(n + 1):                        # the first round warms caches and is dropped
            for label, conf, plugin in plugins:
                t0 = time.perf_counter()
                for cmd in ("ADD", "DEL"):
                    if conf is None:              # the floor: an interpreter that starts and exits
                        rc, out, err = subprocess.run(plugin, capture_output=True).returncode, "", ""
                    else:
                        rc, out, err = _run(plugin, cmd, conf, f"c{i}", ns, sock)
                    if rc != 0:
                        raise SystemExit(f"{label} {cmd} failed: {out} {err}")
                took = time.perf_counter() - t0
                if vf_netdev(dev) != host_name:
                    raise SystemExit(f"{label}: the VF netdev did not come back as {host_name}")
                if i:
                    times[label].append(took)
        hd, vc, vi, fl = (statistics.median(times[k]) for k in ("host-device", "vfd-cni", "vfd-cni-inproc",
                                                                 "python-floor"))
        print(f"ADD+DEL of one igb VF, median of {n} (software-emulated guest):")
        print(f"  host-device (netdev move only)                  {hd * 1000:8.0f} ms")
        print(f"  vfd-cni: static front end + vfd (deployed)      {vc * 1000:8.0f} ms   {vc / hd:.1f}x host-device"
              f"   (goal: within 2x)")
        print(f"  vfd-cni-inproc: a Python plugin process each    {vi * 1000:8.0f} ms   {vi / hd:.1f}x   (before)")
        print(f"  floor: two `python -S -P -c pass` processes     {fl * 1000:8.0f} ms   {fl / hd:.1f}x   (no work at all)")
    finally:
        d.stop()
        sh("ip", "netns", "del", "benchpod", check=False)
    return 0


def profile_in_guest() -> int:
    """One ADD and one DEL with host-local IPAM and `tuning` chained, each plugin process timed, plus
    `python -X importtime` and cProfile of vfd-cni: where an attachment's time goes."""
    import cProfile  # noqa: F401  (fails early if missing)
    import json
    import pstats
    import re
    import tempfile

    from tests.cni.guest.igblab import sh, start_lab, vf_pci

    root = Path(tempfile.mkdtemp(prefix="cniprof-"))
    python = sys.executable
    t = time.perf_counter()
    subprocess.run([python, "-c", "pass"], check=True)
    print(f"python -c pass: {(time.perf_counter() - t) * 1000:.0f} ms")
    t = time.perf_counter()
    subprocess.run([python, "-S", "-c", "pass"], check=True)
    print(f"python -S -c pass: {(time.perf_counter() - t) * 1000:.0f} ms")
    d, pfs = start_lab(root / "vfd", vfs=1)
    try:
        dev = vf_pci(pfs[0][0], 0)
        sh("ip", "netns", "add", "profpod")
        ns = "/var/run/netns/profpod"
        conf = {"cniVersion": "1.0.0", "name": "prof", "type": "vfd-cni", "deviceID": dev, "vlan": 100,
                "mac": "02:be:00:00:00:02", "vfdConfig": str(d.conf), "cacheDir": str(root / "cache"),
                "ipam": {"type": "host-local", "subnet": "10.9.0.0/24", "dataDir": str(root / "ipam")}}
        for cmd in ("ADD", "DEL"):
            prof = root / f"{cmd}.prof"
            argv = [python, "-S", "-X", "importtime", "-m", "cProfile", "-o", str(prof), "-m",
                    "vfd.integrations.cni.main"]
            env_extra = {"PYTHONPATH": str(ROOT)}
            t = time.perf_counter()
            rc, out, err = _run(argv, cmd, conf, "p0", ns, env_extra)
            took = time.perf_counter() - t
            if rc != 0:
                raise SystemExit(f"vfd-cni {cmd} failed: {out} {err}")
            imports = [ln for ln in err.splitlines() if ln.startswith("import time:") and "|" in ln
                       and ln.split("|")[1].strip().isdigit()]
            top = sorted(((int(ln.split("|")[1]), ln.split("|")[2].strip()) for ln in imports
                          if re.match(r"\S", ln.split("|")[2][1:] or "x")), reverse=True)
            print(f"\n== vfd-cni {cmd} (under -X importtime and cProfile): {took * 1000:.0f} ms, "
                  f"{len(imports)} modules imported")
            for us, name in top[:8]:
                print(f"   import {name:40s} {us / 1000:8.0f} ms")
            st = pstats.Stats(str(prof))
            wanted = ("main.py:", "iplex.py:", "netdev.py:", "ipam.py:", "vf.py:", "cache.py:", "rtnl.py:",
                      "netconf.py:", "store.py:")
            rows = []
            for (fn, line, func), (_cc, _nc, _tt, ct, _callers) in st.stats.items():
                if any(fn.endswith(w[:-1]) for w in wanted) and func[0] != "<":
                    rows.append((ct, f"{os.path.basename(fn)}:{func}"))
            for ct, name in sorted(rows, reverse=True)[:16]:
                print(f"   {name:40s} {ct * 1000:8.0f} ms cumulative")
            if cmd == "ADD":
                prev = json.loads(out)
                tconf = {"cniVersion": "1.0.0", "name": "prof", "type": "tuning", "mtu": 1400, "prevResult": prev}
                t = time.perf_counter()
                rc2, out2, err2 = _run(["/usr/lib/cni/tuning"], "ADD", tconf, "p0", ns)
                print(f"   tuning ADD (chained, separate process): {(time.perf_counter() - t) * 1000:.0f} ms rc={rc2}")
                t = time.perf_counter()
                ipc = {"cniVersion": "1.0.0", "name": "prof2", "ipam": conf["ipam"]}
                rc3, out3, err3 = _run(["/usr/lib/cni/host-local"], "ADD", ipc, "p1", ns)
                print(f"   host-local ADD alone (separate process): {(time.perf_counter() - t) * 1000:.0f} ms rc={rc3}")
                _run(["/usr/lib/cni/host-local"], "DEL", ipc, "p1", ns)
    finally:
        d.stop()
        sh("ip", "netns", "del", "profpod", check=False)
    return 0


def _run(plugin, cmd: str, conf: dict, container: str, netns: str, extra: dict | None = None):
    import json
    env = {k: v for k, v in os.environ.items() if not k.startswith("CNI_")}
    env.update({"CNI_COMMAND": cmd, "CNI_CONTAINERID": container, "CNI_NETNS": netns, "CNI_IFNAME": "net1",
                "CNI_PATH": "/usr/lib/cni"})
    env.update(extra or {})
    argv = [plugin] if isinstance(plugin, str) else plugin
    p = subprocess.run(argv, input=json.dumps(conf).encode(), env=env, capture_output=True)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def on_host(n: int, timeout: int, profile: bool = False) -> int:
    if os.geteuid() != 0:
        print("needs root (the kernel lab)", file=sys.stderr)
        return 2
    python = ROOT / ".venv" / "bin" / "python"
    # An installed package ships its .pyc files; the lab's tree is compiled the same way first (a
    # checkout run with PYTHONDONTWRITEBYTECODE would compile vfd's modules in every plugin process).
    subprocess.run([str(python), "-m", "compileall", "-q", str(ROOT / "vfd"), str(ROOT / "tests")],
                   check=True, stdout=subprocess.DEVNULL)
    what = ["--profile"] if profile else ["-n", str(n)]
    r = subprocess.run([str(ROOT / "tools" / "kernel-lab" / "run-in-guest"), "--igb", "2", "--timeout",
                        str(timeout), "--", str(python), str(Path(__file__).resolve()), "--in-guest"] + what,
                       cwd=ROOT)
    return r.returncode


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-n", type=int, default=5, help="measured ADD+DEL rounds per plugin")
    p.add_argument("--in-guest", action="store_true", help="run the measurement (inside the lab guest)")
    p.add_argument("--timeout", type=int, default=900, help="guest timeout, seconds")
    p.add_argument("--profile", action="store_true",
                   help="instead: one ADD and one DEL (with host-local IPAM, tuning chained) timed and profiled")
    a = p.parse_args()
    if a.in_guest:
        if os.environ.get("VFD_LAB_IGB") != "1":
            print("--in-guest runs inside tools/kernel-lab/run-in-guest --igb 2", file=sys.stderr)
            return 2
        return profile_in_guest() if a.profile else in_guest(a.n)
    return on_host(a.n, a.timeout, a.profile)


if __name__ == "__main__":
    sys.exit(main())
