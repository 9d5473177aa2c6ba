"""Crash-safe file writes: readers see the old file or the whole new one, never half of either.

Every write goes to a temporary file in the target's own directory (a rename is atomic only within
one file system), which is flushed and fsync'ed before `os.replace` puts it in place; the directory
is fsync'ed afterwards so the rename itself survives a power cut. A failed write removes its
temporary file. Directories built in a staging folder are swapped in the same way.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq


def fsync_directory(path: Path) -> None:
    """Persist the entries of directory `path` (renames, creations) to disk."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return  # platforms that cannot open a directory (Windows) have no directory fsync
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems (certain network mounts) refuse fsync on directories
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    """Flush a file written by someone else's writer (torch.save, ParquetWriter) to disk."""
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def temporary_sibling(path: Path) -> Path:
    """A fresh hidden name beside `path`: unique per process and call, so writers never collide."""
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Remove temporaries of `path` left by writers that were killed (their pid is gone).

    For outputs that persist across runs (checkpoints): each kill mid-write would otherwise leave
    one more file. Lists the directory, so it is not for writes repeated thousands of times.
    """
    removed = []
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        pid = tmp.name[len(path.name) + 2:].split(".", 1)[0]
        if pid.isdigit() and not _process_alive(int(pid)):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, owned by someone else
    return True


@contextmanager
def atomic_path(path: str | os.PathLike[str], sweep_stale: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write `path`'s new content to; publish it when the block ends.

    For writers that take a path (torch.save, pq.ParquetWriter). On an exception the temporary
    file is removed and `path` is left as it was. `sweep_stale`: first remove the temporaries of
    `path` that killed writers left (see remove_stale_temporaries).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    if sweep_stale:
        remove_stale_temporaries(target)
    tmp = temporary_sibling(target)
    try:
        yield tmp
        fsync_file(tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_directory(target.parent)


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(target)
    # O_EXCL: never write through a link someone left under our temporary name; 0o666 lets the
    # umask decide the final mode, as for any ordinary file (mkstemp would make it private).
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_directory(target.parent)


def write_text_atomic(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> None:
    write_bytes_atomic(path, text.encode(encoding))


def write_json_atomic(path: str | os.PathLike[str], data: Any, indent: int | None = 2) -> None:
    """JSON as people read it: UTF-8 (no \\u escapes), indented, ending with a newline."""
    write_text_atomic(path, json.dumps(data, indent=indent, ensure_ascii=False) + "\n")


def write_parquet_atomic(path: str | os.PathLike[str], table: pa.Table, **options: Any) -> None:
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, **options)


def replace_directory(staging: Path, target: Path) -> None:
    """Swap a fully written `staging` directory in as `target`, replacing what was there.

    Its files are fsync'ed first. Two renames: a crash between them leaves `target` missing and
    the previous content under `.<name>.old<pid>` beside it, never a half-written `target`.
    """
    staging, target = Path(staging), Path(target)
    for root, _dirs, files in os.walk(staging):
        for name in files:
            fsync_file(Path(root) / name)
        fsync_directory(Path(root))
    os.chmod(staging, 0o755)  # mkdtemp makes it private; the result is an ordinary output folder
    old = target.with_name(f".{target.name}.old{os.getpid()}")
    if old.exists():
        shutil.rmtree(old)
    if target.exists():
        os.replace(target, old)
    os.replace(staging, target)
    fsync_directory(target.parent)
    shutil.rmtree(old, ignore_errors=True)
