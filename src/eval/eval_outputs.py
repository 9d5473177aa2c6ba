"""The eval stage's DVC views of results.json: metrics.json (`dvc metrics show/diff`) and the CSV files
under plots/ (`dvc plots show/diff`, declared in dvc.yaml).

metrics.json keeps the headline figures, nested (DVC flattens them to `lm.sft.dialogues.bpb`):
lm loss/bpb per model and corpus, the unigram bpb, the reply figures, probe accuracies, reranker
figures with best-of-N, latency, and `absent` (part -> reason) with `absent_count`.

Plots (one file per figure, a model's file only when the model is present):
- loss_<model>.csv: step, val_loss (the training callbacks record no training-loss curve);
- reply_lengths.csv: a histogram of reply lengths in tokens, bin start and one count column per model;
- kto.csv: step and the KTO guard's figures per evaluation (rewards, drift, failure rates);
- reranker_scores.csv: a histogram of the reranker's scores, one count column per sample kind;
- latency.csv: one row per chat model (wall-clock: differs run to run).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from src.atomic_io import write_text_atomic
from src.config.sections.eval import MODEL_NAMES

LENGTH_BIN = 4  # tokens per bar of the reply length histogram
SCORE_BINS = 20
RERANKER_KEYS = ("n", "accuracy", "roc_auc", "average_precision", "mrr_at_k", "hit_at_1", "k")
LATENCY_KEYS = ("ttft_ms", "first_phrase_ms", "tokens_per_s", "reranked_turn_ms")
# Columns dvc.yaml's plots name: always written (a plot whose field is missing is not drawn)
KTO_COLUMNS = ("rewards_margin", "reward_accuracy", "desirable_drift_per_token", "loop_rate", "canned_rate")
SAMPLE_KINDS = ("positive", "swap", "two_ahead", "other_file", "markov")  # src/data/reranker's kinds


def _numbers(d: Any, keys: Sequence[str] | None = None) -> dict[str, float]:
    if not isinstance(d, Mapping):
        return {}
    return {k: v for k, v in d.items() if (keys is None or k in keys) and isinstance(v, (int, float))
            and not isinstance(v, bool) and math.isfinite(v)}


def metrics_view(results: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "lm": {m: {c: _numbers(f, ("loss", "bpb")) for c, f in corpora.items()}
               for m, corpora in results.get("lm", {}).items()},
        "unigram": {c: _numbers(f, ("loss", "bpb")) for c, f in results.get("unigram", {}).items()},
        "generation": {m: _numbers(f) for m, f in results.get("generation", {}).items()},
        "probes": {m: {lang: _numbers(f) for lang, f in p.items() if isinstance(f, Mapping)}
                   for m, p in results.get("probes", {}).items()},
    }
    reranker = results.get("reranker") or {}
    if reranker:
        out["reranker"] = _numbers(reranker, RERANKER_KEYS)
        best = reranker.get("best_of_n") or {}
        arms = {arm: _numbers(best.get(arm)) for arm in ("reranked", "plain") if isinstance(best.get(arm), Mapping)}
        if arms:
            out["reranker"]["best_of_n"] = arms
    if results.get("latency"):
        out["latency"] = {m: _numbers(f, LATENCY_KEYS) for m, f in results["latency"].items()}
    out["models_present"] = sum(1 for m in results.get("models", {}).values() if m.get("present"))
    out["absent"] = {line.partition(": ")[0]: line.partition(": ")[2] for line in results.get("absent", [])}
    out["absent_count"] = len(results.get("absent", []))
    return {k: v for k, v in out.items() if v != {} or k == "absent"}


def _csv(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def histogram(values: Sequence[float], edges: Sequence[float]) -> list[int]:
    """Counts per bin [edges[i], edges[i+1]), the last bin closed."""
    counts = [0] * (len(edges) - 1)
    for v in values:
        for i in range(len(counts)):
            if edges[i] <= v < edges[i + 1] or (i == len(counts) - 1 and v == edges[-1]):
                counts[i] += 1
                break
    return counts


def _round(x: float) -> float:
    return round(x, 6)


def plot_files(results: Mapping[str, Any]) -> dict[str, str]:
    """file name -> CSV text for every figure with data (see the module docstring)."""
    series = results.get("series") or {}
    files: dict[str, str] = {}
    for model, curves in (series.get("loss_curves") or {}).items():
        if curves.get("val") or curves.get("train"):
            train, val = dict(curves.get("train") or []), dict(curves.get("val") or [])
            steps = sorted({*train, *val})
            files[f"loss_{model}.csv"] = _csv(
                ("step", "train_loss", "val_loss"),
                [(s, _round(train[s]) if s in train else "", _round(val[s]) if s in val else "") for s in steps])
    lengths = series.get("reply_lengths") or {}
    if any(lengths.values()):
        top = max(max(v) for v in lengths.values() if v)
        starts = list(range(0, top + 1, LENGTH_BIN))
        edges = [*starts, starts[-1] + LENGTH_BIN]
        columns = {m: histogram(lengths.get(m, []), edges) for m in MODEL_NAMES}
        files["reply_lengths.csv"] = _csv(("length", *MODEL_NAMES),
                                          [(s, *(columns[m][i] for m in MODEL_NAMES)) for i, s in enumerate(starts)])
    kto = series.get("kto") or {}
    if kto:
        steps = sorted({s for points in kto.values() for s, _ in points})
        by_step = {k: dict((s, v) for s, v in points) for k, points in kto.items()}
        keys = [*KTO_COLUMNS, *sorted(k for k in kto if k not in KTO_COLUMNS)]
        by_step.update({k: {} for k in KTO_COLUMNS if k not in by_step})
        files["kto.csv"] = _csv(("step", *keys), [(s, *(_round(by_step[k][s]) if s in by_step[k] else "" for k in keys))
                                                  for s in steps])
    scores = series.get("reranker_scores") or {}
    flat = [v for values in scores.values() for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    if flat:
        low, high = min(flat), max(flat)
        width = (high - low) / SCORE_BINS or 1.0
        edges = [low + i * width for i in range(SCORE_BINS + 1)]
        kinds = [*SAMPLE_KINDS, *sorted(k for k in scores if k not in SAMPLE_KINDS)]
        columns = {k: histogram(scores.get(k, []), edges) for k in kinds}
        files["reranker_scores.csv"] = _csv(("score", *kinds), [(_round(edges[i]), *(columns[k][i] for k in kinds))
                                                                for i in range(SCORE_BINS)])
    latency = series.get("latency") or {}
    if latency:
        files["latency.csv"] = _csv(("model", *LATENCY_KEYS),
                                    [(m, *(_round(f[k]) if isinstance(f.get(k), (int, float)) else "" for k in LATENCY_KEYS))
                                     for m, f in latency.items()])
    return files


def write_plots(directory: Path, results: Mapping[str, Any]) -> list[Path]:
    """Write plot_files(results) into `directory`, removing CSV files of an earlier run that this
    run has no data for (a model switched off since); returns the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    files = plot_files(results)
    for stale in directory.glob("*.csv"):
        if stale.name not in files:
            stale.unlink()
    paths = []
    for name, text in sorted(files.items()):
        write_text_atomic(directory / name, text)
        paths.append(directory / name)
    return paths
