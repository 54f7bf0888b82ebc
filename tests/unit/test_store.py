"""The store: name confinement, atomic writes, moves."""

import os

import pytest

import errno
import stat

from vfd import store as store_mod
from vfd.errors import ConfigError, RequestError, VfdError
from vfd.store import MAX_PORT_ID_BYTES, Store, StoreError, atomic_write


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
    with pytest.raises(ConfigError, match="symbolic link"):
        store.read(store.config_dir / "link.json", "link")
    os.mkfifo(store.config_dir / "fifo.json")
    with pytest.raises(ConfigError, match="not a regular file"):
        store.read(store.config_dir / "fifo.json", "fifo")
    (store.config_dir / "empty.json").write_text("  ")
    with pytest.raises(ConfigError, match="empty"):
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


def test_mark_error_keeps_the_latest_per_port(store):
    src = store.config_dir / "vm1.json"
    src.write_text("{}")
    store.mark_error(src)
    assert (store.config_dir / "vm1.json.error").read_text() == "{}" and not src.exists()
    src.write_text('{"second": 1}')
    store.mark_error(src)
    assert [p.name for p in store.config_dir.iterdir()] == ["vm1.json.error"]
    assert (store.config_dir / "vm1.json.error").read_text() == '{"second": 1}'


def test_mark_error_keeps_a_bounded_number(store, monkeypatch):
    monkeypatch.setattr(store_mod, "MAX_ERROR_FILES", 3)
    for i in range(5):
        p = store.config_dir / f"vm{i}.json"
        p.write_text("{}")
        store.mark_error(p)
        os.utime(store.config_dir / f"vm{i}.json.error", ns=(i * 10**9, i * 10**9))   # a clear order of age
    assert sorted(p.name for p in store.config_dir.iterdir()) == ["vm2.json.error", "vm3.json.error",
                                                                  "vm4.json.error"]


def test_export_writes_no_file(store):
    assert not hasattr(store, "export")         # the daemon never writes where a request says


def test_atomic_write_ignores_what_is_planted_at_a_predictable_temp_name(tmp_path):
    """The old temp name was .<name>.tmp<pid>: a symlink (or FIFO) planted there broke or hung vfd."""
    target = tmp_path / "victim"
    target.write_text("untouched")
    (tmp_path / f".f.json.tmp{os.getpid()}").symlink_to(target)
    atomic_write(tmp_path / "f.json", b"new")
    assert (tmp_path / "f.json").read_bytes() == b"new" and target.read_text() == "untouched"


def test_atomic_write_removes_its_temp_on_failure(tmp_path, monkeypatch):
    def full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(os, "write", full)
    with pytest.raises(OSError):
        atomic_write(tmp_path / "f.json", b"data")
    assert list(tmp_path.iterdir()) == []          # no 0-byte temp file left behind


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_atomic_write_owner_is_set_before_the_rename(tmp_path, monkeypatch):
    seen = []
    real_replace = os.replace

    def spy(src, dst):
        seen.append(os.lstat(src).st_uid)
        real_replace(src, dst)
    monkeypatch.setattr(os, "replace", spy)
    atomic_write(tmp_path / "f.json", b"data", uid=65534)
    assert seen == [65534] and os.stat(tmp_path / "f.json").st_uid == 65534


def test_store_failures_are_store_errors_naming_path_and_reason(store, monkeypatch):
    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(store_mod, "atomic_write", full)
    with pytest.raises(StoreError) as exc:
        store.write_live("vm1", b"{}")
    assert exc.value.path == str(store.live_path("vm1")) and exc.value.reason == "No space left on device"
    assert isinstance(exc.value, VfdError)


@pytest.mark.parametrize("name", ["a\nfree", "a\rb", "-x", "a b", "a\u2028b", "é", "a;b"])
def test_port_names_use_a_conservative_charset(store, name):
    with pytest.raises(RequestError, match="rule port_name") as exc:
        store.resolve(name, "config")
    assert "\n" not in str(exc.value) and "\r" not in str(exc.value)


def test_port_name_length_limit_is_named(store):
    with pytest.raises(RequestError, match=f"at most {MAX_PORT_ID_BYTES} bytes"):
        store.resolve("a" * 250, "config")
    ok = "a" * MAX_PORT_ID_BYTES
    path, _ = store.resolve(ok, "config")
    path.write_text("{}")
    store.write_live(ok, b"{}")                   # the longest name still leaves room for the temp name
    store.mark_error(path)
    assert store.live_path(ok).exists()


def test_counter_baselines_round_trip(store):
    assert store.load_baselines() == {}
    store.save_baselines({"pf0": {"pf": {"rx_pkts": 3}, "vfs": {"1": {"tx_pkts": 4}}}})
    assert store.load_baselines() == {"pf0": {"pf": {"rx_pkts": 3}, "vfs": {"1": {"tx_pkts": 4}}}}
    assert store.live_files() == []               # not mistaken for a live config
    assert stat.S_ISREG(os.lstat(store.live_dir / store_mod.BASELINES).st_mode)


def test_read_takes_a_file_whole_even_when_it_grew_after_fstat_but_not_past_the_limit(store, monkeypatch):
    """One read() of the size fstat gave is the common case; a file that grew in between (a writer
    still appending) is read on to its end, and refused once it passes MAX_CONFIG_BYTES."""
    real_fstat = os.fstat

    def older_size(fd):                       # fstat saw the file when it held 10 bytes
        st = real_fstat(fd)
        return os.stat_result((st.st_mode, st.st_ino, st.st_dev, st.st_nlink, st.st_uid, st.st_gid, 10,
                               st.st_atime, st.st_mtime, st.st_ctime))
    grown = b'{"name": "' + b"x" * 200_000 + b'"}'               # under the limit, > 64 KiB
    big = b'{"name": "' + b"x" * (store_mod.MAX_CONFIG_BYTES + 10) + b'"}'
    (store.config_dir / "grown.json").write_bytes(grown)
    (store.config_dir / "big.json").write_bytes(big)
    monkeypatch.setattr(store_mod.os, "fstat", older_size)
    assert store.read(store.config_dir / "grown.json", "grown").data == grown
    with pytest.raises(ConfigError, match=f"larger than {store_mod.MAX_CONFIG_BYTES} bytes"):
        store.read(store.config_dir / "big.json", "big")
    monkeypatch.setattr(store_mod.os, "fstat", real_fstat)
    with pytest.raises(ConfigError, match=f"larger than {store_mod.MAX_CONFIG_BYTES} bytes"):
        store.read(store.config_dir / "big.json", "big")              # seen at fstat: nothing read
    (store.config_dir / "small.json").write_bytes(b'{"name": "a"}')
    assert store.read(store.config_dir / "small.json", "small").data == b'{"name": "a"}'
