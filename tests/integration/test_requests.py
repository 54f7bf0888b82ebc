"""The request channel end to end: real daemon process, real FIFOs, real iplex."""

import json
import os
import stat

from tests.vfdlab import vf_config

PF = "0000:07:00.0"


def test_ping_and_rid(vfd):
    r = vfd.iplex("ping")
    assert r.returncode == 0 and r.stdout.startswith("pong: ")
    reply = vfd.request("ping", vfd_rid="rid-42")
    assert reply == {"action": "response", "vfd_rid": "rid-42", "state": "OK", "msg": [reply["msg"][0]],
                     "data": {"protocol": reply["data"]["protocol"]}}


def test_fifo_is_not_world_writable(vfd):
    mode = os.stat(vfd.fifo).st_mode
    assert stat.S_ISFIFO(mode) and not mode & stat.S_IWOTH and not mode & stat.S_IROTH


def test_show_columns_and_targets(vfd):
    assert vfd.add("a", vf_config(PF, 1, macs=["02:00:00:00:00:01"])).returncode == 0
    out = vfd.iplex("show", "all").stdout.splitlines()
    for col in ("Link", "Speed", "Duplex", "RX pkts", "RX bytes", "RX errors", "RX dropped", "TX pkts",
                "TX bytes", "TX errors", "Spoofed"):
        assert col in out[0]
    rows = [line.split() for line in out[1:] if line.strip()]
    assert rows[0][:4] == ["pf", "0", PF, "UP"] and rows[1][:4] == ["vf", "1", "0000:07:10.2", "UP"]
    assert rows[2][:3] == ["pf", "1", "0000:81:00.0"]
    pfs = vfd.iplex("show", "pfs").stdout
    assert "vf " not in pfs and "0000:81:00.0" in pfs
    only0 = vfd.iplex("show", "0").stdout          # the original showed every PF for 0
    assert PF in only0 and "0000:81:00.0" not in only0
    assert "0000:81:00.0" in vfd.iplex("show", "1").stdout
    bad = vfd.iplex("show", "7")
    assert bad.returncode == 1 and "unknown target" in bad.stderr


def test_show_counters_from_the_nic(vfd):
    vfd.add("a", vf_config(PF, 2))
    (vfd.sim_dir / f"{PF}.stats.json").write_text(json.dumps(
        {"pf": {"rx_pkts": 1234, "spoofed": 7}, "vfs": {"2": {"tx_bytes": 999}}}))
    rows = [line.split() for line in vfd.iplex("show", "all").stdout.splitlines()[1:] if line.strip()]
    assert rows[0][6] == "1234" and rows[0][-1] == "7"
    assert rows[1][0] == "vf" and "999" in rows[1]


def test_usage_errors_exit_2(vfd):
    assert vfd.iplex("frobnicate").returncode == 2
    assert vfd.iplex("add").returncode == 2


def test_iplex_reports_missing_config_locally(vfd):
    r = vfd.iplex("add", "nope")
    assert r.returncode == 1 and "doesn't exist" in r.stderr


def test_unknown_action_is_an_error_not_a_prefix_match(vfd):
    for action in ("s", "delete-all", "dumpster", "update_now"):
        reply = vfd.request(action)
        assert reply["state"] == "ERROR" and "unrecognised request" in reply["msg"][0]


def test_path_traversal_refused_and_nothing_touched(vfd, tmp_path):
    outside = tmp_path / "outside.json"
    outside.write_text(json.dumps(vf_config(PF, 3)))
    before = vfd.snapshot()
    for name in (str(outside), "../outside", "../../etc/passwd", "/etc/passwd"):
        for action in ("add", "update", "delete", "status", "export"):
            reply = vfd.request(action, filename=name, output="/tmp/x.exp")
            assert reply["state"] == "ERROR", (action, name)
    assert vfd.snapshot() == before and outside.exists() and not os.path.exists("/tmp/x.exp")


def test_iplex_without_daemon(tmp_path, make_vfd):
    d = make_vfd(start=False)
    d.write_main()
    r = d.iplex("ping")
    assert r.returncode == 1 and "is vfd running" in r.stderr
    assert not list(d.fifo.parent.glob("*_IPLEX*")) if d.fifo.parent.exists() else True


def test_json_output(vfd):
    r = vfd.iplex("--json", "ping")
    assert json.loads(r.stdout)["state"] == "OK"


def test_verbose_cpu_alarm_dump(vfd):
    assert "verbose level changed to: 2" in vfd.iplex("--loglevel", "2", "verbose").stdout
    assert vfd.iplex("cpu_alarm", "30%").stdout.strip() == "cpu alarm threshold changed to: 30%"
    bad = vfd.iplex("cpu_alarm", "1%")
    assert bad.returncode == 1 and "floor" in bad.stderr
    assert vfd.iplex("cpu_alarm", "lots").returncode == 1
    vfd.add("a", vf_config(PF, 1))
    assert vfd.iplex("dump").stdout.strip() == "dump captured in the log"
    assert "dump: PF 0000:07:00.0 VF 1 a" in vfd.log_text()


def test_reply_fifo_never_read_does_not_block(vfd):
    """A client that names a reply FIFO and never opens it: the daemon drops the reply and goes on."""
    ghost = vfd.fifo.parent / "ghost_fifo"
    os.mkfifo(ghost)
    fd = os.open(vfd.fifo, os.O_WRONLY)
    os.write(fd, json.dumps({"action": "show", "params": {"r_fifo": str(ghost), "resource": "all"}}).encode())
    os.close(fd)
    assert vfd.iplex("ping", timeout=10).returncode == 0


def test_options_before_or_after_the_command(vfd):
    """The original's usage puts --loglevel after the command: `iplex add <id> --loglevel=<n>`."""
    assert "verbose level changed to: 2" in vfd.iplex("verbose", "--loglevel=2").stdout
    vfd.drop("vm1", vf_config(PF, 1))
    r = vfd.iplex("add", "vm1", "--loglevel=1", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["state"] == "OK"
    assert vfd.iplex("--loglevel", "1", "status", "vm1").returncode == 0


def test_clear_stats_restarts_counters_at_zero(vfd):
    vfd.add("a", vf_config(PF, 2))
    stats = vfd.sim_dir / f"{PF}.stats.json"
    stats.write_text(json.dumps({"pf": {"rx_pkts": 100}, "vfs": {"2": {"tx_bytes": 999}}}))
    assert vfd.iplex("clear_stats", "0").stdout.strip() == "counters cleared: 0"
    stats.write_text(json.dumps({"pf": {"rx_pkts": 130}, "vfs": {"2": {"tx_bytes": 1000}}}))
    rows = [line.split() for line in vfd.iplex("show", "0").stdout.splitlines()[1:] if line.strip()]
    assert rows[0][6] == "30" and rows[1][0] == "vf" and "1" in rows[1][4:] and "999" not in rows[1]
    assert vfd.iplex("clear_stats", "0", "9").returncode == 1
    assert vfd.iplex("clear_stats", "nope").returncode == 1
    stats.write_text(json.dumps({"pf": {"rx_pkts": 5}}))        # the NIC reset its own counters
    rows = [line.split() for line in vfd.iplex("show", "0").stdout.splitlines()[1:] if line.strip()]
    assert rows[0][6] == "5"
    assert vfd.iplex("clear_stats").stdout.strip() == "counters cleared: all PFs"


def test_cpu_alarm_strings_are_percentages_as_in_the_main_config(vfd):
    assert vfd.iplex("cpu_alarm", "30").stdout.strip() == "cpu alarm threshold changed to: 30%"
    assert vfd.iplex("cpu_alarm", "inf").returncode == 1
