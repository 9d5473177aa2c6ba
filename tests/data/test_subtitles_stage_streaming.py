"""clean_subs in bounded memory: the spooled two-pass stage writes exactly what the all-in-memory one
did (rows in file_id order, same report), whatever the worker count or row-group size, and keeps no
line texts in memory between the passes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from omegaconf import OmegaConf

import src.data.subtitles.stage as clean_module
from src.config import compose, load_config
from src.data.subtitles.report import FileRecord
from src.data.subtitles.stage import OUTPUT_SCHEMA, clean_many, clean_subs
from src.paths import shared_data_dir
from src.stage import StageRun
from tests.data.subtitle_fixtures import srt
from tests.data.test_subtitles_stage import _manifest as sample_manifest

# Timing figures differ from run to run, so they live in the stage summary, never in the report.
TIMING_TOTALS = ("clean_seconds", "mb_per_s")


def _run(raw: Path, out_dir: Path, *overrides: str) -> tuple[pa.Table, dict[str, Any], list[str]]:
    out, reports = out_dir / "subtitles.parquet", out_dir / "reports"
    cfg = load_config(compose([
        f"clean_subs.input_dir={raw}", f"clean_subs.output={out}", f"clean_subs.report_dir={reports}",
        "tracking.enabled=false", *overrides,
    ]))
    clean_subs(cfg, StageRun("clean_subs", cfg, tracking_active=False))
    assert sorted(p.name for p in out.parent.iterdir()) == ["reports", "subtitles.parquet"]  # no spool left
    report = json.loads((reports / "report.json").read_text(encoding="utf-8"))
    assert not set(TIMING_TOTALS) & set(report["totals"])
    md = (reports / "report.md").read_text(encoding="utf-8").splitlines()
    assert not any(f"| {key} |" in line for key in TIMING_TOTALS for line in md)
    return pq.read_table(out), report, md


def _in_memory_reference(raw: Path, report: dict[str, Any]) -> pa.Table:
    """The output as the former all-in-memory stage built it: every kept file's utterances, files
    sorted by file_id, from results cleaned here independently of the spool."""
    rows = {r["file_id"]: r for r in pq.read_table(raw / "manifest.parquet").to_pylist()}
    kept = sorted(f["file_id"] for f in report["files"] if f["status"] == "kept")
    cfg = load_config(compose(["tracking.enabled=false"]))
    sc, nc = OmegaConf.to_object(cfg.clean_subs), OmegaConf.to_object(cfg.normalize)
    results = clean_many([(fid, str(raw / rows[fid]["path"])) for fid in kept], sc, nc, workers=1)
    out: list[dict[str, Any]] = []
    for res in results:
        row = rows[res.name]
        out.extend(
            {"file_id": res.name, "language": res.language, "line_index": i, "start_ms": u.start_ms,
             "end_ms": u.end_ms, "scene": u.scene, "text": u.text, "source": row.get("source"),
             "title": row.get("title"), "imdb_id": None if row.get("imdb_id") is None else str(row["imdb_id"])}
            for i, u in enumerate(res.utterances)
        )
    return pa.Table.from_pylist(out, schema=OUTPUT_SCHEMA)


def _check_same_everywhere(raw: Path, tmp_path: Path) -> None:
    table, report, md = _run(raw, tmp_path / "default")
    assert table.num_rows > 0 and table.num_rows == report["totals"]["lines_out"]
    assert table.equals(_in_memory_reference(raw, report))
    # Tiny row groups (many spool groups, files split across them), one task ahead per worker.
    for name, overrides in (("w1", ["clean_subs.workers=1", "clean_subs.spool_rows_per_group=7"]),
                            ("w2", ["clean_subs.workers=2", "clean_subs.chunksize=1",
                                    "clean_subs.pending_chunks_per_worker=1",
                                    "clean_subs.spool_rows_per_group=13"])):
        other_table, other_report, other_md = _run(raw, tmp_path / name, *overrides)
        assert other_table.equals(table), name
        assert other_report == report, name
        assert other_md == md, name
    assert pq.ParquetFile(tmp_path / "w1" / "subtitles.parquet").metadata.num_row_groups > 1


def test_sample_output_same_as_in_memory(tmp_path: Path) -> None:
    _check_same_everywhere(sample_manifest(tmp_path / "in"), tmp_path)


@pytest.mark.real_data
def test_real_output_same_as_in_memory(tmp_path: Path) -> None:
    real = shared_data_dir() / "srt_real"
    if not real.is_dir():
        pytest.skip(f"{real} absent (../shared/data absent)")
    raw = tmp_path / "raw"
    (raw / "files").mkdir(parents=True)
    rows = []
    # Reversed, so that the manifest's order is not the output's (file_id) order.
    for p in sorted(real.glob("*.srt"), reverse=True):
        shutil.copyfile(p, raw / "files" / p.name)
        rows.append({"file_id": p.stem, "source": "srt_real", "member": p.name, "status": "ok",
                     "error": None, "language": None, "title": p.stem, "imdb_id": None,
                     "path": f"files/{p.name}"})
    pq.write_table(pa.Table.from_pylist(rows), raw / "manifest.parquet")
    _check_same_everywhere(raw, tmp_path)


def test_records_hold_no_lines_between_passes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Many synthetic files: when the drops are decided, no record holds a line text any more."""
    raw = tmp_path / "raw"
    (raw / "files").mkdir(parents=True)
    rows = []
    for k in range(40):
        cues = [(i * 3000, i * 3000 + 2000, f"Line {i} of take {k}, the lamp number {k * 7 + i} is lit.")
                for i in range(30)]
        (raw / "files" / f"f{k:03d}.srt").write_text(srt(*cues), encoding="utf-8")
        rows.append({"file_id": f"f{k:03d}", "status": "ok", "path": f"files/f{k:03d}.srt",
                     "source": "synthetic", "title": None, "imdb_id": k})
    pq.write_table(pa.Table.from_pylist(rows), raw / "manifest.parquet")
    seen: list[FileRecord] = []
    decide = clean_module._decide

    def spy(records: list[FileRecord], cfg: Any) -> None:
        seen.extend(records)
        decide(records, cfg)

    monkeypatch.setattr(clean_module, "_decide", spy)
    table, report, _ = _run(raw, tmp_path / "out", "clean_subs.workers=1", "clean_subs.spool_rows_per_group=50")
    assert len(seen) == 40
    assert all(rec.result is not None and rec.result.utterances == [] for rec in seen)
    assert sum(rec.lines_out for rec in seen if rec.status == "kept") == table.num_rows > 0
    assert {f["file_id"]: f["lines_out"] for f in report["files"]} == {rec.file_id: rec.lines_out for rec in seen}
    assert table.column("imdb_id").to_pylist()[0] == "0"


def test_nothing_kept_writes_empty_parquet(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    (raw / "files").mkdir(parents=True)
    (raw / "files" / "ads.srt").write_text(srt((0, 1000, "Downloaded From www.AllSubs.org")), encoding="utf-8")
    rows = [{"file_id": "ads", "status": "ok", "path": "files/ads.srt"},
            {"file_id": "gone", "status": "too_large", "path": None}]
    pq.write_table(pa.Table.from_pylist(rows), raw / "manifest.parquet")
    table, report, _ = _run(raw, tmp_path / "out")
    assert table.num_rows == 0 and table.schema.equals(OUTPUT_SCHEMA)
    assert {f["file_id"]: f["reason"] for f in report["files"]} == {"ads": "empty", "gone": "upstream:too_large"}
