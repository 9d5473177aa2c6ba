"""Stage `clean_subs`: data/raw/opensubs (files + manifest) -> data/clean/subtitles.parquet + a report.

Every manifest row ends up either as lines in the parquet or as a dropped file in the report with its
reason (upstream status, unreadable, empty, language, duplicate of another file).

Memory stays bounded by a chunk, not by the corpus (one language of OpenSubtitles is tens of GB):
pass 1 appends each cleaned file's lines to a parquet spool next to the output as results arrive and
keeps only per-file metadata (counts, language, dedup sketch); the drops are decided from that; pass 2
streams the spool row group by row group into the output, leaving out the lines of dropped files.
Files are cleaned in file_id order, so the spool is already in the output's order.
"""

from __future__ import annotations

import gc
import time
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from src.atomic_io import atomic_path
from src.config.sections.clean_subs import CleanSubsConfig
from src.data.readers import InputFileError, read_parquet
from src.data.subtitles.dedup import Candidate, find_duplicates
from src.data.subtitles.file_cleaner import (
    FileResult,
    Normalizer,
    clean_subtitle_bytes,
    load_normalizer,
)
from src.data.subtitles.fluff import FluffPatterns
from src.data.subtitles.report import FileRecord, write_report
from src.paths import resolve
from src.stage import StageRun
from src.worker_pool import process_pool

MANIFEST = "manifest.parquet"
REQUIRED_COLUMNS = ("file_id", "status")
# Where the stored file lies, relative to the input dir (the first of these columns present).
PATH_COLUMNS = ("path", "stored_path")
OUTPUT_SCHEMA = pa.schema([
    ("file_id", pa.string()), ("language", pa.string()), ("line_index", pa.int32()),
    ("start_ms", pa.int64()), ("end_ms", pa.int64()), ("scene", pa.int32()), ("text", pa.string()),
    ("source", pa.string()), ("title", pa.string()), ("imdb_id", pa.string()),
])
# The spool holds the output's columns plus the number of the result the line came from, so pass 2
# keeps exactly the lines of the result a kept record holds (a repeated file_id cleans twice).
SEGMENT = "segment"
SPOOL_SCHEMA = OUTPUT_SCHEMA.append(pa.field(SEGMENT, pa.int64()))

# Per-process state for the pool workers (set once by `_init_worker`, not per file).
_WORKER: dict[str, Any] = {}


def _init_worker(cfg: CleanSubsConfig, normalize_cfg: Any) -> None:
    normalize: Normalizer | None = None
    if cfg.normalize_text:
        normalize, _ = load_normalizer(normalize_cfg, cfg.repair_mojibake)
    _WORKER.update(cfg=cfg, normalize=normalize, patterns=FluffPatterns.build(cfg.rules))


def _init_pool_worker(cfg: CleanSubsConfig, normalize_cfg: Any) -> None:
    _init_worker(cfg, normalize_cfg)
    # What a worker holds after start-up (modules, compiled patterns, tables) lives as long as the
    # process: freezing it keeps the garbage collector's full passes, which the many small objects
    # of each file trigger, from walking it again and again (about a tenth of the cleaning time).
    gc.freeze()


def _clean_path(task: tuple[str, str]) -> FileResult:
    """Worker: read and clean one file; any failure becomes a status, never an exception."""
    file_id, path = task
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        return FileResult(name=file_id, status="unreadable", error=f"{path}: {exc.strerror or exc}")
    try:
        return clean_subtitle_bytes(
            data, file_id, _WORKER["cfg"], _WORKER["normalize"], _WORKER["patterns"]
        )
    except Exception as exc:  # a bug on one odd file must not stop the stage; it is reported
        return FileResult(name=file_id, status="error", bytes=len(data),
                          error=f"{type(exc).__name__}: {exc}")


def _clean_chunk(tasks: list[tuple[str, str]]) -> list[FileResult]:
    return [_clean_path(t) for t in tasks]


def iter_clean(
    tasks: list[tuple[str, str]], cfg: CleanSubsConfig, normalize_cfg: Any, workers: int
) -> Iterator[FileResult]:
    """Clean files in a process pool (in-process when workers <= 1), yielding results in task order.

    At most `pending_chunks_per_worker` chunks per worker are submitted ahead of the consumer, so
    finished results cannot pile up in memory faster than the caller writes them away.
    """
    progress = {"total": len(tasks), "desc": "clean_subs", "unit": "file", "disable": None}
    if workers <= 1 or len(tasks) <= 1:
        _init_worker(cfg, normalize_cfg)
        yield from (_clean_path(t) for t in tqdm(tasks, **progress))
        return
    size = max(1, cfg.chunksize)
    chunks = (tasks[i:i + size] for i in range(0, len(tasks), size))
    window = workers * max(1, cfg.pending_chunks_per_worker)
    # process_pool: the workers die with this process, even when it is killed.
    with process_pool(workers, _init_pool_worker, (cfg, normalize_cfg)) as pool, \
            tqdm(**progress) as bar:
        pending: deque[Future[list[FileResult]]] = deque()
        for chunk in chunks:
            pending.append(pool.submit(_clean_chunk, chunk))
            if len(pending) >= window:
                yield from _take(pending.popleft(), bar)
        while pending:
            yield from _take(pending.popleft(), bar)


def _take(future: Future[list[FileResult]], bar: tqdm) -> list[FileResult]:
    results = future.result()
    bar.update(len(results))
    return results


def clean_many(
    tasks: list[tuple[str, str]], cfg: CleanSubsConfig, normalize_cfg: Any, workers: int
) -> list[FileResult]:
    """All results of `iter_clean` as a list (for callers that want every file's lines at once)."""
    return list(iter_clean(tasks, cfg, normalize_cfg, workers))


class LineSpool:
    """Pass 1's store of cleaned lines: a parquet file written one row group per `rows_per_group`
    lines, so only one group's worth of lines is ever held in memory."""

    def __init__(self, path: Path, rows_per_group: int) -> None:
        self.path, self.rows_per_group = path, max(1, rows_per_group)
        self.segments = 0
        self._cols: dict[str, list[Any]] = {name: [] for name in SPOOL_SCHEMA.names}
        self._rows = 0
        self._writer = pq.ParquetWriter(path, SPOOL_SCHEMA)

    def append(self, result: FileResult, row: dict[str, Any]) -> int:
        """Spool a result's utterances with its manifest row's metadata; returns its segment number."""
        segment = self.segments
        self.segments += 1
        n = len(result.utterances)
        if n:
            imdb = row.get("imdb_id")
            cols = self._cols
            for name, value in (
                ("file_id", result.name), ("language", result.language), ("source", row.get("source")),
                ("title", row.get("title")), ("imdb_id", None if imdb is None else str(imdb)),
                (SEGMENT, segment),
            ):
                cols[name].extend([value] * n)
            cols["line_index"].extend(range(n))
            for utt in result.utterances:
                cols["start_ms"].append(utt.start_ms)
                cols["end_ms"].append(utt.end_ms)
                cols["scene"].append(utt.scene)
                cols["text"].append(utt.text)
            self._rows += n
            if self._rows >= self.rows_per_group:
                self._flush()
        return segment

    def _flush(self) -> None:
        if self._rows:
            self._writer.write_table(pa.table(self._cols, schema=SPOOL_SCHEMA))
            self._cols = {name: [] for name in SPOOL_SCHEMA.names}
            self._rows = 0

    def close(self) -> None:
        self._flush()
        self._writer.close()


def _read_manifest(input_dir: Path) -> list[dict[str, Any]]:
    path = input_dir / MANIFEST
    table = read_parquet(path, hint="the subtitle manifest; run the scrape_opensubs stage")
    missing = [c for c in REQUIRED_COLUMNS if c not in table.column_names]
    if not any(c in table.column_names for c in PATH_COLUMNS):
        missing.append(" or ".join(PATH_COLUMNS))
    if missing:
        raise InputFileError(f"{path}: missing column(s) {', '.join(missing)}")
    path_column = next(c for c in PATH_COLUMNS if c in table.column_names)
    rows = table.to_pylist()
    for row in rows:
        row["path"] = row[path_column]
    return rows


def _decide(records: list[FileRecord], cfg: CleanSubsConfig) -> None:
    """Drop by language, then mark duplicates among what is left."""
    keep = set(cfg.langid.keep_languages)
    for rec in records:
        if rec.status == "kept" and rec.result is not None and rec.result.language not in keep:
            rec.drop(f"language:{rec.result.language}")
    candidates = [
        Candidate(rec.file_id, rec.result.language, rec.lines_out, rec.result.fingerprint)
        for rec in records
        if rec.status == "kept" and rec.result is not None and rec.result.fingerprint is not None
    ]
    by_id = {rec.file_id: rec for rec in records}
    for dup in find_duplicates(candidates, cfg.dedup):
        rec = by_id[dup.file_id]
        rec.drop(f"duplicate:{dup.kind}", duplicate_of=dup.duplicate_of, similarity=dup.similarity)


def _write_kept(spool: Path, keep_segments: set[int], path: Path, rows_per_group: int) -> int:
    """Pass 2: stream the spool into `path` (atomically), keeping the lines of `keep_segments` only."""
    keep = pa.array(sorted(keep_segments), type=pa.int64())
    written = 0
    with atomic_path(path) as tmp, pq.ParquetWriter(tmp, OUTPUT_SCHEMA) as writer:
        spooled = pq.ParquetFile(spool)
        buffered: list[pa.Table] = []
        for group in range(spooled.num_row_groups):
            # One thread: per-thread allocator caches cost more memory than the decoding saves time
            # next to the cleaning (pass 2 is a small share of the stage).
            table = spooled.read_row_group(group, use_threads=False)
            table = table.filter(pc.is_in(table[SEGMENT], value_set=keep)).drop_columns([SEGMENT])
            buffered.append(table)
            # Re-group so the output's row groups are not shrunk by the files left out.
            if sum(t.num_rows for t in buffered) >= rows_per_group:
                written += _write_buffered(writer, buffered, rows_per_group)
        written += _write_buffered(writer, buffered, rows_per_group)
    return written


def _write_buffered(writer: pq.ParquetWriter, buffered: list[pa.Table], rows_per_group: int) -> int:
    if not buffered:
        return 0
    table = pa.concat_tables(buffered)
    buffered.clear()
    if table.num_rows:
        writer.write_table(table, row_group_size=max(1, rows_per_group))
    return table.num_rows


def clean_subs(cfg: DictConfig, run: StageRun) -> None:
    """The stage: clean every manifest file, drop by language and duplication, write lines + report."""
    sc: CleanSubsConfig = OmegaConf.to_object(cfg.clean_subs)
    normalize_cfg = OmegaConf.to_object(cfg.normalize)
    input_dir = resolve(sc.input_dir)
    rows = _read_manifest(input_dir)
    records = [FileRecord.from_row(row) for row in rows]
    notes = []
    if sc.normalize_text:
        _, problem = load_normalizer(normalize_cfg, sc.repair_mojibake)
        if problem:
            notes.append(problem)
    for rec in records:
        if rec.status == "kept" and not rec.row.get("path"):
            rec.drop("unreadable", error="manifest row has status ok but no stored path")
    # In file_id order (stable for repeated ids), the output's order: pass 2 then only filters.
    to_clean = sorted((r for r in records if r.status == "kept"), key=lambda r: r.file_id)
    tasks = [(r.file_id, str(input_dir / r.row["path"])) for r in to_clean]
    output = resolve(sc.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    spool_path = output.with_name(output.name + ".spool")
    by_id = {r.file_id: r for r in records}
    segment_of: dict[str, int] = {}  # file_id -> spool segment of the result its record holds
    try:
        spool = LineSpool(spool_path, sc.spool_rows_per_group)
        started = time.perf_counter()
        try:
            for res in iter_clean(tasks, sc, normalize_cfg, sc.workers):
                rec = by_id[res.name]
                rec.attach(res)  # counts the lines first
                segment_of[res.name] = spool.append(res, rec.row)
                res.utterances = []  # now on disk: keep only the file's metadata in memory
        finally:
            spool.close()
        seconds = time.perf_counter() - started
        cleaned = spool.segments
        _decide(records, sc)
        keep = {segment_of[r.file_id] for r in records if r.status == "kept" and r.result is not None}
        lines = _write_kept(spool_path, keep, output, sc.spool_rows_per_group)
    finally:
        spool_path.unlink(missing_ok=True)

    rules: Counter[str] = Counter()
    for rec in records:
        if rec.result is not None:
            rules.update(rec.result.rules)
    bytes_in = sum(r.result.bytes for r in records if r.result is not None)
    totals = {
        "files_in": len(records), "files_cleaned": cleaned,
        "files_kept": sum(1 for r in records if r.status == "kept"),
        "bytes_in": bytes_in, "cues_in": sum(r.result.cues_in for r in records if r.result),
        "lines_out": lines,
    }
    # Wall-clock figures go to the summary, not the report: the report folder is a DVC output and
    # must hash the same on every identical rerun.
    run.summary.timings["clean_seconds"] = seconds
    run.summary.timings["mb_per_s"] = bytes_in / 1e6 / seconds if seconds > 0 else 0.0
    report_dir = resolve(sc.report_dir)
    write_report(report_dir, records, rules, totals, notes, sc)

    run.summary.add("read", "files", totals["files_in"])
    run.summary.add("read", "bytes", bytes_in)
    run.summary.add("read", "cues", totals["cues_in"])
    run.summary.add("wrote", "files", totals["files_kept"])
    run.summary.add("wrote", "lines", lines)
    for rec in records:
        if rec.status != "kept":
            run.summary.add("dropped", rec.reason_key, 1)
    run.summary.notes.extend(notes)
    run.log_metrics({**{f"rules.{k}": v for k, v in rules.items()},
                     **{f"totals.{k}": v for k, v in totals.items()}})
    run.log_artifact(report_dir, artifact_path="report")
