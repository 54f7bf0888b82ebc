"""Issues 10.2 / 10.11 / 9.8: add, update, delete and mirror share one rollback path that runs on
any exception (a NIC refusal, an OSError from the backend's flush or from the store), and a
transient failure never marks a valid drop file .error.

In-process tests inject the faults (monkeypatch); the tmpfs tests fill a real filesystem under a
real daemon."""

import errno
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.vfdlab import VfdProcess, sim_pf, vf_config
from vfd.backends import create_backend
from vfd.backends import sim as sim_mod
from vfd.daemon.manager import VFManager
from vfd.model.mainconfig import parse_main_config
from vfd.store import Store

PF = "0000:07:00.0"
ENOSPC = OSError(errno.ENOSPC, "No space left on device")


class Rig:
    def __init__(self, root: Path, **extra):
        self.root = root
        main = {"config_dir": str(root / "config"), "sim_state_dir": str(root / "sim"), "log_dir": "stderr",
                "fifo": str(root / "run" / "request"), "pciids": [sim_pf(PF, 8)], **extra}
        self.main = parse_main_config(json.dumps(main), "test")
        self.store = Store(self.main.config_dir, self.main.live_dir, self.main.delete_keep)
        self.store.ensure_dirs()
        self.sim = create_backend("sim", self.main)
        self.m = VFManager(self.main, {"sim": self.sim}, self.store)
        self.m.open_pfs()
        self.m.restore()

    def drop(self, port: str, cfg: dict) -> Path:
        p = self.store.config_dir / f"{port}.json"
        p.write_text(json.dumps(cfg))
        return p

    def nic(self, vfid: int) -> dict:
        return self.sim.read_vf(PF, vfid)

    def on_disk(self, vfid: int) -> dict:
        return json.loads((self.root / "sim" / f"{PF}.json").read_text())["vfs"][str(vfid)]

    def files(self) -> dict:
        return {d: sorted(p.name for p in Path(d).iterdir()) for d in (self.store.config_dir, self.store.live_dir)}


@pytest.fixture
def rig(tmp_path):
    r = Rig(tmp_path)
    yield r
    r.m.close()


def fail_sim_flush(monkeypatch):
    def full(*a, **k):
        raise ENOSPC
    monkeypatch.setattr(sim_mod, "atomic_write", full)


def test_add_with_the_backend_state_dir_full_rolls_back_everywhere(rig, monkeypatch, caplog):
    rig.drop("vm1", vf_config(PF, 1, vlans=[10]))
    fail_sim_flush(monkeypatch)
    r = rig.m.add("vm1", requester_uid=0)
    assert not r.ok and "No space left on device" in r.lines[0] and "internal error" not in r.lines[0]
    assert rig.m.live == {} and rig.m.pfs[PF].vfs == {} and rig.m.pfs[PF].vlan_refs == {}
    assert rig.nic(1)["vlans"] == []                           # the NIC put back
    assert rig.files() == {rig.store.config_dir: ["vm1.json"], rig.store.live_dir: []}   # no .error
    assert "free" in rig.m.show("pci").lines[1]
    assert "rolled back: No space left" in caplog.text and "incompletely" not in caplog.text
    monkeypatch.undo()
    rig.drop("vm2", vf_config(PF, 2, vlans=[20]))
    assert rig.m.add("vm2", requester_uid=0).ok               # the next request writes only its own change
    assert rig.on_disk(1)["vlans"] == [] and rig.on_disk(2)["vlans"] == [20]
    assert rig.m.add("vm1", requester_uid=0).ok               # the valid file was kept: it still adds


def test_add_with_the_live_dir_full_keeps_the_drop_file(rig, monkeypatch, caplog):
    rig.drop("vm1", vf_config(PF, 1, vlans=[10]))
    real = os.write

    def full(fd, data):
        if "config_live" in os.readlink(f"/proc/self/fd/{fd}"):
            raise ENOSPC
        return real(fd, data)
    monkeypatch.setattr(os, "write", full)
    r = rig.m.add("vm1", requester_uid=0)
    monkeypatch.undo()
    assert not r.ok and "cannot write the live config" in r.lines[0] and "No space left" in r.lines[0]
    assert rig.files() == {rig.store.config_dir: ["vm1.json"], rig.store.live_dir: []}   # no temp, no .error
    assert rig.nic(1)["vlans"] == [] and rig.m.live == {}
    assert "rolled back" in caplog.text and "incompletely" not in caplog.text


def test_failing_to_remove_the_drop_file_after_success_is_a_warning(rig, monkeypatch, caplog):
    rig.drop("vm1", vf_config(PF, 1))

    def unlink(path, *a, **k):
        raise OSError(errno.EACCES, "Permission denied", str(path))
    monkeypatch.setattr(os, "unlink", unlink)
    r = rig.m.add("vm1", requester_uid=0)
    monkeypatch.undo()
    assert r.ok and "vm1" in rig.m.live and rig.nic(1)["vlans"] == [10]
    assert "remove the file by hand" in caplog.text
    rig.drop("other", vf_config(PF, 1, vlans=[30]))
    assert not rig.m.add("other", requester_uid=0).ok           # VF 1 is taken: one VF, one live file


def test_update_that_fails_late_restores_the_old_config_everywhere(rig, monkeypatch):
    rig.drop("vm1", vf_config(PF, 1, vlans=[10]))
    assert rig.m.add("vm1", requester_uid=0).ok
    live_before = (rig.store.live_dir / "vm1.json").read_bytes()
    for move in (False, True):
        rig.drop("vm1", vf_config(PF, 3 if move else 1, vlans=[10, 20], name="vm-1"))
        fail_sim_flush(monkeypatch)
        r = rig.m.update("vm1", requester_uid=0)
        monkeypatch.undo()
        assert not r.ok and "No space left on device" in r.lines[0]
        assert rig.nic(1)["vlans"] == [10] and rig.nic(3)["vlans"] == []
        assert rig.m.live["vm1"].config.vlans == [10] and rig.m.pfs[PF].vlan_refs == {10: 1}
        assert (rig.store.live_dir / "vm1.json").read_bytes() == live_before
        assert (rig.store.config_dir / "vm1.json").exists()


def test_delete_that_cannot_remove_the_live_file_keeps_the_vf(rig, monkeypatch):
    rig.drop("vm1", vf_config(PF, 1, vlans=[10]))
    assert rig.m.add("vm1", requester_uid=0).ok

    def unlink(path, *a, **k):
        raise OSError(errno.EROFS, "Read-only file system", str(path))
    monkeypatch.setattr(os, "unlink", unlink)
    r = rig.m.delete("vm1", requester_uid=0)
    monkeypatch.undo()
    assert not r.ok and "Read-only file system" in r.lines[0]
    assert rig.nic(1)["vlans"] == [10] and "vm1" in rig.m.live and (rig.store.live_dir / "vm1.json").exists()


def test_transient_read_failure_does_not_mark_error(rig, monkeypatch):
    rig.drop("vm1", vf_config(PF, 1))
    real = os.open

    def emfile(path, *a, **k):
        if str(path).endswith("vm1.json"):
            raise OSError(errno.EMFILE, "Too many open files", str(path))
        return real(path, *a, **k)
    monkeypatch.setattr(os, "open", emfile)
    r = rig.m.add("vm1", requester_uid=0)
    monkeypatch.undo()
    assert not r.ok and "Too many open files" in r.lines[0]
    assert rig.files()[rig.store.config_dir] == ["vm1.json"]


def test_refusals_that_are_not_about_the_config_leave_the_drop_file(rig):
    rig.drop("vm1", vf_config(PF, 1))
    assert rig.m.add("vm1", requester_uid=0).ok
    rig.drop("vm1", vf_config(PF, 2))
    assert not rig.m.add("vm1", requester_uid=0).ok          # already live: a request error
    rig.drop("vm2", vf_config(PF, 2))
    assert not rig.m.add("vm2", requester_uid=None).ok       # unidentified requester: read-only
    assert rig.files()[rig.store.config_dir] == ["vm1.json", "vm2.json"]
    rig.drop("bad", vf_config(PF, 2, vlans=[5000]))
    r = rig.m.add("bad", requester_uid=0)
    assert not r.ok and rig.files()[rig.store.config_dir] == ["bad.json.error", "vm1.json", "vm2.json"]


def test_unidentified_requester_changes_nothing(rig):
    rig.drop("vm1", vf_config(PF, 1))
    assert rig.m.add("vm1", requester_uid=0).ok
    for call in (lambda: rig.m.delete("vm1"), lambda: rig.m.mirror("0 1 all 2"), lambda: rig.m.export("vm1"),
                 lambda: rig.m.clear_stats("0 1"), lambda: rig.m.update("vm1")):
        r = call()
        assert not r.ok and "unidentified requester" in r.lines[0]
    assert rig.nic(1)["vlans"] == [10] and rig.nic(1)["mirror"] is None


# ---- a real daemon on a real full filesystem ---------------------------------------------------
@pytest.fixture
def tiny_fs():
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = Path(tempfile.mkdtemp(prefix="vfd-full-"))
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)]).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)])
    shutil.rmtree(mnt, ignore_errors=True)


def fill(fs: Path) -> Path:
    filler = fs / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return filler


def test_daemon_with_sim_state_dir_full(tmp_path, tiny_fs):
    d = VfdProcess(tmp_path, [sim_pf(PF, 8)], sim_state_dir=str(tiny_fs / "sim"))
    d.sim_dir = tiny_fs / "sim"
    d.start()
    try:
        filler = fill(tiny_fs)
        r = d.add("vm1", vf_config(PF, 1, vlans=[10]))
        assert r.returncode == 1 and "No space left on device" in r.stderr and "internal error" not in r.stderr
        assert "pf 0 0000:07:00.0 vf 1 0000:07:10.2 free" in d.iplex("show", "pci").stdout
        assert d.live() == [] and (d.config_dir / "vm1.json").exists()
        filler.unlink()
        assert d.add("vm2", vf_config(PF, 2, vlans=[20])).returncode == 0
        assert d.vf_state(1)["vlans"] == [] and d.vf_state(2)["vlans"] == [20]
        assert d.iplex("add", "vm1").returncode == 0 and d.vf_state(1)["vlans"] == [10]
    finally:
        d.stop()


def test_daemon_with_config_dir_full(tmp_path, tiny_fs):
    d = VfdProcess(tmp_path, [sim_pf(PF, 8)], config_dir=str(tiny_fs / "config"))
    d.config_dir = tiny_fs / "config"
    d.live_dir = tiny_fs / "config_live"
    d.config_dir.mkdir()
    d.start()
    try:
        d.drop("vm1", vf_config(PF, 1, vlans=[10]))
        filler = fill(tiny_fs)
        r = d.iplex("add", "vm1")
        assert r.returncode == 1 and "No space left on device" in r.stderr
        assert sorted(p.name for p in d.config_dir.iterdir()) == ["vm1.json"]       # not .error
        assert list(d.live_dir.iterdir()) == []                                      # no 0-byte temp
        assert d.vf_state(1)["vlans"] == []
        filler.unlink()
        assert d.iplex("add", "vm1").returncode == 0
    finally:
        d.stop()
