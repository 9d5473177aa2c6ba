"""Pipeline facts for the report card, gathered from what the stages already wrote.

Nothing is recomputed here: the data stages' report.json files give the sizes before and after
cleaning and what was dropped; the tokenizer's report its figures; each model's metrics.json its
size, steps and losses, its val_curve.json the validation curve; the KTO checkpoint folder's
val_curve.json the guard's per-evaluation rewards, drift and failure rates. throughput.json (wall
clock, beside a model's metrics.json, not tracked by DVC) is read when present: its figures go to
the caller's timings and to results["pipeline"]["training"][model] (`seconds`, `tokens_per_s`): the
report card must show training time and throughput. Like the latency part they differ run to run;
every other figure of results.json is deterministic.

A missing or unreadable file leaves its part out with a note, never a crash: the report card says
"absent" for it.

Training-loss curves: each val_curve.json point carries the training loss of that step
(`train_loss`, recorded by src/training/callbacks.py); curves written before that have none, and the
report says the training curve is absent.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from src.paths import resolve

THROUGHPUT_FILE = "throughput.json"  # src/training/callbacks.py writes it beside metrics.json
TRAINING_KEYS = ("params", "params_non_embedding", "steps", "tokens_per_step", "world_size", "val_loss",
                 "val_bpb", "best_val_loss", "best_step")


def read_json(path: Path, notes: list[str]) -> Any:
    """The file's JSON, or None with a note when it is missing or unreadable."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        notes.append(f"{path}: unreadable ({type(exc).__name__}: {exc}); left out of the report")
        return None


def _numbers(d: Any, keys: tuple[str, ...] | None = None) -> dict[str, float]:
    if not isinstance(d, Mapping):
        return {}
    return {k: v for k, v in d.items() if (keys is None or k in keys)
            and isinstance(v, (int, float)) and not isinstance(v, bool)}


# What each data stage's report says it read, wrote and dropped. Each takes the parsed report.
def _clean_librus(r: Mapping[str, Any]) -> dict[str, Any]:
    t = r.get("totals", {})
    reasons: dict[str, int] = {}
    for row in r.get("dropped", []) or []:
        reason = str(row.get("reason", "?")).split(":")[0] if isinstance(row, Mapping) else "?"
        reasons[reason] = reasons.get(reason, 0) + 1
    return {"read": _numbers(t, ("manifest_rows", "chars_in")),
            "wrote": _numbers(t, ("documents", "chars_extracted", "chars_out")), "dropped": reasons}


def _clean_subs(r: Mapping[str, Any]) -> dict[str, Any]:
    t = r.get("totals", {})
    return {"read": _numbers(t, ("files_in", "bytes_in", "cues_in")),
            "wrote": _numbers(t, ("files_cleaned", "files_kept", "lines_out")), "dropped": _numbers(r.get("dropped"))}


def _tokenize(r: Mapping[str, Any]) -> dict[str, Any]:
    splits = r.get("splits", {}) or {}
    wrote = {f"{name}_{k}": v for name, s in splits.items() for k, v in _numbers(s, ("n_tokens", "n_bytes", "n_docs")).items()}
    return {"read": _numbers(r.get("read")), "wrote": wrote, "dropped": _numbers(r.get("dropped"))}


def _build_dialogues(r: Mapping[str, Any]) -> dict[str, Any]:
    return {"read": {}, "wrote": _numbers(r, ("written", "train", "val", "loss_tokens")), "dropped": {}}


def _kto_pairs(r: Mapping[str, Any]) -> dict[str, Any]:
    wrote = {f"{split}_{label}": n for split, labels in (r.get("labels_by_split") or {}).items()
             for label, n in _numbers(labels).items()}
    return {"read": _numbers(r, ("prompts", "prompts_val")), "wrote": wrote, "dropped": {}}


def _reranker_data(r: Mapping[str, Any]) -> dict[str, Any]:
    wrote = {"samples": r.get("samples", 0), **{f"kind_{k}": v for k, v in _numbers(r.get("by_kind")).items()},
             **{f"split_{k}": v for k, v in _numbers(r.get("by_split")).items()}}
    return {"read": {}, "wrote": _numbers(wrote), "dropped": _numbers(r.get("lines_unused"))}


def _markov(r: Mapping[str, Any]) -> dict[str, Any]:
    return {"read": {}, "wrote": _numbers(r.get("counts")), "dropped": {}}


DATA_REPORTS: dict[str, tuple[str, Callable[[Mapping[str, Any]], dict[str, Any]]]] = {
    "clean_librus": ("clean_librus/report.json", _clean_librus),
    "clean_subs": ("clean_subs/report.json", _clean_subs),
    "build_dialogues": ("build_dialogues/report.json", _build_dialogues),
    "kto_pairs": ("kto_pairs/report.json", _kto_pairs),
    "reranker_data": ("reranker_data/report.json", _reranker_data),
    "markov": ("markov/report.json", _markov),
}


def data_facts(reports_dir: Path, tokens_dir: Path, notes: list[str]) -> dict[str, Any]:
    """{stage: {read, wrote, dropped}} for every data stage whose report exists."""
    out: dict[str, Any] = {}
    found = [(stage, reports_dir / rel, fn) for stage, (rel, fn) in DATA_REPORTS.items()]
    found.insert(2, ("tokenize", tokens_dir / "report.json", _tokenize))
    for stage, path, extract in found:
        report = read_json(path, notes)
        if isinstance(report, Mapping):
            out[stage] = extract(report)
    return out


def tokenizer_facts(report_path: Path, notes: list[str]) -> dict[str, Any]:
    r = read_json(report_path, notes)
    if not isinstance(r, Mapping):
        return {}
    held = r.get("heldout") or {}
    facts: dict[str, Any] = {"kind": r.get("kind"), "vocab_size": r.get("vocab_size")}
    facts.update({k: held[k] for k in ("chars_per_token", "bytes_per_token", "fallback_rate", "roundtrip_rate")
                  if isinstance(held.get(k), (int, float))})
    facts["heldout_docs"] = held.get("docs")
    return {k: v for k, v in facts.items() if v is not None}


def _curve(rows: Any, key: str) -> list[list[float]]:
    if not isinstance(rows, list):
        return []
    return [[r["step"], r[key]] for r in rows
            if isinstance(r, Mapping) and isinstance(r.get(key), (int, float)) and not isinstance(r.get(key), bool)
            and isinstance(r.get("step"), (int, float))]


def model_facts(model_dir: Path, notes: list[str]) -> dict[str, Any]:
    """{"training": {...}, "val": [[step, loss]...]} of one model folder (empty parts when absent)."""
    metrics = read_json(model_dir / "metrics.json", notes)
    training = _numbers(metrics, TRAINING_KEYS)
    if "params" in training:
        training["parameters"] = training.pop("params")
    if "steps" in training and "tokens_per_step" in training:
        training["tokens"] = training["steps"] * training["tokens_per_step"]
    rows = read_json(model_dir / "val_curve.json", notes)
    return {"training": training, "val": _curve(rows, "val_loss"), "train": _curve(rows, "train_loss")}


def throughput_facts(report_dir: Path, notes: list[str]) -> dict[str, float]:
    return _numbers(read_json(report_dir / THROUGHPUT_FILE, notes))


KTO_SERIES_SKIP = ("step", "collapsed", "train_loss")  # the loss is in the loss curves


def kto_series(kto_dir: Path, notes: list[str]) -> dict[str, list[list[float]]]:
    """Every numeric per-evaluation figure of the KTO guard (rewards, drift, failure rates)."""
    rows = read_json(kto_dir / "val_curve.json", notes)
    if not isinstance(rows, list) or not rows:
        return {}
    keys = sorted({k for r in rows if isinstance(r, Mapping) for k in r if k not in KTO_SERIES_SKIP})
    return {k: points for k in keys if (points := _curve(rows, k))}


def collect(models: Mapping[str, Path | None], reports_dir: str | Path, tokenizer_report: str | Path,
            tokens_dir: str | Path, notes: list[str], timings: dict[str, float]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(results["pipeline"], series parts {"loss_curves", "kto"}) for the model folders `models`
    (name -> folder, None when the model is absent). Wall-clock figures go to `timings`."""
    reports = resolve(reports_dir)
    pipeline: dict[str, Any] = {"data": data_facts(reports, resolve(tokens_dir), notes),
                                "tokenizer": tokenizer_facts(resolve(tokenizer_report), notes), "training": {}}
    curves: dict[str, Any] = {}
    kto: dict[str, Any] = {}
    for name, folder in models.items():
        if folder is None:
            continue
        facts = model_facts(folder, notes)
        wall_clock = throughput_facts(reports / name, notes)
        if "train_seconds" in wall_clock:
            facts["training"]["seconds"] = wall_clock["train_seconds"]
        if "tokens_per_s" in wall_clock:
            facts["training"]["tokens_per_s"] = wall_clock["tokens_per_s"]
        if facts["training"]:
            pipeline["training"][name] = facts["training"]
        curves[name] = {part: facts[part] for part in ("train", "val") if facts[part]}
        if not curves[name]:
            del curves[name]
        timings.update({f"{name}.{k}": v for k, v in wall_clock.items()})
        if name == "kto":
            kto = kto_series(folder, notes)
    return pipeline, {"loss_curves": curves, "kto": kto}
