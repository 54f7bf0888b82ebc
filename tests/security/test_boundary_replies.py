"""Issue 9.3, 9.4, 9.5, 9.8, 10.5: the FIFO, reply FIFOs, requester identity, descriptor bounds."""

import fcntl
import json
import os
import select
import signal
import stat
import subprocess

import pytest

import vfd.iplex
from tests.security.conftest import agent, agent_write
from tests.vfdlab import BIN, vf_config

PF = "0000:07:00.0"


def read_reply_fifo(fd) -> str:
    out = b""
    while b"@eom@" not in out and select.select([fd], [], [], 10)[0]:
        out += os.read(fd, 65536)
    return out.decode()


# ---- 9.4: forged and redirected replies --------------------------------------------------------
def test_forged_reply_in_the_clients_fifo_is_ignored(lab, monkeypatch):
    """The agent sends its own request naming root's reply FIFO: root's client still gets its own
    reply (matched by its random vfd_rid), never the agent's."""
    d = lab(socket=False)
    real = vfd.iplex.encode_request

    def attack_then_encode(action, r_fifo, **params):
        # the agent's request reaches the daemon first, so its reply lands in r_fifo first
        agent_write(d.fifo, json.dumps({"action": "show", "params": {"r_fifo": r_fifo, "resource": "pfs",
                                                                      "vfd_rid": "forged"}}).encode())
        return real(action, r_fifo, **params)
    monkeypatch.setattr(vfd.iplex, "encode_request", attack_then_encode)
    reply = d.request("ping", timeout=10, socket_path=False)
    assert reply["state"] == "OK" and reply["msg"][0].startswith("pong"), reply
    assert reply["vfd_rid"] != "forged"


def test_reply_fifo_names_are_unguessable_and_the_run_dir_unlistable(lab):
    d = lab(socket=False)
    run = d.fifo.parent
    st = os.stat(run)
    assert stat.S_IMODE(st.st_mode) == 0o1730 and st.st_gid == 65534
    p = subprocess.Popen([str(BIN / "iplex"), "--conf", str(d.conf), "--timeout", "30", "ping"])
    os.kill(d.proc.pid, signal.SIGSTOP)             # the daemon holds the request; iplex waits
    try:
        names = []
        while not names and p.poll() is None:
            names = [n for n in os.listdir(run) if "_IPLEX." in n]
        assert names
        assert names[0].startswith(f"request_IPLEX.{p.pid}.") and len(names[0].rsplit(".", 1)[1]) >= 22
        r = agent("import os, sys; print(os.listdir(sys.argv[1]))", str(run))
        assert r.returncode != 0 and b"PermissionError" in r.stderr
    finally:
        os.kill(d.proc.pid, signal.SIGCONT)
    assert p.wait(30) == 0


# ---- 9.5: the requester's identity ---------------------------------------------------------
AGENT_REQUEST = """
import os, sys, json, select
fifo, r_fifo, req = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
req["params"]["r_fifo"] = r_fifo
fd = os.open(fifo, os.O_WRONLY)
os.write(fd, json.dumps(req).encode())
"""


def test_agent_naming_roots_reply_fifo_cannot_act_as_root(lab):
    """Root's reply FIFO with a guessable name (the original iplex's `<fifo>_IPLEX.<pid>`): an agent
    that names it in a root-only request is not taken for root."""
    d = lab(socket=False)
    victim = d.fifo.parent / "request_IPLEX.4242"
    os.mkfifo(victim, 0o600)
    rfd = os.open(victim, os.O_RDWR | os.O_NONBLOCK)
    try:
        for req in ({"action": "verbose", "params": {"loglevel": 5}},
                    {"action": "cpu_alarm", "params": {"resource": "99%"}}):
            r = agent(AGENT_REQUEST, str(d.fifo), str(victim), json.dumps(req))
            assert r.returncode == 0, r.stderr
            out = read_reply_fifo(rfd)
            assert '"state": "ERROR"' in out and "permission denied" in out and "unidentified requester" in out, out
    finally:
        os.close(rfd)
    assert "refused: permission denied: verbose" in d.log_text()


def test_agent_over_the_socket_is_itself(lab):
    d = lab()
    code = "import sys, vfd.iplex as i; r = i.request(sys.argv[1], 'verbose', 10, loglevel=5); print(r['msg'][0])"
    r = agent(code, str(d.fifo))
    assert r.returncode == 0 and "permission denied: verbose" in r.stdout.decode() and "uid 65534" in r.stdout.decode()
    reply = d.request("verbose", timeout=10, socket_path=str(d.fifo) + ".sock", loglevel=5)
    assert reply["state"] == "OK"                                            # root, over the socket
    code = "import sys, json, vfd.iplex as i; print(json.dumps(i.request(sys.argv[1], 'cpu_alarm', 10, resource='50%')))"
    r = json.loads(agent(code, str(d.fifo)).stdout)
    assert r["state"] == "ERROR" and r["data"] == {"rule": "permission", "action": "cpu_alarm", "requester_uid": 65534}


def test_unidentified_root_over_a_listable_run_dir(lab):
    """In a listable run directory reply-FIFO owners prove nothing: even root is unidentified there."""
    d = lab(start=False, socket=False)
    run = d.fifo.parent
    run.mkdir(mode=0o755)
    d.start()
    assert "requests over the FIFO are treated as unidentified" in d.log_text()
    reply = d.request("verbose", timeout=10, socket_path=False, loglevel=2)
    assert reply["state"] == "ERROR" and "unidentified" in reply["msg"][0]
    assert d.request("ping", timeout=10, socket_path=False)["state"] == "OK"


# ---- 9.4: symlinks -----------------------------------------------------------------------------
def test_symlinked_reply_fifo_is_never_written_through(lab, tmp_path):
    d = lab(socket=False)
    secret = tmp_path / "secret"
    secret.mkdir(mode=0o700)
    target = secret / "fifo"
    os.mkfifo(target, 0o600)
    tfd = os.open(target, os.O_RDWR | os.O_NONBLOCK)
    try:
        link = "request_IPLEX.77.linklinklinklinklinklinklink"
        code = """
import os, sys, json
fifo, target, link = sys.argv[1:4]
os.symlink(target, os.path.join(os.path.dirname(fifo), link))
fd = os.open(fifo, os.O_WRONLY)
os.write(fd, json.dumps({"action": "show", "params": {"r_fifo": link, "resource": "all"}}).encode())
"""
        r = agent(code, str(d.fifo), str(target), link)
        assert r.returncode == 0, r.stderr
        assert d.request("ping", timeout=10, socket_path=False)["state"] == "OK"    # served after the attack
        with pytest.raises(BlockingIOError):
            os.read(tfd, 65536)
    finally:
        os.close(tfd)


def test_reply_dir_alias_flipped_after_the_check_is_not_followed(tmp_path):
    """The run directory is held open: a reply goes to the FIFO in it, even if the path that named
    it (a symlinked alias of the directory) now points somewhere else."""
    from vfd.daemon.rundir import RunDir
    run = tmp_path / "run"
    r = RunDir(str(run / "request"))
    r.prepare()
    alias = tmp_path / "alias"
    alias.symlink_to(run)
    name = r.reply_name(str(alias / "reply"))
    assert name == "reply"
    other = tmp_path / "other"
    other.mkdir()
    os.mkfifo(other / "reply")
    alias.unlink()
    alias.symlink_to(other)
    ofd = os.open(other / "reply", os.O_RDWR | os.O_NONBLOCK)
    with pytest.raises(FileNotFoundError):
        r.open_reply(name)                  # the run dir has no `reply`; the flipped alias is not used
    os.close(ofd)
    r.close()


# ---- 9.3 and 10.5: what the fifo path names ----------------------------------------------------
def test_planted_file_at_fifo_path_refused_and_untouched(lab):
    d = lab(start=False)
    d.main["fifo"] = str(d.conf)          # the main config itself: the old code replaced it with a FIFO
    d.write_main()
    before = d.conf.read_bytes()
    r = subprocess.run([str(BIN / "vfd"), "-f", "-p", str(d.conf)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert f"fifo {d.conf}: exists and is a regular file, not a FIFO" in r.stderr
    assert "Traceback" not in r.stderr and d.conf.read_bytes() == before
    assert not d.sim_dir.exists() or not list(d.sim_dir.iterdir())      # no NIC touched


def test_symlink_at_fifo_path_refused(lab, tmp_path):
    d = lab(start=False)
    d.fifo.parent.mkdir(mode=0o1730)
    victim = tmp_path / "victim"
    victim.write_text("x")
    os.chmod(victim, 0o600)
    d.fifo.symlink_to(victim)
    d.write_main()
    r = subprocess.run([str(BIN / "vfd"), "-f", "-p", str(d.conf)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "exists and is a symlink, not a FIFO" in r.stderr
    st = os.stat(victim)
    assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_gid == 0 and victim.read_text() == "x"


def test_uncreatable_fifo_path_one_line_before_any_nic(lab):
    d = lab(start=False)
    (d.root / "afile").write_text("")
    d.main["fifo"] = str(d.root / "afile" / "request")
    d.write_main()
    r = subprocess.run([str(BIN / "vfd"), "-f", "-p", str(d.conf)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert f"fifo {d.root}/afile/request: {d.root}/afile is not a directory" in r.stderr
    assert not d.sim_dir.exists() or not list(d.sim_dir.iterdir())


def test_planted_non_socket_at_socket_path_refused(lab):
    d = lab(start=False)
    d.fifo.parent.mkdir(mode=0o1730)
    (d.fifo.parent / "request.sock").write_text("keep")
    d.write_main()
    r = subprocess.run([str(BIN / "vfd"), "-f", "-p", str(d.conf)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "request.sock: exists and is a regular file, not a socket" in r.stderr
    assert (d.fifo.parent / "request.sock").read_text() == "keep"


# ---- 9.8: descriptor exhaustion --------------------------------------------------------------------
FLOOD = """
import fcntl, json, os, sys
fifo, n_fifos, per = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
run = os.path.dirname(fifo)
held = []
for k in range(n_fifos):
    name = os.path.join(run, f"request_IPLEX.{os.getpid()}.flood{k:04d}flood{k:04d}flood{k:04d}")
    os.mkfifo(name, 0o600)
    fd = os.open(name, os.O_RDWR | os.O_NONBLOCK)     # held open, never read
    fcntl.fcntl(fd, 1031, 4096)                        # F_SETPIPE_SZ: fills after a few replies
    held.append((name, fd))
w = os.open(fifo, os.O_WRONLY)
for name, _ in held:
    for i in range(per):
        data = json.dumps({"action": "show", "params": {"r_fifo": name, "resource": "all"}}).encode() + b"\\n"
        os.write(w, data)
sys.stdout.write("sent\\n"); sys.stdout.flush()
sys.stdin.read()                                     # keep the FIFOs open until told
"""


def test_many_unread_replies_are_bounded_and_root_is_served(lab):
    d = lab(socket=False)
    p = subprocess.Popen(["setpriv", "--reuid=nobody", "--regid=nogroup", "--init-groups", os.sys.executable, "-c",
                          FLOOD, str(d.fifo), "64", "24"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert p.stdout.readline() == b"sent\n"
        assert d.request("ping", timeout=20, socket_path=False)["state"] == "OK"   # after all 1536 floods
        fds = len(os.listdir(f"/proc/{d.proc.pid}/fd"))
        assert fds < 64, fds
        assert "unread replies: the oldest is dropped" in d.log_text()
        r = d.add("vm1", vf_config(PF, 1))
        assert r.returncode == 0, r.stderr
        assert d.live() == ["vm1.json"]
    finally:
        p.stdin.close()
        p.wait(30)


def test_fd_limit_raised_to_hard_limit(lab):
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard <= 1024:
        pytest.skip("the hard open-files limit is already at systemd's default soft limit")
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))      # as systemd starts services
    try:
        d = lab()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    limits = open(f"/proc/{d.proc.pid}/limits").read()
    line = next(x for x in limits.splitlines() if x.startswith("Max open files"))
    soft, hard = line.split()[3:5]
    assert soft == hard


# ---- 10.15: stale reply FIFOs -----------------------------------------------------------------
def test_stale_reply_fifos_of_dead_clients_removed_at_start(lab):
    d = lab(start=False)
    run = d.fifo.parent
    run.mkdir(mode=0o1730)
    dead = 4194303
    for name in (f"request_IPLEX.{dead}", f"request_IPLEX.{dead}.abc"):
        os.mkfifo(run / name)
        os.utime(run / name, (1, 1))
    (run / f"request_IPLEX.{dead}.file").write_text("not a fifo")
    os.utime(run / f"request_IPLEX.{dead}.file", (1, 1))
    d.start()
    assert sorted(n for n in os.listdir(run) if "_IPLEX" in n) == [f"request_IPLEX.{dead}.file"]


HOLD = """
import socket, sys
held = []
for _ in range(int(sys.argv[2])):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(sys.argv[1])
    s.send(b'{"action": "ping", ')                   # never finished
    held.append(s)
sys.stdout.write("held\\n"); sys.stdout.flush()
sys.stdin.read()
"""


def test_socket_connection_flood_bounded_and_root_served(lab):
    d = lab()
    p = subprocess.Popen(["setpriv", "--reuid=nobody", "--regid=nogroup", "--init-groups", os.sys.executable, "-c",
                          HOLD, str(d.fifo) + ".sock", "300"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert p.stdout.readline() == b"held\n"
        assert d.request("ping", timeout=20)["state"] == "OK"         # over the socket, after the flood
        assert len(os.listdir(f"/proc/{d.proc.pid}/fd")) < 128 + 40
        assert "the oldest of uid 65534" in d.log_text()
    finally:
        p.stdin.close()
        p.wait(30)
