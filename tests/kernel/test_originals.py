"""The kernel backend's record of each VF's original state: a snapshot and an append-only journal
(vfd/backends/kernel/originals.py). What a new daemon loads is what was recorded, whatever the crash."""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil

import pytest

from vfd.backends.kernel import originals as og
from vfd.backends.kernel.originals import OriginalStore

PF = "0000:07:00.0"


def state(i: int) -> dict:
    return {"mac": f"02:00:00:00:00:{i:02x}", "vlan": i, "qos": 0, "proto": 0x8100, "spoofchk": True,
            "trust": False, "min_tx_rate": 0, "max_tx_rate": 0, "link_state": 0}


def loaded(d) -> dict[int, dict]:
    """What a restarted daemon finds."""
    fresh = OriginalStore(d)
    return {vfid: fresh.get(PF, vfid) for vfid in fresh.vfids(PF)}


@pytest.fixture
def store(tmp_path):
    s = OriginalStore(tmp_path / "st")
    s.open(PF)
    yield s
    s.close()


def test_a_record_is_one_appended_line_and_survives_a_restart(store, tmp_path, monkeypatch):
    rewrites = []
    monkeypatch.setattr(og, "atomic_write", lambda *a, **k: rewrites.append(a[0]))
    assert store.record(PF, 3, state(3)) is True
    assert store.record(PF, 3, state(9)) is False          # the first change wins
    store.record_many(PF, {4: state(4), 5: state(5)})
    store.drop(PF, 4)
    assert rewrites == []                                   # no rewrite of the PF's file per change
    lines = (tmp_path / "st" / f"{PF}.journal").read_text().splitlines()
    assert [json.loads(x) for x in lines] == [{"vf": 3, "state": state(3)}, {"vf": 4, "state": state(4)},
                                              {"vf": 5, "state": state(5)}, {"vf": 4, "state": None}]
    assert loaded(tmp_path / "st") == {3: state(3), 5: state(5)}


def test_opening_folds_the_journal_into_the_snapshot(store, tmp_path):
    store.record_many(PF, {1: state(1), 2: state(2)})
    store.drop(PF, 1)
    again = OriginalStore(tmp_path / "st")
    again.open(PF)
    snap = json.loads((tmp_path / "st" / f"{PF}.json").read_text())
    assert snap["vfs"] == {"2": state(2)} and snap["pf"] == PF
    assert (tmp_path / "st" / f"{PF}.journal").read_text() == ""
    assert loaded(tmp_path / "st") == {2: state(2)}
    again.close()


def test_a_crash_between_the_two_steps_of_folding_loads_the_same(store, tmp_path, monkeypatch):
    store.record_many(PF, {1: state(1), 2: state(2)})
    store.drop(PF, 1)
    store.record(PF, 1, state(11))
    journal = (tmp_path / "st" / f"{PF}.journal").read_bytes()
    store._fold(PF)                                          # snapshot written and journal emptied ...
    (tmp_path / "st" / f"{PF}.journal").write_bytes(journal)  # ... but the emptying never reached the disk
    assert loaded(tmp_path / "st") == {1: state(11), 2: state(2)}


def test_a_torn_last_line_is_skipped_and_the_rest_kept(store, tmp_path, caplog):
    store.record_many(PF, {1: state(1), 2: state(2)})
    with open(tmp_path / "st" / f"{PF}.journal", "a") as f:
        f.write('{"state":{"mac":"02:00')                   # a power cut in the middle of an append
    with caplog.at_level(logging.WARNING, logger="vfd.kernel"):
        assert loaded(tmp_path / "st") == {1: state(1), 2: state(2)}
    assert "line 3" in caplog.text and "torn" in caplog.text


def test_a_failed_append_records_nothing_and_leaves_no_torn_line(store, tmp_path, monkeypatch):
    store.record(PF, 1, state(1))
    path = tmp_path / "st" / f"{PF}.journal"
    size = path.stat().st_size

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(og.os, "fdatasync", full)
    with pytest.raises(OSError):
        store.record(PF, 2, state(2))
    with pytest.raises(OSError):
        store.drop(PF, 1)
    monkeypatch.undo()
    assert path.stat().st_size == size                     # what was written is cut back off
    assert not store.has(PF, 2) and store.has(PF, 1)       # memory as before each failed call
    store.record(PF, 3, state(3))                          # and the journal goes on cleanly
    assert loaded(tmp_path / "st") == {1: state(1), 3: state(3)}


def test_a_snapshot_written_by_an_earlier_vfd_loads(tmp_path):
    d = tmp_path / "st"
    d.mkdir()
    (d / f"{PF}.json").write_text(json.dumps({"about": og.ABOUT, "pf": PF, "vfs": {"7": state(7)}}))
    assert loaded(d) == {7: state(7)}


def test_a_state_dir_removed_under_the_daemon_is_written_again_whole(store, tmp_path):
    store.record_many(PF, {1: state(1), 2: state(2)})
    shutil.rmtree(tmp_path / "st")                          # the open journal now points at nothing
    store.record(PF, 3, state(3))
    assert loaded(tmp_path / "st") == {1: state(1), 2: state(2), 3: state(3)}


def test_the_journal_is_folded_once_it_outgrows_the_records(store, tmp_path, monkeypatch):
    monkeypatch.setattr(og, "FOLD_AFTER", 8)
    for i in range(6):                                       # 12 lines for at most 1 record
        store.record(PF, 1, state(i))
        store.drop(PF, 1)
    assert len((tmp_path / "st" / f"{PF}.journal").read_text().splitlines()) <= 8
    store.record(PF, 2, state(2))
    assert loaded(tmp_path / "st") == {2: state(2)}


def test_a_new_journal_file_is_made_durable_with_its_directory(tmp_path, monkeypatch):
    synced = []
    monkeypatch.setattr(og, "fsync_dir", lambda p: synced.append(os.fspath(p)))
    s = OriginalStore(tmp_path / "st")
    s.open(PF)
    s.record(PF, 1, state(1))
    s.record(PF, 2, state(2))
    assert synced == [str(tmp_path / "st")]                 # once, when the file was made
    s.close()
