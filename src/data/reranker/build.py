"""The `reranker_data` stage: samples for the next-line reranker from subtitles and literature.

Reads the cleaned subtitles (runs within one file and scene, `src/data/dialogues/windows.py`) and
the direct-speech runs of the cleaned works and local texts (`src/data/dialogues/speech.py`); cuts
them into samples (`samples.py`); writes `reranker_data.output` (one row per sample: context,
candidate, label, kind, source, file_id, candidate_file_id, language, n_lines, split) and
`report_dir/report.{json,md}` with counts by kind, source, length and split, and every line left
out with its reason. Markov candidates (kind `markov`) come from writers this stage learns from the
train split's lines (`markov_negatives.py`), not from the markov stage's model.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
from omegaconf import DictConfig, OmegaConf

from src.atomic_io import write_json_atomic, write_parquet_atomic, write_text_atomic
from src.data.dialogues.speech import speech_runs
from src.data.dialogues.windows import subtitle_runs
from src.data.literature import literature_texts
from src.data.reranker.markov_negatives import MarkovOptions, build_samples
from src.data.reranker.samples import KINDS, Run, Sample, join_context
from src.errors import InputError
from src.paths import resolve
from src.stage import StageRun

COLUMNS = ("context", "candidate", "label", "kind", "source", "file_id", "candidate_file_id",
           "language", "n_lines", "split")


def subtitle_source_runs(s: Any, counts: Counter[str]) -> Iterator[Run]:
    path = resolve(s.path)
    if not path.is_file():
        raise InputError(f"{path}: not found (reranker_data.subtitles.path; run clean_subs, or set "
                         "reranker_data.subtitles.enabled=false)")
    for run in subtitle_runs(path, list(s.languages), s.max_gap_ms, s.max_line_chars, counts):
        yield Run("subtitles", run.file_id, run.language, run.lines)


def literature_source_runs(lit: Any, counts: Counter[str]) -> Iterator[Run]:
    for doc_id, text in literature_texts(lit.path, lit.text_paths, "reranker_data", counts,
                                          apparatus_rules=lit.apparatus_rules):
        # The works are Russian unless a text says otherwise; the language only pairs other_file
        # candidates, so a mislabelled English text costs easier negatives, nothing worse.
        language = "en" if _mostly_latin(text) else "ru"
        for lines in speech_runs(text, counts, lit.min_quoted_share, lit.inline_colon_dash, lit.max_line_chars):
            counts["runs"] += 1
            yield Run("literature", doc_id, language, lines)


def _mostly_latin(text: str, probe: int = 20000) -> bool:
    head = text[:probe]
    latin = sum(1 for c in head if "a" <= c.lower() <= "z")
    cyrillic = sum(1 for c in head if "а" <= c.lower() <= "я" or c in "ёЁ")
    return latin > cyrillic


def samples_table(samples: list[Sample]) -> pa.Table:
    order = sorted(range(len(samples)), key=lambda i: (samples[i].split, samples[i].source, samples[i].file_id))
    rows = [samples[i] for i in order]
    return pa.table({
        "context": pa.array([join_context(s.context) for s in rows], pa.string()),
        "candidate": pa.array([s.candidate for s in rows], pa.string()),
        "label": pa.array([s.label for s in rows], pa.int8()),
        "kind": pa.array([s.kind for s in rows], pa.string()),
        "source": pa.array([s.source for s in rows], pa.string()),
        "file_id": pa.array([s.file_id for s in rows], pa.string()),
        "candidate_file_id": pa.array([s.candidate_file_id for s in rows], pa.string()),
        "language": pa.array([s.language for s in rows], pa.string()),
        "n_lines": pa.array([s.n_lines for s in rows], pa.int16()),
        "split": pa.array([s.split for s in rows], pa.string()),
    })


def build_report(samples: list[Sample], extraction: dict[str, Counter[str]], counts: Any) -> dict[str, Any]:
    def tally(key: Any) -> dict[str, int]:
        return dict(sorted(Counter(str(key(s)) for s in samples).items()))

    by_length: dict[str, dict[str, int]] = {}
    for kind in KINDS:
        lengths = Counter(s.n_lines for s in samples if s.kind == kind)
        if lengths:
            by_length[kind] = {str(n): lengths[n] for n in sorted(lengths)}
    return {
        "samples": len(samples),
        "by_label": tally(lambda s: s.label),
        "by_kind": tally(lambda s: s.kind),
        "by_source": tally(lambda s: s.source),
        "by_split": tally(lambda s: s.split),
        "by_split_and_kind": tally(lambda s: f"{s.split}/{s.kind}"),
        "by_n_lines": tally(lambda s: f"{s.n_lines:02d}"),
        "by_kind_and_n_lines": by_length,
        "files": {split: len({(s.source, s.file_id) for s in samples if s.split == split})
                  for split in ("train", "val")},
        "runs": dict(counts.runs),
        "lines_used": dict(counts.lines_used),
        "lines_unused": dict(counts.lines_unused),
        "other_file_made_swap_no_donor": counts.other_file_to_swap,
        "markov": {"made_swap": dict(sorted(counts.markov_to_swap.items())),
                   "copies_dropped": counts.markov_copies_dropped,
                   "model_lines": dict(sorted(counts.markov_model_lines.items()))},
        "extraction": {source: dict(sorted(c.items())) for source, c in extraction.items()},
    }


def render_report(report: dict[str, Any]) -> str:
    lines = ["# reranker_data", "", f"{report['samples']} samples; files/works per split: {report['files']}", ""]
    for key in ("by_label", "by_kind", "by_source", "by_split_and_kind", "by_n_lines", "runs",
                "lines_used", "lines_unused"):
        lines.append(f"## {key.replace('_', ' ')}")
        lines.extend(f"- {k}: {v}" for k, v in report[key].items())
        lines.append("")
    lines.append("## context length by kind")
    for kind, lengths in report["by_kind_and_n_lines"].items():
        lines.append(f"- {kind}: " + ", ".join(f"{n}: {c}" for n, c in lengths.items()))
    lines.append(f"\nother_file fragments made swap (no line of another file to pair with): "
                 f"{report['other_file_made_swap_no_donor']}\n")
    m = report["markov"]
    lines.append(f"markov: writers learned from train lines {m['model_lines']}; generated lines dropped as "
                 f"copies of a corpus line: {m['copies_dropped']}; fragments made swap: {m['made_swap']}\n")
    for source, c in report["extraction"].items():
        lines.append(f"## extraction: {source}")
        lines.extend(f"- {k}: {v}" for k, v in c.items())
        lines.append("")
    return "\n".join(lines)


def reranker_data(cfg: DictConfig, run: StageRun) -> None:
    c = cfg.reranker_data
    extraction: dict[str, Counter[str]] = {}
    runs: list[Run] = []
    if c.subtitles.enabled:
        extraction["subtitles"] = Counter()
        runs.extend(subtitle_source_runs(c.subtitles, extraction["subtitles"]))
    if c.literature.enabled:
        extraction["literature"] = Counter()
        runs.extend(literature_source_runs(c.literature, extraction["literature"]))
    if not runs:
        raise InputError("reranker_data: no runs of dialogue (enable reranker_data.subtitles or "
                         "reranker_data.literature, or give them inputs)")
    weights = OmegaConf.to_container(c.kinds, resolve=True)
    assert isinstance(weights, dict)
    options = OmegaConf.to_container(c.markov, resolve=True)
    assert isinstance(options, dict)
    markov = MarkovOptions(**{str(k): v for k, v in options.items()})
    samples, counts = build_samples(runs, weights, c.max_lines, c.val_share, cfg.seed, c.split_salt, markov)
    if not samples:
        raise InputError(f"reranker_data: {len(runs)} runs but none long enough for a sample (two lines)")

    out = resolve(c.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_parquet_atomic(out, samples_table(samples))
    report = build_report(samples, extraction, counts)
    report_dir = resolve(c.report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(report_dir / "report.json", report)
    write_text_atomic(report_dir / "report.md", render_report(report))
    run.log_artifact(report_dir / "report.json")
    record_summary(run, report, out)


def record_summary(run: StageRun, report: dict[str, Any], out: Path) -> None:
    for source, n in report["lines_used"].items():
        run.summary.add("read", f"{source}_lines_used", n)
    for source, n in report["runs"].items():
        run.summary.add("read", f"{source}_runs", n)
    for key, n in report["by_split_and_kind"].items():
        run.summary.add("wrote", key, n)
    for reason, n in report["lines_unused"].items():
        run.summary.add("dropped", f"lines_{reason}", n)
    run.summary.add("dropped", "markov_copies_of_corpus_lines", report["markov"]["copies_dropped"])
    for reason, n in report["markov"]["made_swap"].items():
        run.summary.add("dropped", f"markov_made_swap_{reason}", n)
    for source, c in report["extraction"].items():
        for key, n in c.items():
            if key.startswith(("lines_dropped", "dropped_", "lines_skipped")):
                run.summary.add("dropped", f"{source}_{key}", n)
    print(f"reranker_data: {report['samples']} samples -> {out}", file=sys.stderr)
