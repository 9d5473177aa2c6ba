"""Runs of utterances cut into conversations, and the runs of our cleaned subtitles.

A run is a list of utterances taken to alternate between two speakers (consecutive subtitle lines
of one scene, consecutive speech paragraphs of prose). It becomes conversations of `min_turns` to
`max_turns` turns, an even number each so that the last is the assistant's; whatever is left over
(an odd last turn, a run too short) is counted, never silently lost.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from src.data.readers import open_parquet, read_parquet
from src.errors import InputError

SUBTITLE_COLUMNS = ("file_id", "language", "line_index", "start_ms", "end_ms", "scene", "text")


def cut_windows(run: list[str], min_turns: int, max_turns: int, counts: Counter[str]) -> list[list[str]]:
    """Consecutive, non-overlapping windows of an even number of turns in [min_turns, max_turns]."""
    largest = max_turns - max_turns % 2
    out: list[list[str]] = []
    i = 0
    while True:
        take = min(largest, len(run) - i)
        take -= take % 2
        if take < max(2, min_turns):
            break
        out.append(run[i:i + take])
        i += take
    left = len(run) - i
    if left == 1 and out:
        counts["turns_dropped_odd_last_turn"] += 1
    elif left:
        counts["turns_dropped_run_too_short"] += left
    return out


@dataclass(frozen=True)
class SubtitleWindow:
    file_id: str
    language: str
    first_line: int
    turns: list[str]


@dataclass(frozen=True)
class SubtitleRun:
    """Consecutive lines of one scene of one file, unbroken by a long pause or an unusable line."""

    file_id: str
    language: str
    first_line: int
    lines: list[str]


def _sorted_subtitle_rows(path: Any) -> Iterator[tuple[Any, ...]]:
    pf = open_parquet(path, hint="rebuild it with the clean_subs stage")
    missing = [c for c in SUBTITLE_COLUMNS if c not in pf.schema_arrow.names]
    if missing:
        raise InputError(f"{path}: missing column(s) {missing}; rebuild it with the clean_subs stage")
    import polars as pl

    # Sorted by file and line so a run never depends on the row order the cleaner wrote.
    table = pl.from_arrow(read_parquet(path, SUBTITLE_COLUMNS, hint="rebuild it with the clean_subs stage"))
    assert isinstance(table, pl.DataFrame)
    yield from table.sort(["file_id", "line_index"]).iter_rows()


def subtitle_windows(
    path: Any, languages: list[str], max_gap_ms: int, min_turns: int, max_turns: int,
    max_turn_chars: int, counts: Counter[str],
) -> Iterator[SubtitleWindow]:
    """Conversations from `data/clean/subtitles.parquet`: lines of one scene of one file in order,
    a new run at every file, scene, pause longer than `max_gap_ms` or over-long line."""
    yield from line_windows(_sorted_subtitle_rows(path), languages, max_gap_ms, min_turns, max_turns,
                            max_turn_chars, counts)


def subtitle_runs(path: Any, languages: list[str], max_gap_ms: int, max_turn_chars: int,
                  counts: Counter[str]) -> Iterator[SubtitleRun]:
    """The runs of `data/clean/subtitles.parquet` whole (what `subtitle_windows` cuts)."""
    yield from line_runs(_sorted_subtitle_rows(path), languages, max_gap_ms, max_turn_chars, counts)


def line_windows(
    rows: Iterable[tuple[Any, ...]], languages: list[str], max_gap_ms: int, min_turns: int,
    max_turns: int, max_turn_chars: int, counts: Counter[str],
) -> Iterator[SubtitleWindow]:
    """Windows of subtitle lines given in file and line order as (file_id, language, line_index,
    start_ms, end_ms, scene, text) tuples."""
    for run in line_runs(rows, languages, max_gap_ms, max_turn_chars, counts):
        offset = run.first_line
        for window in cut_windows(run.lines, min_turns, max_turns, counts):
            yield SubtitleWindow(run.file_id, run.language, offset, window)
            offset += len(window)


def line_runs(
    rows: Iterable[tuple[Any, ...]], languages: list[str], max_gap_ms: int, max_turn_chars: int,
    counts: Counter[str],
) -> Iterator[SubtitleRun]:
    """Runs of subtitle lines given in file and line order as (file_id, language, line_index,
    start_ms, end_ms, scene, text) tuples: a new run at every file, scene, pause longer than
    `max_gap_ms`, over-long or empty line (those two are counted and left out)."""
    keep = set(languages)
    run: list[str] = []
    run_start = 0
    key: tuple[Any, Any, Any] | None = None
    last_end = 0

    def flush() -> Iterator[SubtitleRun]:
        if run and key is not None:
            counts["runs"] += 1
            yield SubtitleRun(str(key[0]), str(key[1]), run_start, run)

    for file_id, language, line_index, start_ms, end_ms, scene, text in rows:
        counts["lines_read"] += 1
        if language not in keep:
            counts["lines_skipped_language"] += 1
            continue
        text = (text or "").strip()
        this = (file_id, language, scene)
        pause = key == this and start_ms is not None and start_ms - last_end > max_gap_ms
        too_long = len(text) > max_turn_chars
        if this != key or pause or too_long or not text:
            if pause:
                counts["runs_split_at_pause"] += 1
            yield from flush()
            run, run_start, key = [], line_index, this
        if too_long:
            counts["lines_dropped_too_long"] += 1
            key = None
            continue
        if not text:
            counts["lines_dropped_empty"] += 1
            key = None
            continue
        run.append(text)
        last_end = end_ms if end_ms is not None else last_end
    yield from flush()
