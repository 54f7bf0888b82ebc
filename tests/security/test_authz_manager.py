"""Issue 9.5: a local agent in fifo_group acts on its own VFs only. The attacks run as `nobody`
through the real iplex against a real root daemon; each asserts the refusal and that nothing
changed (sim registers, live files, drop files: no .error rename)."""

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.vfdlab import BIN, VfdProcess, sim_pf, vf_config

PF = "0000:07:00.0"
NOBODY = 65534

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                                reason="needs root and setpriv to act as another user")


@pytest.fixture
def lab():
    """The deployment of docs/openstack.md: fifo_group nogroup, config_dir group-writable, run dir 1730."""
    root = Path(tempfile.mkdtemp(prefix="vfd-authz-"))        # pytest's tmp_path is not reachable by nobody
    root.chmod(0o755)
    d = VfdProcess(root, [sim_pf(PF, 8)], fifo_group="nogroup")
    for sub, mode in ((d.config_dir, 0o775), (d.fifo.parent, 0o1730)):
        sub.mkdir(exist_ok=True)
        os.chown(sub, 0, NOBODY)
        sub.chmod(mode)
    d.start()
    yield d
    d.stop()
    shutil.rmtree(root)


def as_nobody(d: VfdProcess, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--init-groups", str(BIN / "iplex"),
                           "--conf", str(d.conf), *args], capture_output=True, text=True, timeout=30)


def drop_as(d: VfdProcess, port: str, cfg: dict, uid: int) -> Path:
    path = d.drop(port, cfg)
    os.chown(path, uid, -1)
    return path


def test_agent_cannot_change_a_vf_it_does_not_own(lab):
    assert lab.add("victim", vf_config(PF, 6, name="tenant")).returncode == 0     # root's VF
    drop_as(lab, "victim", vf_config(PF, 6, name="tenant", vlans=[99]), NOBODY)  # the agent's "update"
    before = lab.snapshot()
    attacks = [("delete", "victim"), ("update", "victim"), ("mirror", "0", "6", "all", "5"), ("export", "victim"),
               ("clear_stats", "0", "6")]
    for attack in attacks:
        r = as_nobody(lab, *attack)
        assert r.returncode == 1, (attack, r.stdout, r.stderr)
        assert "permission denied" in r.stderr and f"uid {NOBODY}" in r.stderr and "(uid 0)" in r.stderr, attack
    assert lab.snapshot() == before                          # nothing changed, no .error rename
    log = lab.log_text()
    assert "delete victim.json refused: permission denied" in log and "mirror refused: permission denied" in log


def test_agent_manages_its_own_vf(lab):
    drop_as(lab, "mine", vf_config(PF, 2, name="agent"), NOBODY)
    r = as_nobody(lab, "add", "mine")
    assert r.returncode == 0, r.stderr
    assert os.stat(lab.live_dir / "mine.json").st_uid == NOBODY
    assert as_nobody(lab, "mirror", "0", "2", "in", "3").returncode == 0
    assert as_nobody(lab, "clear_stats", "0", "2").returncode == 0
    drop_as(lab, "mine", vf_config(PF, 2, name="agent", vlans=[11]), NOBODY)
    assert as_nobody(lab, "update", "mine").returncode == 0
    assert lab.vf_state(2)["vlans"] == [11]
    assert as_nobody(lab, "delete", "mine").returncode == 0
    assert lab.vf_state(2)["vlans"] == [] and lab.live() == []


def test_agent_cannot_add_or_update_with_someone_elses_file(lab):
    # a root-owned drop file: its VF would be root's, with root's callbacks
    drop_as(lab, "planted", vf_config(PF, 3, start_cb="/bin/true"), 0)
    before = lab.snapshot()
    r = as_nobody(lab, "add", "planted")
    assert r.returncode == 1 and "permission denied: add port planted" in r.stderr
    assert lab.snapshot() == before and (lab.config_dir / "planted.json").exists()
    # its own VF, updated from a file owned by a third user: refused
    drop_as(lab, "mine", vf_config(PF, 2, name="agent"), NOBODY)
    assert as_nobody(lab, "add", "mine").returncode == 0
    drop_as(lab, "mine", vf_config(PF, 2, name="agent", vlans=[12]), 1234)
    before = lab.snapshot()
    r = as_nobody(lab, "update", "mine")
    assert r.returncode == 1 and "owned by uid 1234" in r.stderr and f"VF's owner (uid {NOBODY})" in r.stderr
    assert lab.snapshot() == before


def test_pf_wide_counter_clears_are_root_only(lab):
    for args in (("clear_stats",), ("clear_stats", "0")):
        r = as_nobody(lab, *args)
        assert r.returncode == 1 and "permission denied" in r.stderr and "only root" in r.stderr, args
    assert not (lab.live_dir / ".counter-baselines").exists()
    assert lab.iplex("clear_stats", "0").returncode == 0


def test_root_may_act_on_an_agents_vf(lab):
    drop_as(lab, "mine", vf_config(PF, 2, name="agent"), NOBODY)
    assert as_nobody(lab, "add", "mine").returncode == 0
    reply = lab.request("export", filename="mine")
    assert reply["state"] == "OK" and json.loads(reply["data"]["config"])["name"] == "agent"
    assert lab.iplex("delete", "mine").returncode == 0
