"""add / update / delete / status / export / mirror, restart and signals, against a real daemon."""

import json
import os
import signal
import time
from pathlib import Path

import pytest

from tests.vfdlab import sim_pf, vf_config

PF = "0000:07:00.0"
MLX = "0000:81:00.0"


def test_add_moves_file_and_programs_vf(vfd):
    cfg = vf_config(PF, 1, vlans=[10, 11], macs=["02:00:00:00:01:01", "02:00:00:00:01:02"], rate=0.25,
                    allow_un_ucast=True)
    r = vfd.add("vm1", cfg)
    assert r.returncode == 0 and r.stdout.strip() == "vf added successfully: vm1"
    assert vfd.live() == ["vm1.json"] and not (vfd.config_dir / "vm1.json").exists()
    assert json.loads((vfd.live_dir / "vm1.json").read_text()) == cfg
    vf = vfd.vf_state(1)
    assert vf["mac"] == "02:00:00:00:01:01" and vf["macs"] == ["02:00:00:00:01:02"] and vf["vlans"] == [10, 11]
    assert (vf["max_rate"], vf["uucast"], vf["bcast"], vf["mac_anti_spoof"]) == (2500, True, True, True)


def test_refused_add_renames_to_error_and_changes_nothing(vfd):
    vfd.add("vm1", vf_config(PF, 1, macs=["02:00:00:00:01:01"]))
    before = vfd.snapshot()
    cases = {
        "badvlan": (vf_config(PF, 2, vlans=[5000]), "field 'vlans[0]'"),
        "dupvf": (vf_config(PF, 1), "rule vf_free"),
        "dupmac": (vf_config(PF, 2, macs=["02:00:00:00:01:01"]), "rule mac_unique"),
        "nopf": (vf_config("0000:99:00.0", 2), "rule pf_managed"),
        "range": (vf_config(PF, 8), "rule vfid_range"),
        "cap": (vf_config(PF, 2, min_rate=0.1), "guaranteed TX rate is not supported by driver ixgbe"),
        "notjson": ("{nope", "not valid JSON"),
    }
    for port, (cfg, needle) in cases.items():
        r = vfd.add(port, cfg)
        assert r.returncode == 1 and needle in r.stderr, (port, r.stderr)
        assert (vfd.config_dir / f"{port}.json.error").exists()
    after = vfd.snapshot()
    assert after["sim"] == before["sim"] and after["live"] == before["live"]


def test_add_of_already_live_port_refused(vfd):
    vfd.add("vm1", vf_config(PF, 1))
    r = vfd.add("vm1", vf_config(PF, 2))
    assert r.returncode == 1 and "already live" in r.stderr and "use update" in r.stderr


def test_update_applies_only_the_difference(vfd):
    vfd.add("vm1", vf_config(PF, 1, vlans=[10], macs=["02:00:00:00:01:01"]))
    mac_before = vfd.vf_state(1)["mac"]
    vfd.drop("vm1", vf_config(PF, 1, vlans=[10, 20], macs=["02:00:00:00:01:01"]))
    r = vfd.iplex("update", "vm1")
    assert r.returncode == 0 and "updated successfully" in r.stdout
    assert vfd.vf_state(1)["vlans"] == [10, 20] and vfd.vf_state(1)["mac"] == mac_before
    assert json.loads((vfd.live_dir / "vm1.json").read_text())["vlans"] == [10, 20]
    assert "(vlans)" in vfd.log_text()                     # the manager logs the changed fields


def test_update_checked_against_others_but_not_itself(vfd):
    vfd.add("vm1", vf_config(PF, 1, macs=["02:00:00:00:01:01"]))
    vfd.add("vm2", vf_config(PF, 2, macs=["02:00:00:00:02:01"]))
    vfd.drop("vm1", vf_config(PF, 1, macs=["02:00:00:00:01:01"], vlans=[99]))
    assert vfd.iplex("update", "vm1").returncode == 0
    before = vfd.snapshot()
    vfd.drop("vm1", vf_config(PF, 1, macs=["02:00:00:00:02:01"]))
    r = vfd.iplex("update", "vm1")
    assert r.returncode == 1 and "rule mac_unique" in r.stderr
    after = vfd.snapshot()
    assert after["sim"] == before["sim"] and after["live"] == before["live"]


def test_update_failure_on_the_nic_keeps_old_config_everywhere(vfd):
    vfd.add("vm1", vf_config(PF, 1, vlans=[10], rate=0.1))
    before = vfd.snapshot()
    (vfd.sim_dir / f"{PF}.faults.json").write_text(json.dumps({"fail": ["max_rate"]}))
    vfd.drop("vm1", vf_config(PF, 1, vlans=[10, 30], rate=0.5))
    r = vfd.iplex("update", "vm1")
    assert r.returncode == 1 and "max_rate" in r.stderr
    after = vfd.snapshot()
    assert after["sim"] == before["sim"] and after["live"] == before["live"]
    assert vfd.vf_state(1)["vlans"] == [10]


def test_update_can_move_to_another_vf(vfd):
    vfd.add("vm1", vf_config(PF, 1, macs=["02:00:00:00:01:01"], name="vm1"))
    vfd.drop("vm1", vf_config(PF, 3, macs=["02:00:00:00:01:01"], name="vm1"))
    assert vfd.iplex("update", "vm1").returncode == 0
    assert vfd.vf_state(3)["mac"] == "02:00:00:00:01:01" and vfd.vf_state(1)["vlans"] == []


def test_update_name_must_match_and_port_must_be_live(vfd):
    vfd.add("vm1", vf_config(PF, 1, name="tenant-a/vm1"))
    vfd.drop("vm1", vf_config(PF, 1, name="tenant-b/vm1"))
    r = vfd.iplex("update", "vm1")
    assert r.returncode == 1 and "did not match" in r.stderr
    vfd.drop("vm9", vf_config(PF, 4))
    r = vfd.iplex("update", "vm9")
    assert r.returncode == 1 and "is not a live VF config; use add" in r.stderr


def test_delete_clears_vf_and_removes_file(vfd):
    vfd.add("vm1", vf_config(PF, 1, macs=["02:00:00:00:01:01"], vlans=[10]))
    r = vfd.iplex("delete", "vm1")
    assert r.returncode == 0 and r.stdout.strip() == "vf deleted successfully: vm1"
    assert vfd.live() == [] and not list(vfd.config_dir.glob("vm1*"))
    vf = vfd.vf_state(1)
    assert vf["vlans"] == [] and vf["macs"] == [] and vf["mac"] != "02:00:00:00:01:01" and vf["max_rate"] == 0
    # the MAC is free again for another VF
    assert vfd.add("vm2", vf_config(PF, 2, macs=["02:00:00:00:01:01"])).returncode == 0


def test_delete_name_mismatch_keeps_everything(vfd):
    vfd.add("vm1", vf_config(PF, 1, name="tenant-a/vm1"))
    (vfd.live_dir / "vm1.json").write_text(json.dumps(vf_config(PF, 1, name="intruder")))
    before = vfd.snapshot()
    r = vfd.iplex("delete", "vm1")
    assert r.returncode == 1 and "expected 'tenant-a/vm1', found 'intruder'" in r.stderr
    assert vfd.snapshot() == before


def test_delete_unknown(vfd):
    r = vfd.iplex("delete", "ghost")
    assert r.returncode == 1 and "doesn't exist" in r.stderr
    reply = vfd.request("delete", filename="ghost")
    assert reply["state"] == "ERROR" and "not a live VF config" in reply["msg"][0]


def test_delete_keep(make_vfd):
    d = make_vfd(delete_keep=True)
    d.add("vm1", vf_config(PF, 1))
    assert d.iplex("delete", "vm1").returncode == 0
    assert (d.config_dir / "vm1.json-").exists() and d.live() == []


def test_status_shows_desired_vs_programmed_and_drift(vfd):
    vfd.add("vm1", vf_config(PF, 1, vlans=[10], macs=["02:00:00:00:01:01"]))
    r = vfd.iplex("status", "vm1")
    assert r.returncode == 0 and "in sync" in r.stdout and "0000:07:10.2" in r.stdout
    # the NIC is changed behind vfd's back and refuses to be put back (a driver fault)
    (vfd.sim_dir / f"{PF}.faults.json").write_text(json.dumps({"fail": ["vlans"]}))
    state = vfd.sim_state()
    state["vfs"]["1"]["vlans"] = [10, 666]
    (vfd.sim_dir / f"{PF}.json").write_text(json.dumps(state))
    for _ in range(40):
        r = vfd.iplex("status", "vm1")
        if "MISMATCH" in r.stdout:
            break
        time.sleep(0.05)
    assert "MISMATCH" in r.stdout and "1 field(s) differ" in r.stdout
    assert "last apply error" in r.stdout and "set vlans failed" in r.stdout
    (vfd.sim_dir / f"{PF}.faults.json").unlink()
    vfd.proc.send_signal(signal.SIGHUP)                   # SIGHUP re-applies every VF
    for _ in range(50):
        if "in sync" in vfd.iplex("status", "vm1").stdout:
            break
        time.sleep(0.1)
    assert vfd.vf_state(1)["vlans"] == [10]


def test_periodic_reconcile_repairs_drift(make_vfd):
    """Drift no event reported (the writer has not closed the file: no inotify event) is still
    found by the periodic reconcile."""
    d = make_vfd(reconcile_interval=0.5)
    d.add("vm1", vf_config(PF, 1, vlans=[10]))
    state = d.sim_state()
    state["vfs"]["1"]["vlans"] = [10, 666]
    state["vfs"]["1"]["max_rate"] = 5
    path = d.sim_dir / f"{PF}.json"
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    try:
        os.write(fd, json.dumps(state).encode())
        for _ in range(50):
            if d.vf_state(1)["vlans"] == [10]:
                break
            time.sleep(0.1)
    finally:
        os.close(fd)
    assert d.vf_state(1)["vlans"] == [10] and d.vf_state(1)["max_rate"] == 0
    assert "drift on PF 0000:07:00.0 VF 1 (vm1): vlans, max_rate" in d.log_text()


def test_export_replies_with_the_config_and_writes_no_file(vfd):
    """The daemon never writes a file where a request says (issue 9.1): the config is in the reply."""
    cfg = vf_config(PF, 1)
    vfd.add("vm1", cfg)
    before = vfd.snapshot()
    reply = vfd.request("export", filename="vm1", output=str(vfd.config_dir / "planted.json"))
    assert reply["state"] == "OK" and "exported" in reply["msg"][0]
    assert json.loads(reply["data"]["config"]) == cfg and reply["data"]["port"] == "vm1"
    assert vfd.snapshot() == before and not (vfd.config_dir / "planted.json").exists()


def test_runtime_mirror_is_persisted(vfd):
    vfd.add("vm1", vf_config(PF, 1))
    r = vfd.iplex("mirror", "0", "1", "in", "4")
    assert r.returncode == 0, r.stderr
    assert vfd.vf_state(1)["mirror"] == {"target": 4, "direction": "in"}
    assert json.loads((vfd.live_dir / "vm1.json").read_text())["mirror"] == {"target": 4, "direction": "in"}
    assert "vf 1 (in) ==> vf 4" in vfd.iplex("show", "mirror").stdout
    assert vfd.iplex("mirror", "0", "1", "in", "1").returncode == 1      # itself
    assert vfd.iplex("mirror", "0", "1", "all", "8").returncode == 1     # == VF count (original off-by-one)
    assert vfd.iplex("mirror", "0", "1", "off").returncode == 0
    assert vfd.vf_state(1)["mirror"] is None


def test_mlx5_capabilities_through_the_daemon(vfd):
    r = vfd.add("c", vf_config(MLX, 0, vlans=[300], strip_stag=True, vlan_proto="802.1ad", min_rate=0.1,
                               rate=0.5, link_status="on"))
    assert r.returncode == 0, r.stderr
    vf = vfd.vf_state(0, MLX)
    assert (vf["vlan_proto"], vf["insert"], vf["min_rate"], vf["link"]) == ("802.1ad", 300, 1000, "on")
    r = vfd.add("d", vf_config(MLX, 1, allow_bcast=False))
    assert r.returncode == 1 and "broadcast admission control is not supported by driver mlx5" in r.stderr


def test_restart_reproduces_nic_state_exactly(make_vfd):
    d = make_vfd([sim_pf(PF, 8), sim_pf(MLX, 4, "mlx5")])
    for vf in range(4):
        assert d.add(f"vm{vf}", vf_config(PF, vf, vlans=[10 + vf], macs=[f"02:00:00:00:00:{vf:02x}"])).returncode == 0
    d.add("m0", vf_config(MLX, 0, vlans=[5], strip_stag=True, rate=0.1, macs=["02:00:00:00:99:01"]))
    sim_before = d.snapshot()["sim"]
    assert d.stop() == 0
    # the NIC loses everything (power cycle): the daemon must program it all back
    for p in d.sim_dir.glob("*.json"):
        p.unlink()
    d.start()
    after = {k: json.loads(v) for k, v in d.snapshot()["sim"].items()}
    before = {k: json.loads(v) for k, v in sim_before.items()}
    for pf in before:
        for vfid, vf in before[pf]["vfs"].items():
            if vf["vlans"]:
                assert after[pf]["vfs"][vfid] == vf
            else:
                assert after[pf]["vfs"][vfid]["vlans"] == []


def test_restart_after_kill9_and_stale_nic_state(make_vfd):
    d = make_vfd()
    d.add("vm1", vf_config(PF, 1, vlans=[10]))
    d.kill9()
    state = d.sim_state()
    state["vfs"]["5"]["vlans"] = [77]                     # leftovers of a VF nobody configured
    state["vfs"]["1"]["vlans"] = [10, 11]                 # and drift on a configured one
    (d.sim_dir / f"{PF}.json").write_text(json.dumps(state))
    d.start()
    assert d.vf_state(5)["vlans"] == [] and d.vf_state(1)["vlans"] == [10]


def test_start_quarantines_live_configs_that_no_longer_admit(make_vfd):
    d = make_vfd()
    d.add("vm1", vf_config(PF, 1))
    d.add("vm2", vf_config(PF, 2))
    d.stop()
    (d.live_dir / "vm2.json").write_text(json.dumps(vf_config(PF, 2, vlans=[9999])))
    d.start()
    assert d.live() == ["vm1.json"] and (d.config_dir / "vm2.json-").exists()
    assert "no longer admits" in d.log_text()


def test_bad_main_config_refused_at_start(make_vfd):
    d = make_vfd(start=False, cpu_mask="0x3")
    d.write_main()
    import subprocess
    from tests.vfdlab import BIN
    r = subprocess.run([str(BIN / "vfd"), "-f", "-p", str(d.conf)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "cpu_mask" in r.stderr and "exactly one bit" in r.stderr


def test_callbacks_run_without_shell_as_owner(make_vfd, tmp_path):
    d = make_vfd()
    marker = tmp_path / "cb"
    d.add("vm1", vf_config(PF, 1, start_cb=f"/usr/bin/touch {marker}.start", stop_cb=f"/usr/bin/touch {marker}.stop"))
    d.stop()
    assert (tmp_path / "cb.stop").exists()
    d.start()
    for _ in range(50):
        if (tmp_path / "cb.start").exists():
            break
        time.sleep(0.1)
    assert (tmp_path / "cb.start").exists()
    assert os.stat(tmp_path / "cb.start").st_uid == os.stat(d.live_dir / "vm1.json").st_uid


def test_sigterm_exits_cleanly(make_vfd):
    d = make_vfd()
    d.add("vm1", vf_config(PF, 1, mirror={"target": 2, "direction": "all"}))
    assert d.stop(signal.SIGTERM) == 0
    assert "vfd stopped" in d.log_text()
    assert d.vf_state(1)["mirror"] is None                # mirrors off at shutdown


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGQUIT])
def test_other_stop_signals(make_vfd, sig):
    d = make_vfd()
    assert d.stop(sig) == 0


def test_callback_runs_as_the_config_files_owner(make_vfd, tmp_path):
    """The drop file belongs to 'nobody': the live copy keeps that owner and start_cb runs as it."""
    import pwd
    if os.geteuid() != 0:
        pytest.skip("needs root to own a file as another user")
    import shutil
    import tempfile
    nobody = pwd.getpwnam("nobody").pw_uid
    shared = Path(tempfile.mkdtemp(prefix="vfd-cb-"))      # pytest's tmp_path is not reachable by nobody
    shared.chmod(0o1777)
    d = make_vfd()
    path = d.drop("vm1", vf_config(PF, 1, start_cb=f"/usr/bin/touch {shared}/by-owner"))
    os.chown(path, nobody, -1)
    assert d.iplex("add", "vm1").returncode == 0
    assert os.stat(d.live_dir / "vm1.json").st_uid == nobody
    d.stop()
    d.start()
    for _ in range(100):         # the file, then (once vfd has reaped the callback) its log line
        if (shared / "by-owner").exists() and "start_cb for vm1 exited" in d.log_text():
            break
        time.sleep(0.1)
    try:
        assert os.stat(shared / "by-owner").st_uid == nobody
        assert "start_cb for vm1 exited 0" in d.log_text()
    finally:
        shutil.rmtree(shared)


def test_sim_register_edits_are_events_drift_repaired_at_once(make_vfd):
    """No waiting for the periodic reconcile (set to a minute here): the sim reports the edit."""
    d = make_vfd(reconcile_interval=60)
    d.add("vm1", vf_config(PF, 1, vlans=[10], macs=["02:00:00:00:01:01"]))
    state = d.sim_state()
    state["vfs"]["1"]["vlans"] = [10, 666]
    (d.sim_dir / f"{PF}.json").write_text(json.dumps(state))
    for _ in range(40):
        if d.vf_state(1)["vlans"] == [10]:
            break
        time.sleep(0.05)
    assert d.vf_state(1)["vlans"] == [10]
    assert "event drift on PF 0000:07:00.0 VF 1" in d.log_text()


def test_sim_link_flap_reapplies_the_pf(make_vfd):
    d = make_vfd(reconcile_interval=60)
    d.add("vm1", vf_config(PF, 1, vlans=[10], macs=["02:00:00:00:01:01"]))
    d.add("vm2", vf_config(PF, 2, vlans=[20], macs=["02:00:00:00:02:01"]))
    state = d.sim_state()
    state["link"] = "down"
    (d.sim_dir / f"{PF}.json").write_text(json.dumps(state))
    for _ in range(40):
        if "event link_down" in d.log_text():
            break
        time.sleep(0.05)
    assert d.iplex("show", "pfs").stdout.split("\n")[1].split()[3] == "DOWN"
    state = d.sim_state()
    state["link"] = "up"                                  # the NIC comes back with its VFs blank
    for vf in ("1", "2"):
        state["vfs"][vf].update(vlans=[], macs=[], mac="02:99:99:99:99:99")
    (d.sim_dir / f"{PF}.json").write_text(json.dumps(state))
    for _ in range(40):
        if d.vf_state(1)["vlans"] == [10] and d.vf_state(2)["vlans"] == [20]:
            break
        time.sleep(0.05)
    assert d.vf_state(1)["mac"] == "02:00:00:00:01:01" and d.vf_state(2)["vlans"] == [20]
    assert "event link_up on PF 0000:07:00.0" in d.log_text()


def test_qos_shares_are_normalised_and_programmed(make_vfd):
    tcs = [{"pri": 0, "min_bw": 40}, {"pri": 1, "min_bw": 60, "lsp": True}]
    d = make_vfd([sim_pf(PF, 8, "ixgbe", tclasses=tcs, vf_oversubscription=True, bw_grps={"bwg1": [1]})],
                 enable_qos=True)
    for vf, share in ((1, "50%"), (2, "50%"), (3, "20%")):
        r = d.add(f"q{vf}", vf_config(PF, vf, name=f"q{vf}", queues=[{"priority": 0, "share": share},
                                                                      {"priority": 1, "share": "10%"}]))
        assert r.returncode == 0, r.stderr
    qos = d.sim_state()["qos"]
    assert [t["pri"] for t in qos["tclasses"]] == [0, 1] and qos["tclasses"][1]["bwg"] == 1
    assert {v: s["0"] for v, s in qos["shares"].items()} == {"1": 42, "2": 42, "3": 16}
    assert sum(s["1"] for s in qos["shares"].values()) == 100
    assert d.iplex("delete", "q3").returncode == 0
    assert {v: s["0"] for v, s in d.sim_state()["qos"]["shares"].items()} == {"1": 50, "2": 50}
    assert "tc0 100%" in d.iplex("show", "extended").stdout


def test_qos_on_a_driver_without_it_is_refused_at_start(make_vfd):
    d = make_vfd([sim_pf(PF, 8, "bnxt")], start=False, enable_qos=True)
    d.write_main()
    import subprocess
    from tests.vfdlab import BIN
    r = subprocess.run([str(BIN / "vfd"), "-f", "-p", str(d.conf)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "per-TC QoS (DCB) is not supported by driver bnxt" in r.stderr


def test_daemonised_start_writes_pid_file_and_removes_it(make_vfd):
    import subprocess
    from tests.vfdlab import BIN
    d = make_vfd(start=False)
    d.write_main()
    r = subprocess.run([str(BIN / "vfd"), "-p", str(d.conf)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0                              # the parent returns once the child runs
    pid_file = d.root / "vfd.pid"
    for _ in range(100):
        if pid_file.exists() and d.iplex("--timeout", "1", "ping").returncode == 0:
            break
        time.sleep(0.1)
    pid = int(pid_file.read_text())
    os.kill(pid, signal.SIGTERM)
    for _ in range(100):
        if not pid_file.exists():
            break
        time.sleep(0.1)
    assert not pid_file.exists()

    def gone() -> bool:
        try:
            return "zombie" in open(f"/proc/{pid}/status").read().lower()
        except FileNotFoundError:
            return True
    for _ in range(100):
        if gone():
            break
        time.sleep(0.05)
    assert gone()
