"""The reranker_data stage: subtitles and literature in, samples and a report out, bad input named."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from src.config import ConfigError, load_config
from src.errors import InputError
from src.stage import execute_stage


def write_subtitles(path: Path, n_files: int = 4, lines_per_file: int = 20) -> Path:
    rows = []
    for f in range(n_files):
        for i in range(lines_per_file):
            rows.append({"file_id": f"file{f}", "language": "en", "line_index": i, "start_ms": 1000 * i,
                         "end_ms": 1000 * i + 800, "scene": 0 if i < 12 else 1, "text": f"line {i} of file {f}."})
    rows.append({"file_id": "file0", "language": "en", "line_index": 99, "start_ms": 99_000, "end_ms": 99_500,
                 "scene": 1, "text": "x" * 500})  # over-long: ends a run, counted
    pl.DataFrame(rows).reverse().write_parquet(path)
    return path


def write_book(path: Path) -> Path:
    speech = "\n".join(f"— Реплика номер {i}, — сказал он." for i in range(9))
    path.write_text(f"Было утро.\n{speech}\nОни ушли.\n", encoding="utf-8")
    return path


def stage_cfg(tmp: Path, **section: Any) -> Any:
    base = {
        "output": str(tmp / "out" / "samples.parquet"), "report_dir": str(tmp / "report"),
        "subtitles": {"path": str(write_subtitles(tmp / "subs.parquet")), "languages": ["en"]},
        "literature": {"path": "", "text_paths": [str(write_book(tmp / "book.txt"))]},
    }
    base.update(section)
    return load_config({"tracking": {"enabled": False}, "reranker_data": base})


def test_stage_writes_samples_and_report(tmp_path: Path) -> None:
    summary = execute_stage("reranker_data", stage_cfg(tmp_path, val_share=0.25))
    table = pl.read_parquet(tmp_path / "out" / "samples.parquet")
    assert table.columns == ["context", "candidate", "label", "kind", "source", "file_id",
                             "candidate_file_id", "language", "n_lines", "split"]
    assert set(table["source"]) == {"subtitles", "literature"}
    assert set(table["split"]) == {"train", "val"}
    # the context is the lines joined with " | ", n_lines of them
    assert all(c.count(" | ") == n - 1 for c, n in zip(table["context"], table["n_lines"], strict=True))
    assert "сказал" not in " ".join(table["context"])  # the author's words are removed
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["samples"] == table.height
    assert sum(report["by_kind"].values()) == table.height
    assert report["extraction"]["subtitles"]["lines_dropped_too_long"] == 1
    assert summary.dropped["subtitles_lines_dropped_too_long"] == 1
    assert (tmp_path / "report" / "report.md").read_text().startswith("# reranker_data")
    # every subtitle line is in a sample or counted as unused
    subs = report["lines_used"]["subtitles"]
    assert subs + report["lines_unused"].get("run_end_too_short", 0) >= 4 * 20 - 4


def test_missing_subtitles_is_one_clear_error(tmp_path: Path) -> None:
    cfg = stage_cfg(tmp_path, subtitles={"path": str(tmp_path / "nope.parquet")})
    with pytest.raises(InputError, match="nope.parquet: not found .*reranker_data.subtitles.path"):
        execute_stage("reranker_data", cfg)


def test_broken_subtitles_file_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet at all")
    with pytest.raises(InputError, match="bad.parquet"):
        execute_stage("reranker_data", stage_cfg(tmp_path, subtitles={"path": str(bad)}))


def test_config_needs_a_negative_kind(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="reranker_data.kinds"):
        stage_cfg(tmp_path, kinds={"positive": 1.0, "swap": 0.0, "two_ahead": 0.0, "other_file": 0.0,
                                              "markov": 0.0})


def test_stage_makes_markov_negatives_from_train_lines(tmp_path: Path) -> None:
    words = (["the cat", "a dog", "my friend", "the baker"], ["saw", "liked", "found", "sold"],
             ["the red door", "a small boat", "the letter", "an apple"])
    rows = [{"file_id": f"file{f}", "language": "en", "line_index": i, "start_ms": 1000 * i,
             "end_ms": 1000 * i + 800, "scene": 0,
             "text": f"{words[0][(f + i) % 4].capitalize()} {words[1][i % 4]} {words[2][(i // 4 + f) % 4]}, {f}{i}."}
            for f in range(6) for i in range(16)]
    pl.DataFrame(rows).write_parquet(tmp_path / "subs.parquet")
    out: list[bytes] = []
    for attempt in ("a", "b"):
        cfg = load_config({"tracking": {"enabled": False}, "seed": 3, "reranker_data": {
            "output": str(tmp_path / attempt / "samples.parquet"), "report_dir": str(tmp_path / attempt / "report"),
            "val_share": 0.34, "subtitles": {"path": str(tmp_path / "subs.parquet"), "languages": ["en"]},
            "literature": {"enabled": False}}})
        summary = execute_stage("reranker_data", cfg)
        out.append((tmp_path / attempt / "samples.parquet").read_bytes())
    assert out[0] == out[1]  # deterministic given the seed
    table = pl.read_parquet(tmp_path / "b" / "samples.parquet")
    markov = table.filter(pl.col("kind") == "markov")
    corpus = {r["text"] for r in rows}
    assert markov.height > 0 and set(markov["label"]) == {0} and set(markov["candidate_file_id"]) == {"markov"}
    assert not set(markov["candidate"]) & corpus
    report = json.loads((tmp_path / "b" / "report" / "report.json").read_text())
    assert report["by_kind"]["markov"] == markov.height
    assert report["markov"]["model_lines"] == {"en": 4 * 16}  # the train files' lines only
    assert summary.dropped["markov_copies_of_corpus_lines"] == report["markov"]["copies_dropped"]
