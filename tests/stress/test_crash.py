"""kill -9 at random moments during a stream of adds, updates and deletes; restart; check that
the store and the NIC agree exactly (issue 3)."""

import json
import random
import subprocess
import threading
import time

from vfd.model.vfconfig import parse_vf_config
from tests.vfdlab import BIN, sim_pf, vf_config

PF = "0000:07:00.0"
VFS = 16


def workload(d, rng: random.Random, stop_after: float) -> None:
    """Fire requests from a client process until killed or time is up (replies may never come)."""
    deadline = time.monotonic() + stop_after
    while time.monotonic() < deadline:
        n = rng.randrange(VFS)
        port = f"p{n}"
        action = rng.choice(["add", "update", "delete"])
        cfg = vf_config(PF, n, vlans=[rng.randrange(1, 4095)], name=port,
                        macs=[f"02:00:00:00:{n:02x}:{rng.randrange(256):02x}"], rate=rng.choice([0, 0.1, 0.5]))
        if action != "delete":
            d.drop(port, cfg)
        subprocess.run([str(BIN / "iplex"), "--conf", str(d.conf), "--timeout", "2", action, port],
                       capture_output=True)


def check_consistent(d) -> int:
    seen: dict[int, str] = {}
    live = sorted(d.live_dir.glob("*.json"))
    for path in live:
        cfg = parse_vf_config(path.read_bytes(), str(path))          # every live file parses
        assert cfg.vfid not in seen, f"VF {cfg.vfid} claimed by {seen[cfg.vfid]} and {path.name}"
        seen[cfg.vfid] = path.name
    for path in live:
        r = d.iplex("status", path.stem)
        assert r.returncode == 0 and r.stdout.rstrip().endswith("in sync"), r.stdout + r.stderr
    for vfid in range(VFS):
        vf = d.vf_state(vfid)
        if vfid in seen:
            cfg = json.loads((d.live_dir / seen[vfid]).read_text())
            assert vf["vlans"] == cfg["vlans"] and vf["mac"] == cfg["macs"][0]
        else:
            assert vf["vlans"] == [] and vf["macs"] == [], f"VF {vfid} not live but programmed: {vf}"
    return len(live)


def test_kill9_during_churn_then_restart_is_consistent(make_vfd):
    rng = random.Random(4242)
    d = make_vfd([sim_pf(PF, VFS, "i40e")])
    rounds = 6
    for r in range(rounds):
        t = threading.Thread(target=workload, args=(d, rng, 3.0), daemon=True)
        t.start()
        time.sleep(rng.uniform(0.3, 2.0))
        d.kill9()
        t.join(10)
        d.start()
        n = check_consistent(d)
        print(f"round {r}: {n} live VFs consistent after kill -9")
    assert "restored" in d.log_text()
