"""Walk directories and (nested) zip / tar / gz archives of subtitles, safely.

Nothing is ever extracted to disk under a member's own name: members are read into memory (capped)
and stored under a generated id, so a "zip slip" name cannot write anywhere. Such names, links,
devices, bombs and broken archives are still recorded in the manifest with the reason.
"""

from __future__ import annotations

import gzip
import io
import os
import re
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from src.data.opensubs.store import FileStore, ManifestRow, Status, language_hint, stable_file_id
from src.paths import display_path, resolve

_TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
_READ_CHUNK = 1 << 16
# Errors a damaged archive raises from the standard library's readers.
_ARCHIVE_ERRORS = (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, zlib.error, ValueError)
_MEMBER_ERRORS = (zipfile.BadZipFile, EOFError, OSError, zlib.error, NotImplementedError, RuntimeError)


def archive_kind(name: str) -> str | None:
    """'zip', 'tar' or 'gz' from a file name; None for anything else."""
    lower = name.lower()
    if lower.endswith(".zip"):
        return "zip"
    if lower.endswith(_TAR_SUFFIXES):
        return "tar"
    if lower.endswith(".gz"):
        return "gz"
    return None


def unsafe_member_reason(name: str) -> str | None:
    """Why a member name could escape an extraction dir (absolute, drive letter, `..`), or None."""
    norm = name.replace("\\", "/")
    if norm.startswith("/") or re.match(r"^[A-Za-z]:", norm):
        return "absolute path"
    if ".." in norm.split("/"):
        return "parent directory reference '..'"
    if "\x00" in norm:
        return "NUL byte in name"
    return None


@dataclass
class Limits:
    max_member_bytes: int
    max_nested_archive_bytes: int
    max_archive_bytes: int
    max_archive_members: int
    max_compression_ratio: float
    ratio_min_bytes: int
    max_depth: int

    @classmethod
    def from_config(cls, cfg: Any) -> Limits:
        return cls(**{name: cfg[name] for name in cls.__dataclass_fields__})

    def is_bomb(self, uncompressed: int, compressed: int) -> bool:
        return (uncompressed >= self.ratio_min_bytes
                and uncompressed > self.max_compression_ratio * max(compressed, 1))


class _Refused(Exception):
    """A member that is not read (too large, bomb); `status` goes into the manifest."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status


class _ArchiveStopped(Exception):
    """An archive stops early (budget, bomb); rows so far are kept.

    `whole_input`: the top-level archive's budget is spent, so its enclosing archives stop too.
    """

    def __init__(self, status: str, message: str, whole_input: bool) -> None:
        super().__init__(message)
        self.status = status
        self.whole_input = whole_input


@dataclass
class _Budget:
    """What one top-level archive may still produce, nested archives included."""

    bytes_left: int
    members_left: int

    def take_member(self) -> None:
        self.members_left -= 1
        if self.members_left < 0:
            raise _ArchiveStopped(Status.LIMIT_MEMBERS, "max_archive_members reached; rest not read",
                                  whole_input=True)

    def take_bytes(self, n: int) -> None:
        self.bytes_left -= n
        if self.bytes_left < 0:
            raise _ArchiveStopped(Status.LIMIT_BYTES, "max_archive_bytes reached; rest not read",
                                  whole_input=True)


def read_capped(stream: IO[bytes], cap: int, limits: Limits, compressed_size: int | None) -> bytes:
    """Read at most `cap` bytes, refusing early on size or (when known) compression ratio."""
    chunks: list[bytes] = []
    total = 0
    while True:
        chunk = stream.read(_READ_CHUNK)
        if not chunk:
            return b"".join(chunks)
        total += len(chunk)
        if total > cap:
            raise _Refused(Status.TOO_LARGE, f"more than {cap} bytes uncompressed")
        if compressed_size is not None and limits.is_bomb(total, compressed_size):
            raise _Refused(Status.BOMB, f"compression ratio over {limits.max_compression_ratio:g} "
                                        f"({total} bytes from {compressed_size})")
        chunks.append(chunk)


class ArchiveWalker:
    """Feeds every file and member under the configured inputs into a `FileStore`."""

    def __init__(
        self,
        store: FileStore,
        limits: Limits,
        srt_suffixes: Sequence[str],
        language_hints: Mapping[str, str],
        follow_file_symlinks: bool = True,
        on_row: Callable[[ManifestRow], None] | None = None,
    ) -> None:
        self.store = store
        self.limits = limits
        self.srt_suffixes = tuple(s.lower() for s in srt_suffixes)
        self.hints = dict(language_hints)
        self.follow_file_symlinks = follow_file_symlinks
        self.on_row = on_row or (lambda row: None)

    # -- rows ------------------------------------------------------------------------------------
    def _row(self, source: str, member: str, status: str, **extra: Any) -> ManifestRow:
        return ManifestRow(file_id=stable_file_id(source, member), source=source, member=member,
                           status=status, language=language_hint(member, self.hints), **extra)

    def _skip(self, source: str, member: str, status: str, error: str | None = None,
              size: int | None = None) -> ManifestRow:
        row = self.store.record(self._row(source, member, status, error=error, bytes=size))
        self.on_row(row)
        return row

    def _keep(self, source: str, member: str, data: bytes) -> None:
        self.on_row(self.store.add_file(self._row(source, member, Status.OK), data))

    def _is_srt(self, name: str) -> bool:
        return name.lower().endswith(self.srt_suffixes)

    # -- inputs on disk --------------------------------------------------------------------------
    def walk_input(self, path_text: str) -> None:
        path = resolve(path_text)
        source = display_path(path) if path.exists() else path_text
        if not path.exists():
            self._skip(source, "", Status.MISSING, f"input path not found: {path}")
        elif path.is_dir():
            self._walk_dir(path, source)
        else:
            self._disk_file(path, source, path.name)

    def _walk_dir(self, root: Path, source: str) -> None:
        for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
            here = Path(dirpath)
            dirnames.sort()
            for name in list(dirnames):
                if (here / name).is_symlink():
                    dirnames.remove(name)
                    rel = (here / name).relative_to(root).as_posix()
                    self._skip(source, rel, Status.SYMLINK, "directory symlink not followed")
            for name in sorted(filenames):
                full = here / name
                rel = full.relative_to(root).as_posix()
                if full.is_symlink() and not self.follow_file_symlinks:
                    self._skip(source, rel, Status.SYMLINK, "file symlink not followed")
                elif not full.is_file():
                    self._skip(source, rel, Status.SPECIAL, "not a regular file (or a broken link)")
                else:
                    self._disk_file(full, source, rel)

    def _disk_file(self, path: Path, source: str, member: str) -> None:
        try:
            size = path.stat().st_size
            kind = archive_kind(path.name)
            if kind is not None:
                budget = _Budget(self.limits.max_archive_bytes, self.limits.max_archive_members)
                self._archive(kind, path, size, source, member, depth=1, budget=budget)
            elif not self._is_srt(path.name):
                self._skip(source, member, Status.NOT_SRT, size=size)
            elif size > self.limits.max_member_bytes:
                self._skip(source, member, Status.TOO_LARGE,
                           f"{size} bytes > max_member_bytes {self.limits.max_member_bytes}", size)
            else:
                self._keep(source, member, path.read_bytes())
        except OSError as exc:
            self._skip(source, member, Status.UNREADABLE, f"{type(exc).__name__}: {exc}")

    # -- archives --------------------------------------------------------------------------------
    def _archive(self, kind: str, blob: Path | bytes, size: int, source: str, member: str,
                 depth: int, budget: _Budget) -> None:
        """Open one container and walk its members; a failure marks the container's own row."""
        row = self._skip(source, member, Status.ARCHIVE, size=size)
        walk = {"zip": self._walk_zip, "tar": self._walk_tar, "gz": self._walk_gz}[kind]
        try:
            walk(blob, size, source, member, depth, budget)
        except _ArchiveStopped as exc:
            row.status, row.error = exc.status, str(exc)
            if depth > 1 and exc.whole_input:
                raise  # the budget belongs to the top-level archive: stop all of it
        except _ARCHIVE_ERRORS as exc:
            row.status, row.error = Status.CORRUPT_ARCHIVE, f"{type(exc).__name__}: {exc}"

    def _member(self, source: str, parent: str, name: str, depth: int, budget: _Budget,
                size: int, opener: Callable[[], IO[bytes]], compressed: int | None) -> None:
        """One member of an archive: refuse it with a reason, store it, or recurse into it."""
        member = f"{parent}!{name}"
        budget.take_member()
        unsafe = unsafe_member_reason(name)
        kind = archive_kind(name)
        if unsafe:
            self._skip(source, member, Status.TRAVERSAL, unsafe, size)
            return
        if kind is None and not self._is_srt(name):
            self._skip(source, member, Status.NOT_SRT, size=size)
            return
        if kind is not None and depth >= self.limits.max_depth:
            self._skip(source, member, Status.TOO_DEEP, f"nested deeper than max_depth "
                                                        f"{self.limits.max_depth}", size)
            return
        cap = self.limits.max_nested_archive_bytes if kind else self.limits.max_member_bytes
        try:
            if size > cap:
                raise _Refused(Status.TOO_LARGE, f"{size} bytes > cap {cap}")
            if compressed is not None and self.limits.is_bomb(size, compressed):
                raise _Refused(Status.BOMB, f"declared ratio {size}/{compressed} over "
                                            f"{self.limits.max_compression_ratio:g}")
            with opener() as stream:
                data = read_capped(stream, cap, self.limits, compressed)
        except _Refused as exc:
            self._skip(source, member, exc.status, str(exc), size)
            return
        except _MEMBER_ERRORS as exc:
            self._skip(source, member, Status.CORRUPT_MEMBER, f"{type(exc).__name__}: {exc}", size)
            return
        budget.take_bytes(len(data))
        if kind is None:
            self._keep(source, member, data)
        else:
            self._archive(kind, data, len(data), source, member, depth + 1, budget)

    def _walk_zip(self, blob: Path | bytes, size: int, source: str, member: str, depth: int,
                  budget: _Budget) -> None:
        with zipfile.ZipFile(io.BytesIO(blob) if isinstance(blob, bytes) else blob) as zf:
            for info in zf.infolist():
                if info.is_dir():
                    continue
                mode = info.external_attr >> 16
                if stat.S_ISLNK(mode):
                    budget.take_member()
                    self._skip(source, f"{member}!{info.filename}", Status.SYMLINK,
                               "symlink member ignored", info.file_size)
                    continue
                if info.flag_bits & 0x1:
                    budget.take_member()
                    self._skip(source, f"{member}!{info.filename}", Status.CORRUPT_MEMBER,
                               "encrypted member", info.file_size)
                    continue
                self._member(source, member, info.filename, depth, budget, info.file_size,
                             lambda info=info: zf.open(info), info.compress_size)

    def _walk_tar(self, blob: Path | bytes, size: int, source: str, member: str, depth: int,
                  budget: _Budget) -> None:
        if isinstance(blob, bytes):
            tf = tarfile.open(fileobj=io.BytesIO(blob), mode="r:*")
        else:
            tf = tarfile.open(blob, mode="r:*")
        declared = 0
        with tf:
            for info in tf:
                # Tar members are not compressed one by one: judge the whole stream's ratio from
                # the sizes its headers declare, before the reader inflates a member's data.
                declared += info.size
                if self.limits.is_bomb(declared, size):
                    raise _ArchiveStopped(Status.BOMB, f"declared {declared} bytes from {size} "
                                                       f"compressed: ratio over limit; rest not read",
                                          whole_input=False)
                path = f"{member}!{info.name}"
                if info.isdir():
                    continue
                if info.issym() or info.islnk():
                    budget.take_member()
                    status = Status.SYMLINK if info.issym() else Status.HARDLINK
                    self._skip(source, path, status, f"link to {info.linkname!r} ignored")
                elif not info.isreg():
                    budget.take_member()
                    self._skip(source, path, Status.SPECIAL, "device, fifo or other special member")
                else:
                    self._member(source, member, info.name, depth, budget, info.size,
                                 lambda info=info: _tar_stream(tf, info), None)

    def _walk_gz(self, blob: Path | bytes, size: int, source: str, member: str, depth: int,
                 budget: _Budget) -> None:
        # A bare .gz holds one file: its name is the archive's without ".gz".
        name = Path(member.rsplit("!", 1)[-1]).name
        inner = name[:-3] if name.lower().endswith(".gz") else name

        def opener() -> IO[bytes]:
            return gzip.GzipFile(fileobj=io.BytesIO(blob)) if isinstance(blob, bytes) \
                else gzip.open(blob, "rb")

        # The size in the gzip trailer is unreliable (mod 2**32): the ratio is checked while reading.
        self._member(source, member, inner, depth, budget, 0, opener, size)


def _tar_stream(tf: tarfile.TarFile, info: tarfile.TarInfo) -> IO[bytes]:
    stream = tf.extractfile(info)
    if stream is None:
        raise OSError(f"cannot read tar member {info.name!r}")
    return stream
