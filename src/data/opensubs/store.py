"""The stage's output: raw SRT bytes under files/ and one manifest row for everything seen.

Bytes are stored exactly as found (decoding is `clean_subs`' job). Only rows with status `ok` own a
stored file; every other status says why an input was not stored, so nothing is dropped silently.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import pyarrow as pa

from src.atomic_io import write_bytes_atomic, write_parquet_atomic


class Status:
    """Manifest `status` values."""

    OK = "ok"
    DUPLICATE = "duplicate_bytes"  # same bytes as an earlier row (see duplicate_of)
    ARCHIVE = "archive"  # a container that was opened; its members have their own rows
    NOT_SRT = "not_srt"  # a member whose name is neither a subtitle nor an archive
    TOO_LARGE = "too_large"  # over max_member_bytes / max_nested_archive_bytes
    BOMB = "bomb"  # compression ratio over max_compression_ratio
    TRAVERSAL = "traversal"  # absolute path or `..` in a member name (zip slip)
    SYMLINK = "symlink"
    HARDLINK = "hardlink"
    SPECIAL = "special"  # device, fifo or other non-regular member
    TOO_DEEP = "too_deep"  # nesting beyond max_depth
    LIMIT_BYTES = "limit_total_bytes"  # archive stopped: max_archive_bytes reached
    LIMIT_MEMBERS = "limit_member_count"  # archive stopped: max_archive_members reached
    CORRUPT_ARCHIVE = "corrupt_archive"
    CORRUPT_MEMBER = "corrupt_member"  # bad CRC, encrypted, truncated member
    UNREADABLE = "unreadable"  # OS error reading a file on disk
    MISSING = "missing"  # a configured input path that does not exist
    API_ERROR = "api_error"
    QUOTA = "quota"  # not fetched: daily download quota spent (resumable)
    RATE_LIMITED = "rate_limited"  # not fetched: server asked for a longer wait than we allow


@dataclass
class ManifestRow:
    file_id: str
    source: str  # input path (relative to the repo when inside it) or "api"
    member: str  # path inside source; nested archives joined with "!"
    status: str
    bytes: int | None = None
    sha256: str | None = None
    error: str | None = None
    language: str | None = None
    title: str | None = None
    imdb_id: str | None = None
    remote_id: str | None = None  # OpenSubtitles subtitle id, for API rows
    stored_path: str | None = None  # relative to the output dir, only for status ok
    duplicate_of: str | None = None


MANIFEST_SCHEMA = pa.schema(
    [(f.name, pa.int64() if f.name == "bytes" else pa.string()) for f in fields(ManifestRow)]
)


def stable_file_id(source: str, member: str) -> str:
    """Same source and member path -> same id on every run and machine."""
    return hashlib.sha1(f"{source}!{member}".encode()).hexdigest()[:16]


_TOKEN_SPLIT = re.compile(r"[\s._\-/\\!()\[\]]+")


def language_hint(path: str, hints: Mapping[str, str]) -> str | None:
    """The language named by the token nearest the end of a path (Film.2001.eng.srt, ru/..., ...)."""
    for token in reversed(_TOKEN_SPLIT.split(path.lower())):
        if token in hints:
            return hints[token]
    return None


class FileStore:
    """Writes accepted SRT bytes under `out_dir/files` and collects the manifest rows."""

    def __init__(self, out_dir: Path, dedup_bytes: bool) -> None:
        self.out_dir = out_dir
        self.files_dir = out_dir / "files"
        self.files_dir.mkdir(parents=True, exist_ok=True)
        self.dedup_bytes = dedup_bytes
        self.rows: list[ManifestRow] = []
        self._first_by_sha: dict[str, str] = {}
        self._ids: set[str] = set()

    def record(self, row: ManifestRow) -> ManifestRow:
        # A zip may hold two entries with the same name: later ones get a numbered id.
        base, n = row.file_id, 1
        while row.file_id in self._ids:
            n += 1
            row.file_id = f"{base}-{n}"
        self._ids.add(row.file_id)
        self.rows.append(row)
        return row

    def add_file(self, row: ManifestRow, data: bytes) -> ManifestRow:
        """Store `data` for `row` (status ok) unless identical bytes were stored already."""
        digest = hashlib.sha256(data).hexdigest()
        row.bytes, row.sha256 = len(data), digest
        first = self._first_by_sha.get(digest) if self.dedup_bytes else None
        if first is not None:
            row.status, row.duplicate_of = Status.DUPLICATE, first
            return self.record(row)
        self.record(row)
        rel = f"files/{row.file_id}.srt"
        write_bytes_atomic(self.out_dir / rel, data)
        self._first_by_sha[digest] = row.file_id
        row.status, row.stored_path = Status.OK, rel
        return row

    def write_manifest(self, name: str = "manifest.parquet") -> Path:
        columns = {f.name: [] for f in fields(ManifestRow)}
        for row in self.rows:
            for key, value in asdict(row).items():
                columns[key].append(value)
        table = pa.table(columns, schema=MANIFEST_SCHEMA)
        path = self.out_dir / name
        write_parquet_atomic(path, table)
        return path
