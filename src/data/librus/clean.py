"""Stage `clean_librus`: data/raw/librus (pages + manifest) -> data/clean/librus.parquet + report.

Every manifest row ends up in exactly one place: a parquet row, or the report's `dropped` list
with the reason (the crawler's status/error, "not a work", the parse error, "too short", or
"duplicate of ..."). Documents are cleaned in a process pool (`clean_librus.workers`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from src.atomic_io import write_parquet_atomic
from src.config.sections.clean_librus import CleanLibrusConfig
from src.config.sections.normalize import NormalizeConfig
from src.data.librus.document import CleanedDocument, init_worker
from src.data.librus.report import write_report
from src.data.librus.rules import RULE_ORDER
from src.data.readers import read_parquet
from src.paths import resolve
from src.stage import StageRun
from src.worker_pool import process_pool

OUTPUT_SCHEMA = pa.schema([
    ("doc_id", pa.string()),  # sha1 of the URL: stable across runs
    ("author", pa.string()),
    ("title", pa.string()),
    ("url", pa.string()),
    ("format", pa.string()),  # moshkov | az | local (as detected from the page)
    ("text", pa.string()),
    ("n_chars", pa.int64()),
    ("chars_in", pa.int64()),  # the decoded page, markup included
    ("chars_extracted", pa.int64()),  # the work before rules and normalization
    ("encoding", pa.string()),  # as the crawler decoded the page
    ("sha256", pa.string()),  # of the raw page bytes (from the manifest)
    ("mojibake_fixed", pa.string()),
    ("reflowed", pa.bool_()),
])


@dataclass
class CleanTotals:
    """What the stage did, in the shape of report.json."""

    documents: list[dict[str, Any]] = field(default_factory=list)
    dropped: list[dict[str, Any]] = field(default_factory=list)
    rules: dict[str, dict[str, int]] = field(
        default_factory=lambda: {name: {"matches": 0, "chars_removed": 0} for name in RULE_ORDER}
    )
    authors: dict[str, dict[str, int]] = field(default_factory=dict)

    def add_document(self, doc: CleanedDocument, row: dict[str, Any]) -> None:
        for name, (matches, chars) in doc.rules.items():
            self.rules[name]["matches"] += matches
            self.rules[name]["chars_removed"] += chars
        author = self.authors.setdefault(
            row["author"] or "?", {"documents": 0, "chars_in": 0, "chars_extracted": 0, "chars_out": 0}
        )
        author["documents"] += 1
        author["chars_in"] += doc.chars_in
        author["chars_extracted"] += doc.chars_extracted
        author["chars_out"] += doc.n_chars
        self.documents.append({
            "doc_id": row["doc_id"], "url": row["url"], "author": row["author"], "title": row["title"],
            "format": doc.format, "chars_in": doc.chars_in, "chars_out": doc.n_chars,
            "reflowed": doc.reflowed, "mojibake_fixed": doc.mojibake_fixed, "note": doc.note,
        })

    def drop(self, row: dict[str, Any], stage: str, reason: str) -> None:
        self.dropped.append({
            "url": row.get("url"), "author": row.get("author"), "title": row.get("title"),
            "kind": row.get("kind"), "stage": stage, "reason": reason,
        })


def doc_id(url: str) -> str:
    return hashlib.sha1(url.encode("utf-8")).hexdigest()


def run_pool(
    task: Callable[[str], CleanedDocument],
    paths: list[str],
    conf: CleanLibrusConfig,
    normalize: NormalizeConfig,
    desc: str,
) -> Iterator[CleanedDocument]:
    """`task(path)` for each path, in order, on `conf.workers` processes (in-process for 1)."""
    if conf.workers <= 1 or len(paths) <= 1:
        init_worker(conf, normalize)
        yield from tqdm((task(p) for p in paths), total=len(paths), desc=desc, disable=None)
        return
    # spawn: workers import only what cleaning needs and never inherit MLflow/tqdm threads.
    # process_pool: the workers die with this process, even when it is killed.
    with process_pool(min(conf.workers, len(paths)), init_worker, (conf, normalize),
                      start_method="spawn") as pool:
        yield from tqdm(pool.map(task, paths, chunksize=1), total=len(paths), desc=desc, disable=None)


def read_manifest(raw_dir: Path) -> list[dict[str, Any]]:
    path = raw_dir / "manifest.parquet"
    return read_parquet(path, hint="the crawl manifest; run the scrape_librus stage").to_pylist()


def write_parquet(rows: list[dict[str, Any]], path: Path) -> None:
    write_parquet_atomic(path, pa.Table.from_pylist(rows, schema=OUTPUT_SCHEMA))


def clean_rows(
    manifest: Iterable[dict[str, Any]], raw_dir: Path, conf: CleanLibrusConfig, normalize: NormalizeConfig
) -> tuple[list[dict[str, Any]], CleanTotals]:
    """Clean the works a manifest lists; return the output rows and the totals for the report."""
    from src.data.librus.document import clean_stored_page

    totals = CleanTotals()
    works: list[dict[str, Any]] = []
    for row in manifest:
        row = {**row, "doc_id": doc_id(row["url"])}
        if row.get("status") != "ok":
            totals.drop(row, "scrape", f"{row.get('status')}: {row.get('error') or 'no error text'}")
        elif row.get("kind") != "text":
            totals.drop(row, "scrape", f"not a work: kind={row.get('kind')}")
        elif not row.get("path"):
            totals.drop(row, "scrape", "status ok but no stored page path")
        else:
            works.append(row)
    paths = [str(raw_dir / row["path"]) for row in works]
    out: list[dict[str, Any]] = []
    seen: dict[str, str] = {}
    cleaned = run_pool(clean_stored_page, paths, conf, normalize, "clean_librus")
    for row, doc in zip(works, cleaned, strict=True):
        row["author"] = row.get("author") or doc.author
        row["title"] = row.get("title") or doc.title
        if not doc.ok:
            totals.drop(row, "clean", doc.reason)
            continue
        digest = hashlib.sha1(doc.text.encode("utf-8")).hexdigest()
        if conf.drop_duplicates and digest in seen:
            totals.drop(row, "clean", f"duplicate of {seen[digest]}")
            continue
        seen[digest] = row["doc_id"]
        totals.add_document(doc, row)
        out.append({
            "doc_id": row["doc_id"], "author": row["author"], "title": row["title"], "url": row["url"],
            "format": doc.format, "text": doc.text, "n_chars": doc.n_chars, "chars_in": doc.chars_in,
            "chars_extracted": doc.chars_extracted, "encoding": row.get("encoding"),
            "sha256": row.get("sha256"), "mojibake_fixed": doc.mojibake_fixed, "reflowed": doc.reflowed,
        })
    return out, totals


def clean_librus(cfg: DictConfig, run: StageRun) -> None:
    conf: CleanLibrusConfig = OmegaConf.to_object(cfg.clean_librus)  # type: ignore[assignment]
    normalize: NormalizeConfig = OmegaConf.to_object(cfg.normalize)  # type: ignore[assignment]
    raw_dir = resolve(conf.raw_dir)
    manifest = read_manifest(raw_dir)
    rows, totals = clean_rows(manifest, raw_dir, conf, normalize)
    output = resolve(conf.output)
    write_parquet(rows, output)
    report_dir = resolve(conf.report_dir)
    report = write_report(totals, report_dir, manifest_rows=len(manifest), config=asdict(conf))

    summary = run.summary
    summary.add("read", "manifest_rows", len(manifest))
    summary.add("read", "chars_in", report["totals"]["chars_in"])
    summary.add("wrote", "documents", len(rows))
    summary.add("wrote", "chars_out", report["totals"]["chars_out"])
    for item in totals.dropped:
        summary.add("dropped", _reason_key(item), 1)
    for name, count in totals.rules.items():
        if count["chars_removed"]:
            summary.add("dropped", f"chars_by_rule.{name}", count["chars_removed"])
    run.log_metrics({
        "documents": len(rows), "dropped_pages": len(totals.dropped),
        "chars_in": report["totals"]["chars_in"], "chars_out": report["totals"]["chars_out"],
        **{f"rule.{k}.matches": v["matches"] for k, v in totals.rules.items()},
        **{f"rule.{k}.chars_removed": v["chars_removed"] for k, v in totals.rules.items()},
    })
    run.log_artifact(report_dir, artifact_path="clean_librus_report")
    run.log_dict(report["totals"], "clean_librus_totals.json")
    print(json.dumps(report["totals"], ensure_ascii=False), flush=True)


def _reason_key(item: dict[str, Any]) -> str:
    """A short, countable key for the summary: the reason up to its first colon."""
    head = item["reason"].split(":", 1)[0].strip()
    if head.startswith("duplicate of"):
        head = "duplicate"
    return f"{item['stage']}.{head.replace(' ', '_')}"
