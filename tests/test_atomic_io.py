"""src/atomic_io: every write is flushed to disk, renamed into place, and leaves no debris."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from src import atomic_io
from src.atomic_io import (
    atomic_path,
    replace_directory,
    write_bytes_atomic,
    write_json_atomic,
    write_parquet_atomic,
    write_text_atomic,
)


@pytest.fixture
def fsynced(monkeypatch) -> list[str]:
    """What os.fsync was called on: 'file:<name>' or 'dir:<name>'."""
    calls: list[str] = []
    real = os.fsync

    def spy(fd: int) -> None:
        mode = os.fstat(fd).st_mode
        name = Path(os.readlink(f"/proc/self/fd/{fd}")).name
        calls.append(f"{'dir' if stat.S_ISDIR(mode) else 'file'}:{name}")
        real(fd)

    monkeypatch.setattr(atomic_io.os, "fsync", spy)
    return calls


def debris(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_bytes_text_json_parquet_land_whole_and_fsynced(tmp_path: Path, fsynced) -> None:
    write_bytes_atomic(tmp_path / "sub" / "a.bin", b"\x00\x01")
    write_text_atomic(tmp_path / "b.txt", "ёлка\n")
    write_json_atomic(tmp_path / "c.json", {"слово": 1})
    write_parquet_atomic(tmp_path / "d.parquet", pa.table({"x": [1, 2, 3]}))
    assert (tmp_path / "sub" / "a.bin").read_bytes() == b"\x00\x01"
    assert (tmp_path / "b.txt").read_bytes() == "ёлка\n".encode()
    assert (tmp_path / "c.json").read_text(encoding="utf-8") == '{\n  "слово": 1\n}\n'
    assert pq.read_table(tmp_path / "d.parquet").column("x").to_pylist() == [1, 2, 3]
    # each file's data reached the disk before its rename, and each rename after it
    file_syncs = [c for c in fsynced if c.startswith("file:")]
    assert len(file_syncs) == 4 and all(c.endswith(".tmp") for c in file_syncs)
    assert fsynced.count("dir:sub") == 1 and fsynced.count(f"dir:{tmp_path.name}") == 3
    assert debris(tmp_path) == [] and debris(tmp_path / "sub") == []


def test_a_failed_write_keeps_the_old_file_and_removes_its_temporary(tmp_path: Path) -> None:
    target = tmp_path / "out.parquet"
    write_parquet_atomic(target, pa.table({"x": [1]}))
    with pytest.raises(RuntimeError, match="disk on fire"), atomic_path(target) as tmp:
        tmp.write_bytes(b"half a parq")
        raise RuntimeError("disk on fire")
    assert pq.read_table(target).column("x").to_pylist() == [1]
    assert debris(tmp_path) == []

    class Unencodable:
        pass

    with pytest.raises(TypeError):
        write_json_atomic(target.with_suffix(".json"), {"x": Unencodable()})
    assert not target.with_suffix(".json").exists() and debris(tmp_path) == []


def test_written_files_get_ordinary_permissions(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        write_bytes_atomic(tmp_path / "a", b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o644  # not mkstemp's private 0600


def test_concurrent_writers_never_share_a_temporary_name(tmp_path: Path) -> None:
    names = {atomic_io.temporary_sibling(tmp_path / "x").name for _ in range(200)}
    assert len(names) == 200 and all(n.startswith(".x.") for n in names)


def test_replace_directory_swaps_whole_folders(tmp_path: Path, fsynced) -> None:
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    staging = tmp_path / ".out.staging"
    (staging / "deep").mkdir(parents=True)
    (staging / "deep" / "new.txt").write_text("new")
    replace_directory(staging, target)
    assert [p.relative_to(target).as_posix() for p in sorted(target.rglob("*"))] == [
        "deep", "deep/new.txt"]
    assert not staging.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert "file:new.txt" in fsynced and f"dir:{tmp_path.name}" in fsynced


def test_temporaries_of_killed_writers_are_swept_before_the_next_write(tmp_path: Path) -> None:
    target = tmp_path / "last.ckpt"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid that no longer runs
    stale = tmp_path / f".last.ckpt.{dead.pid}.0123abcd.tmp"
    stale.write_bytes(b"half a checkpoint")
    ours = atomic_io.temporary_sibling(target)  # a live writer's (this process) is kept
    ours.write_bytes(b"being written")
    with atomic_path(target, sweep_stale=True) as tmp:
        tmp.write_bytes(b"whole")
    assert target.read_bytes() == b"whole"
    assert not stale.exists() and ours.exists()
