"""The cleaned corpora as a stream of documents, read batch by batch (never the whole file at once).

- literature (data/clean/librus.parquet): one row per document (doc_id, text, ...).
- subtitles (data/clean/subtitles.parquet): one row per line (file_id, line_index, text, language, ...);
  a document is one file's lines in line_index order joined by "\n". Rows grouped by file and ordered
  by line_index are streamed; otherwise the file is sorted in memory first (noted in the summary).
Document ids are prefixed with the corpus name, so the two corpora never collide in the split hash.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from src.data.readers import iter_parquet_batches, open_parquet, read_parquet
from src.errors import InputError
from src.paths import resolve

CORPUS_KEYS = {"literature": "literature_path", "subtitles": "subtitles_path"}
LITERATURE_COLUMNS = ("doc_id", "text")
SUBTITLE_COLUMNS = ("file_id", "line_index", "text")
# Rows per parquet read: large enough to amortize the call, small enough to keep memory flat.
READ_BATCH_ROWS = 2048


class CorpusError(InputError, ValueError):
    """A corpus that cannot be read as configured; the message names the file and the config key."""


@dataclass(frozen=True)
class Document:
    corpus: str
    doc_id: str
    text: str


@dataclass(frozen=True)
class CorpusSource:
    name: str
    path: Path
    config_key: str
    languages: tuple[str, ...] = ()


def corpus_sources(tcfg: Any, names: list[str] | tuple[str, ...]) -> list[CorpusSource]:
    """The configured corpora (the tokenizer section holds their paths); each file must exist."""
    if not names:
        raise CorpusError("no corpora chosen: set tokenizer.corpora (and tokenize.corpora), e.g. "
                          "[literature, subtitles]")
    sources = []
    for name in names:
        if name not in CORPUS_KEYS:
            raise CorpusError(f"unknown corpus {name!r} in the corpora list; expected one of "
                              f"{sorted(CORPUS_KEYS)}")
        key = CORPUS_KEYS[name]
        path = resolve(tcfg[key])
        if not path.is_file():
            raise CorpusError(f"{path}: corpus {name!r} not found (tokenizer.{key}); run the stage "
                              "that cleans it, or drop it from the corpora list")
        languages = tuple(tcfg.subtitles_languages) if name == "subtitles" else ()
        sources.append(CorpusSource(name, path, f"tokenizer.{key}", languages))
    return sources


def _require_columns(source: CorpusSource, pf: pq.ParquetFile, columns: tuple[str, ...]) -> None:
    have = set(pf.schema_arrow.names)
    missing = [c for c in columns if c not in have]
    if missing:
        raise CorpusError(f"{source.path}: missing column(s) {missing} ({source.config_key}); "
                          f"columns present: {sorted(have)}")


def _literature(source: CorpusSource) -> Iterator[Document]:
    pf = open_parquet(source.path, hint=source.config_key)
    _require_columns(source, pf, LITERATURE_COLUMNS)
    for batch in iter_parquet_batches(pf, source.path, LITERATURE_COLUMNS, READ_BATCH_ROWS):
        for doc_id, text in zip(batch.column(0).to_pylist(), batch.column(1).to_pylist(), strict=True):
            yield Document(source.name, f"{source.name}:{doc_id}", text or "")


def _subtitle_columns(source: CorpusSource, pf: pq.ParquetFile) -> list[str]:
    columns = list(SUBTITLE_COLUMNS)
    if source.languages:
        _require_columns(source, pf, ("language",))
        columns.append("language")
    _require_columns(source, pf, SUBTITLE_COLUMNS)
    return columns


def _subtitle_rows(source: CorpusSource) -> Iterator[tuple[Any, Any, str]]:
    """(file_id, line_index, text) rows in file order, language-filtered."""
    pf = open_parquet(source.path, hint=source.config_key)
    columns = _subtitle_columns(source, pf)
    wanted = set(source.languages)
    for batch in iter_parquet_batches(pf, source.path, columns, READ_BATCH_ROWS):
        cols = [batch.column(k).to_pylist() for k in range(len(columns))]
        for row in zip(*cols, strict=True):
            if wanted and row[3] not in wanted:
                continue
            yield row[0], row[1], row[2] or ""


def subtitles_are_grouped(source: CorpusSource) -> bool:
    """True when each file's rows are contiguous and in line_index order (then they can be streamed)."""
    pf = open_parquet(source.path, hint=source.config_key)
    _require_columns(source, pf, SUBTITLE_COLUMNS)
    closed: set[Any] = set()
    current, last = object(), None
    for batch in iter_parquet_batches(pf, source.path, ["file_id", "line_index"], READ_BATCH_ROWS):
        for file_id, index in zip(batch.column(0).to_pylist(), batch.column(1).to_pylist(), strict=True):
            if file_id != current:
                if file_id in closed:
                    return False
                closed.add(current)
                current, last = file_id, index
            elif last is not None and index is not None and index < last:
                return False
            else:
                last = index
    return True


def _sorted_subtitle_rows(source: CorpusSource) -> Iterator[tuple[Any, Any, str]]:
    import polars as pl

    pf = open_parquet(source.path, hint=source.config_key)
    columns = _subtitle_columns(source, pf)
    frame = pl.from_arrow(read_parquet(source.path, columns))
    if source.languages:
        frame = frame.filter(pl.col("language").is_in(list(source.languages)))
    frame = frame.sort(["file_id", "line_index"], maintain_order=True)
    for file_id, index, text in frame.select(SUBTITLE_COLUMNS).iter_rows():
        yield file_id, index, text or ""


def _subtitles(source: CorpusSource, grouped: bool) -> Iterator[Document]:
    rows = _subtitle_rows(source) if grouped else _sorted_subtitle_rows(source)
    current: Any = None
    lines: list[str] = []
    started = False
    for file_id, _, text in rows:
        if started and file_id != current:
            yield Document(source.name, f"{source.name}:{current}", "\n".join(lines))
            lines = []
        current, started = file_id, True
        lines.append(text)
    if started:
        yield Document(source.name, f"{source.name}:{current}", "\n".join(lines))


def iter_documents(sources: list[CorpusSource], notes: list[str] | None = None) -> Iterator[Document]:
    """Every document of every source, in file order. `notes` collects what the reader had to do."""
    for source in sources:
        if source.name == "subtitles":
            grouped = subtitles_are_grouped(source)
            if not grouped and notes is not None:
                notes.append(f"{source.path}: rows not grouped by file_id/line_index; sorted in memory")
            yield from _subtitles(source, grouped)
        else:
            yield from _literature(source)
