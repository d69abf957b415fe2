"""core.files: whole-or-nothing writes and moves (the full-disk cases are in test_storage_faults)."""

from __future__ import annotations

import errno

import duckdb
import pytest

from retrain_assets.core import files


def test_a_full_disk_is_recognised_through_the_errors_it_caused():
    assert files.disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert files.disk_full(OSError(errno.EDQUOT, "Disk quota exceeded"))
    commit = duckdb.TransactionException('Failed to commit: Could not write file "w.wal": No space left on device')
    try:
        try:
            raise commit
        except duckdb.Error:
            raise duckdb.TransactionException("cannot rollback - no transaction is active")
    except duckdb.Error as rollback:
        assert files.disk_full(rollback), "the rollback's error hides the real one, which is found"
    assert not files.disk_full(OSError(errno.EACCES, "Permission denied"))
    assert not files.disk_full(ValueError("disk"))
    assert not files.disk_full(None)


def test_write_atomic_replaces_whole_or_refuses_when_exclusive(tmp_path):
    path = tmp_path / "deep" / "a.json"
    assert files.write_atomic(path, "one") == path and path.read_text() == "one"
    files.write_atomic(path, b"two")
    assert path.read_bytes() == b"two"
    with pytest.raises(FileExistsError):
        files.write_atomic(path, "three", exclusive=True)
    assert path.read_text() == "two"
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.json"], "no temporary file left"


def test_move_file_moves_only_once_before_commit_succeeded(tmp_path):
    source, target = tmp_path / "a.csv", tmp_path / "out" / "a.csv"
    target.parent.mkdir()
    source.write_bytes(b"x,y\n1,2\n")

    def refuse():
        raise OSError(errno.EACCES, "Permission denied")

    with pytest.raises(OSError, match="Permission denied"):
        files.move_file(source, target, before_commit=refuse)
    assert source.read_bytes() == b"x,y\n1,2\n" and list(target.parent.iterdir()) == []
    files.move_file(source, target)
    assert not source.exists() and target.read_bytes() == b"x,y\n1,2\n"


def test_the_full_disk_message_says_where_how_much_and_what_to_do(tmp_path):
    text = files.disk_full_message(tmp_path / "not-yet", "writing x", "Nothing was written.", "Free space.")
    assert text.startswith(f"the disk holding {tmp_path / 'not-yet'} is full (") and " free of " in text
    assert text.endswith("while writing x. Nothing was written. Free space.")


def test_names_near_the_255_byte_limit_are_written_and_moved(tmp_path):
    name = "é" * 100 + "x" * 30 + ".reason.json"  # 242 bytes: a temporary name beside it must stay shorter
    files.write_atomic(tmp_path / name, "{}", exclusive=True)
    other = tmp_path / "other"
    other.mkdir()
    files.move_file(tmp_path / name, other / name)
    assert (other / name).read_text() == "{}" and list(tmp_path.glob("*.partial")) == []
