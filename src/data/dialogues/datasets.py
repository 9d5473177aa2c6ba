"""Instruction/chat datasets on disk: parquet read lazily with polars, JSONL line by line.

The schema is that of the large Russian SFT corpora: `conversation` (list of {role, content}),
`overall_score` and `safety` 0–10, `pii_leak` and `refusal` 0/1, `source`, `topic`, more scores;
-1 means "not applicable". JSONL rows carry the same fields, or OpenAI-style `messages`.

Each configured filter is counted: rows before it and after it (filters apply in order), and how
many rows had no value for its column (-1, null, or no such column in the file). Parquet files are
filtered by polars' streaming engine into a temporary file and then read in batches, so a file of
gigabytes never sits in memory whole.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq

from src.data.readers import InputFileError
from src.errors import InputError

CONVERSATION_COLUMNS = ("conversation", "messages")
QUALITY_FLOATS = ("overall_score", "safety")
QUALITY_INTS = ("pii_leak", "refusal")
QUALITY_STRINGS = ("topic", "source")
DATASET_SUFFIXES = (".parquet", ".jsonl", ".ndjson")
NOT_APPLICABLE = -1
BATCH_ROWS = 8192


@dataclass
class FilterCount:
    name: str  # e.g. "overall_score >= 6"
    before: int = 0
    after: int = 0
    not_applicable: int = 0


@dataclass
class FileCounts:
    path: str
    rows: int = 0
    invalid_json_lines: int = 0
    filters: list[FilterCount] = field(default_factory=list)

    @property
    def kept(self) -> int:
        return self.filters[-1].after if self.filters else self.rows - self.invalid_json_lines

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "rows": self.rows, "invalid_json_lines": self.invalid_json_lines,
                "kept": self.kept, "filters": [vars(f) for f in self.filters]}


def filter_name(f: Any) -> str:
    value = int(f.value) if float(f.value).is_integer() else f.value
    return f"{f.column} {f.op} {value}"


def dataset_files(paths: Sequence[str | Path]) -> list[Path]:
    """Dataset files named by `paths` (folders searched recursively), sorted for a stable order."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.suffix in DATASET_SUFFIXES and f.is_file())
            if not found:
                raise InputError(f"{p}: no {'/'.join(DATASET_SUFFIXES)} files in this folder")
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            raise InputError(f"{p}: no such file or folder (build_dialogues.datasets.paths)")
    return files


def _compare(column: pl.Expr, op: str, value: float) -> pl.Expr:
    return {">=": column >= value, ">": column > value, "<=": column <= value, "<": column < value,
            "==": column == value, "!=": column != value}[op]


def _filter_exprs(names: set[str], filters: Sequence[Any]) -> list[tuple[pl.Expr, pl.Expr]]:
    """(passes, not_applicable) per filter for a frame with columns `names`."""
    out = []
    for f in filters:
        keep = pl.lit(f.if_missing == "keep")
        if f.column not in names:
            out.append((keep, pl.lit(True)))
            continue
        col = pl.col(f.column).cast(pl.Float64, strict=False)
        missing = col.is_null() | (col == NOT_APPLICABLE)
        out.append((pl.when(missing).then(keep).otherwise(_compare(col, f.op, float(f.value))), missing))
    return out


def _count(frame: pl.LazyFrame | pl.DataFrame, exprs: list[tuple[pl.Expr, pl.Expr]],
           counts: FileCounts, filters: Sequence[Any]) -> pl.Expr:
    """Fill the per-filter counts (one pass); return the expression of rows passing them all."""
    aggs = [pl.len().alias("rows")]
    passing = pl.lit(True)
    for i, (passes, missing) in enumerate(exprs):
        aggs.append((passing & missing).sum().alias(f"na{i}"))
        passing = passing & passes
        aggs.append(passing.sum().alias(f"after{i}"))
    result = frame.select(aggs)
    if isinstance(result, pl.LazyFrame):
        result = result.collect(engine="streaming")
    row = result.row(0, named=True)
    before = int(row["rows"])
    counts.rows += before
    if not counts.filters:
        counts.filters = [FilterCount(filter_name(f)) for f in filters]
    for i, fc in enumerate(counts.filters):
        after = int(row[f"after{i}"] or 0)
        fc.before += before
        fc.after += after
        fc.not_applicable += int(row[f"na{i}"] or 0)
        before = after
    return passing


def _record(row: dict[str, Any], conv_column: str) -> dict[str, Any]:
    """A row as the stage's record: conversation and the quality columns (-1 becomes null)."""
    rec: dict[str, Any] = {"conversation": row.get(conv_column)}
    for name in QUALITY_FLOATS:
        v = row.get(name)
        rec[name] = float(v) if isinstance(v, int | float) and v != NOT_APPLICABLE else None
    for name in QUALITY_INTS:
        v = row.get(name)
        rec[name] = int(v) if isinstance(v, int | float) and v != NOT_APPLICABLE else None
    topic, origin = row.get("topic"), row.get("source")
    rec["topic"] = str(topic) if topic is not None else None
    rec["origin"] = str(origin) if origin is not None else None
    return rec


def _read_parquet(path: Path, filters: Sequence[Any], counts: FileCounts) -> Iterator[dict[str, Any]]:
    try:
        lf = pl.scan_parquet(path)
        names = set(lf.collect_schema().names())
    except Exception as exc:  # polars raises many types for a broken file
        raise InputFileError(f"{path}: unreadable parquet ({str(exc).splitlines()[0]})") from None
    conv = next((c for c in CONVERSATION_COLUMNS if c in names), None)
    if conv is None:
        raise InputError(f"{path}: no 'conversation' or 'messages' column (has {sorted(names)})")
    passing = _count(lf, _filter_exprs(names, filters), counts, filters)
    wanted = [conv, *(c for c in (*QUALITY_FLOATS, *QUALITY_INTS, *QUALITY_STRINGS) if c in names)]
    with tempfile.TemporaryDirectory(prefix="dialogues.") as tmp:
        kept = Path(tmp) / "kept.parquet"
        try:
            lf.filter(passing).select(wanted).sink_parquet(kept)
        except Exception as exc:
            raise InputFileError(f"{path}: cannot read rows ({str(exc).splitlines()[0]})") from None
        for batch in pq.ParquetFile(kept).iter_batches(batch_size=BATCH_ROWS):
            for row in batch.to_pylist():
                yield _record(row, conv)


def _read_jsonl(path: Path, filters: Sequence[Any], counts: FileCounts,
                bad_lines: list[str]) -> Iterator[dict[str, Any]]:
    """Line by line: a line that is not a JSON object is counted (and named in `bad_lines`)."""
    columns = {f.column for f in filters}
    chunk: list[dict[str, Any]] = []

    def flush() -> Iterator[dict[str, Any]]:
        frame = pl.DataFrame({c: [_number(r.get(c)) for r in chunk] for c in columns},
                             schema=dict.fromkeys(columns, pl.Float64))
        present = {c for c in columns if any(c in r for r in chunk)}
        passing = _count(frame, _filter_exprs(present, filters), counts, filters)
        mask = frame.select(passing.alias("ok")).to_series() if len(frame) else []
        for r, ok in zip(chunk, mask, strict=True):
            if ok:
                yield _record(r, "conversation" if "conversation" in r else "messages")
        chunk.clear()

    try:
        handle = path.open(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise InputFileError(f"{path}: cannot open ({exc.strerror or exc})") from None
    with handle:
        for lineno, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                obj, why = None, exc.msg
            else:
                why = "not a JSON object"
            if not isinstance(obj, dict):
                counts.invalid_json_lines += 1
                counts.rows += 1
                bad_lines.append(f"{path}:{lineno}: {why}")
                continue
            chunk.append(obj)
            if len(chunk) >= BATCH_ROWS:
                yield from flush()
        if chunk:
            yield from flush()


def _number(v: Any) -> float | None:
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, int | float):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return None
    return None


def read_dataset(path: Path, filters: Sequence[Any], counts: FileCounts,
                 bad_lines: list[str]) -> Iterator[dict[str, Any]]:
    """The rows of one dataset file that pass `filters`, as records; `counts` filled as it goes."""
    if path.suffix == ".parquet":
        return _read_parquet(path, filters, counts)
    if path.suffix in (".jsonl", ".ndjson"):
        return _read_jsonl(path, filters, counts, bad_lines)
    raise InputError(f"{path}: not a dataset file (expected {', '.join(DATASET_SUFFIXES)})")
