"""Replies people and programs read (issues 10.6, 10.9, 10.10, 10.15, 9.9): `data`, clear errors for
odd arguments, aligned tables, units, escaped names, and counter baselines that survive a restart."""

import json

from tests.integration.test_transactions import Rig
from tests.vfdlab import sim_pf, vf_config

PF = "0000:07:00.0"
MLX = "0000:81:00.0"


def test_status_data_and_in_sync(vfd):
    vfd.add("vm1", vf_config(PF, 1, vlans=list(range(100, 140)), mirror={"target": 4, "direction": "in"}))
    reply = vfd.request("status", filename="vm1.json")
    data = reply["data"]
    assert reply["state"] == "OK" and data["in_sync"] is True and data["apply_error"] is None
    assert (data["port"], data["pf"], data["vf"], data["pci"]) == ("vm1", PF, 1, "0000:07:10.2")
    mirror = next(f for f in data["fields"] if f["field"] == "mirror")
    assert mirror == {"field": "mirror", "desired": {"target": 4, "direction": "in"},
                      "programmed": {"direction": "in", "target": 4}, "differs": False, "state": "ok"}
    # the table aligns on the longest value (40 VLANs): every row's columns start at the same place
    lines = reply["msg"][1:-1]
    starts = {line.index(" " + json.dumps(False)) for line in lines if line.startswith("strip ")}
    header = lines[0]
    vlan_row = next(line for line in lines if line.startswith("vlans "))
    strip_row = next(line for line in lines if line.startswith("strip "))
    assert header.index("programmed") == strip_row.rindex("false") == vlan_row.index("[", vlan_row.index("]"))
    assert starts and "MISMATCH" not in "\n".join(lines)


def test_status_reports_drift_in_data_and_stays_ok(vfd):
    vfd.add("vm1", vf_config(PF, 1, vlans=[10]))
    (vfd.sim_dir / f"{PF}.faults.json").write_text(json.dumps({"fail": ["vlans"]}))
    state = vfd.sim_state()
    state["vfs"]["1"]["vlans"] = [10, 666]
    (vfd.sim_dir / f"{PF}.json").write_text(json.dumps(state))
    for _ in range(100):
        reply = vfd.request("status", filename="vm1")
        if not reply["data"]["in_sync"]:
            break
    assert reply["state"] == "OK" and reply["data"]["in_sync"] is False
    vlans = next(f for f in reply["data"]["fields"] if f["field"] == "vlans")
    assert vlans["differs"] and vlans["programmed"] == [10, 666] and "set vlans failed" in reply["data"]["apply_error"]


def test_clear_stats_argument_errors(vfd):
    r = vfd.iplex("clear_stats", "5")
    assert r.returncode == 1 and "no PF 5" in r.stderr and f"0 ({PF})" in r.stderr and f"1 ({MLX})" in r.stderr
    r = vfd.iplex("clear_stats", "0", "9")
    assert r.returncode == 1 and "no VF 9 on PF" in r.stderr and "0..7" in r.stderr
    r = vfd.iplex("clear_stats", "0", "3")                    # exists, not configured: refused
    assert r.returncode == 1 and f"VF 3 of PF {PF} is not configured" in r.stderr



def test_huge_and_non_ascii_numbers_in_process(tmp_path):
    """A 5000-digit number fits a 64 KiB FIFO request but not iplex's atomic 4 KiB: asked directly."""
    rig = Rig(tmp_path)
    try:
        for call in (lambda: rig.m.clear_stats("0 " + "9" * 5000), lambda: rig.m.clear_stats("9" * 5000),
                     lambda: rig.m.show("9" * 5000), lambda: rig.m.show("²"), lambda: rig.m.clear_stats("0 ²"),
                     lambda: rig.m.mirror("0 " + "9" * 5000 + " in 3"), lambda: rig.m.mirror("² 1 in 3")):
            r = call()
            assert not r.ok and ("no PF" in r.lines[0] or "no VF" in r.lines[0] or "not configured" in r.lines[0])
            assert len(r.lines[0]) < 300
    finally:
        rig.m.close()


def test_show_odd_arguments_are_clear_errors(vfd):
    for arg in ("²", "9" * 3000, "7", "nope"):
        r = vfd.iplex("show", arg)
        assert r.returncode == 1 and "no PF" in r.stderr and "internal error" not in r.stderr, arg
        assert len(r.stderr) < 400
    assert vfd.iplex("mirror", "0", "²", "in", "3").returncode == 1


def test_show_extended_has_units(vfd):
    vfd.add("vm1", vf_config(PF, 1, rate=0.2))
    out = vfd.iplex("show", "extended").stdout
    assert "rate 2000 Mb/s" in out and "speed 10000 Mb/s" in out


def test_add_update_delete_show_pci_data(vfd):
    r = vfd.drop("vm1", vf_config(PF, 1))
    reply = vfd.request("add", filename=str(r))
    assert reply["data"] == {"port": "vm1", "pf": PF, "vf": 1, "pci": "0000:07:10.2"}
    vfd.drop("vm1", vf_config(PF, 2, name="vm-1"))
    assert vfd.request("update", filename="vm1")["data"]["vf"] == 2
    pci = vfd.request("show", resource="pci")["data"]["vfs"]
    assert {"pf_index": 0, "pf": PF, "vf": 2, "pci": "0000:07:10.4", "port": "vm1"} in pci
    assert {"pf_index": 1, "pf": MLX, "vf": 0, "pci": pci[8]["pci"], "port": None} == pci[8]
    assert vfd.request("delete", filename="vm1")["data"]["vf"] == 2
    vfd.drop("dup", vf_config(PF, 3, macs=["02:00:00:00:00:01"]))
    vfd.request("add", filename="dup")
    vfd.drop("dup2", vf_config(PF, 4, macs=["02:00:00:00:00:01"]))
    refused = vfd.request("add", filename="dup2")
    assert refused["state"] == "ERROR" and refused["data"] == {"rule": "mac_unique", "field": "macs",
                                                               "value": "02:00:00:00:00:01"}
    vfd.drop("bad", vf_config(PF, 5, vlans=[10, 5000]))
    bad = vfd.request("add", filename="bad")                  # the VF config model's refusal, as data too
    assert bad["state"] == "ERROR" and bad["data"] == {"rule": "vf_config", "field": "vlans[1]", "value": 5000,
                                                       "why": "must be less than or equal to 4095"}


def test_port_names_cannot_forge_lines(vfd):
    vfd.drop("x\npf 0 0000:07:00.0 vf 5 0000:07:10.a free", vf_config(PF, 5))
    bad = vfd.request("add", filename="x\npf 0 0000:07:00.0 vf 5 0000:07:10.a free.json")
    assert bad["state"] == "ERROR" and "rule port_name" in bad["msg"][0] and "\n" not in "".join(bad["msg"])
    assert (vfd.config_dir / "x\npf 0 0000:07:00.0 vf 5 0000:07:10.a free.json").exists()   # not renamed
    assert all(line.count(" vf ") == 1 for line in vfd.iplex("show", "pci").stdout.splitlines())
    long = "a" * 250
    vfd.drop(long, vf_config(PF, 5))
    r = vfd.iplex("add", long)
    assert r.returncode == 1 and "at most 200 bytes" in r.stderr and "live config" not in r.stderr
    assert (vfd.config_dir / f"{long}.json").exists()


def test_mirror_and_insert_stag_errors_name_the_field(vfd):
    r = vfd.add("m", vf_config(PF, 1, mirror={"target": 1}))
    assert r.returncode == 1 and "field 'mirror.target': value 1" in r.stderr and "(top level)" not in r.stderr
    r = vfd.add("i", vf_config(PF, 2, vlans=[1, 2], insert_stag=True))
    assert r.returncode == 1 and "field 'insert_stag': value true" in r.stderr and "pciid" not in r.stderr


def test_counter_baselines_survive_a_restart(make_vfd):
    d = make_vfd([sim_pf(PF, 8)])
    d.add("a", vf_config(PF, 2))
    stats = d.sim_dir / f"{PF}.stats.json"
    stats.write_text(json.dumps({"pf": {"rx_pkts": 100}, "vfs": {"2": {"tx_bytes": 999}}}))
    assert d.iplex("clear_stats", "0").returncode == 0
    d.stop()
    d.start()
    stats.write_text(json.dumps({"pf": {"rx_pkts": 130}, "vfs": {"2": {"tx_bytes": 1000}}}))
    rows = [line.split() for line in d.iplex("show", "0").stdout.splitlines()[1:] if line.strip()]
    assert rows[0][6] == "30" and rows[1][0] == "vf" and "999" not in rows[1] and "1" in rows[1][4:]
    stats.write_text(json.dumps({"pf": {"rx_pkts": 5}}))        # the NIC reset: the baseline is dropped
    d.iplex("show", "0")
    d.stop()
    d.start()
    stats.write_text(json.dumps({"pf": {"rx_pkts": 500}}))
    rows = [line.split() for line in d.iplex("show", "0").stdout.splitlines()[1:] if line.strip()]
    assert rows[0][6] == "500"


def test_qos_spread_names_the_default_share(make_vfd):
    d = make_vfd([sim_pf(PF, 8, "ixgbe", tclasses=[{"pri": 0}, {"pri": 1}], vf_oversubscription=True)],
                 enable_qos=True)
    assert d.add("a", vf_config(PF, 1, queues=[{"priority": 0, "share": "50%"},
                                               {"priority": 1, "share": "50%"}])).returncode == 0
    r = d.add("b", vf_config(PF, 2, queues=[{"priority": 1, "share": "50%"}]))
    assert r.returncode == 1 and "rule qos_share_spread" in r.stderr
    assert "TC 0 3% (the default share given to TCs the config does not name)" in r.stderr
