"""The store: name confinement, atomic writes, moves."""

import os

import pytest

from vfd.errors import RequestError
from vfd.store import Store, atomic_write


@pytest.fixture
def store(tmp_path):
    s = Store(str(tmp_path / "config"), str(tmp_path / "config_live"))
    s.ensure_dirs()
    return s


def test_resolve_bare_and_full_names(store):
    assert store.resolve("vm1", "config") == (store.config_dir / "vm1.json", "vm1")
    assert store.resolve("vm1.json", "live") == (store.live_dir / "vm1.json", "vm1")
    assert store.resolve(str(store.config_dir / "vm1.json"), "config")[1] == "vm1"


@pytest.mark.parametrize("name", ["../etc/passwd", "/etc/passwd", "a/b.json", "..", ".hidden.json", "", None, 7,
                                  "x\0y", "/tmp/../etc/shadow.json"])
def test_resolve_refuses_paths_outside(store, name):
    with pytest.raises(RequestError):
        store.resolve(name, "config")


def test_full_path_in_the_other_dir_refused(store):
    with pytest.raises(RequestError):
        store.resolve(str(store.live_dir / "vm1.json"), "config")


def test_read_refuses_symlinks_and_non_files(store, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("{}")
    (store.config_dir / "link.json").symlink_to(secret)
    with pytest.raises(RequestError):
        store.read(store.config_dir / "link.json", "link")
    os.mkfifo(store.config_dir / "fifo.json")
    with pytest.raises(RequestError, match="not a regular file"):
        store.read(store.config_dir / "fifo.json", "fifo")
    (store.config_dir / "empty.json").write_text("  ")
    with pytest.raises(RequestError, match="empty"):
        store.read(store.config_dir / "empty.json", "empty")


def test_atomic_write_replaces_whole_file(tmp_path):
    p = tmp_path / "f.json"
    atomic_write(p, b"old")
    atomic_write(p, b"new")
    assert p.read_bytes() == b"new"
    assert [x.name for x in tmp_path.iterdir()] == ["f.json"]      # no temp file left


def test_remove_live_keep(tmp_path):
    s = Store(str(tmp_path / "c"), str(tmp_path / "c_live"), keep_deleted=True)
    s.ensure_dirs()
    s.write_live("vm1", b"{}")
    s.remove_live("vm1")
    assert not s.live_path("vm1").exists() and (s.config_dir / "vm1.json-").read_bytes() == b"{}"


def test_mark_error_and_export(store):
    src = store.config_dir / "vm1.json"
    src.write_text("{}")
    store.mark_error(src)
    assert (store.config_dir / "vm1.json.error").exists() and not src.exists()
    store.write_live("vm2", b'{"a": 1}')
    out = store.export("vm2", "x.exp")
    assert out.read_bytes() == b'{"a": 1}'
    with pytest.raises(RequestError):
        store.export("vm2", "/etc/x.exp")
