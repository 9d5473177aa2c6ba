"""The kto_pairs report: rows per preset, label and split; per preset the replies sampled, kept and
"turned out fine", which detectors fired and why replies stopped; a few examples of each preset."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from src.atomic_io import write_json_atomic, write_text_atomic
from src.eval.detectors import FAILURES

EXAMPLE_CHARS = 400


def _last_user(prompt: Sequence[Mapping[str, str]]) -> str:
    users = [m["content"] for m in prompt if m["role"] == "user"]
    return users[-1] if users else ""


def _clip(text: str, n: int = EXAMPLE_CHARS) -> str:
    return text if len(text) <= n else text[:n] + "…"


def example(row: Mapping[str, Any]) -> dict[str, Any]:
    return {"user": _clip(_last_user(row["prompt"])), "completion": _clip(row["completion"]),
            "ended": row["completion_ended"], "split": row["split"],
            "flags": [name for name in FAILURES if row[name]],
            "scores": {name: round(row[f"{name}_score"], 3) for name in FAILURES}}


def build_report(rows: Sequence[Mapping[str, Any]], stats: Mapping[str, Mapping[str, Any]],
                 examples: Mapping[str, Sequence[Mapping[str, Any]]], n_examples: int,
                 meta: Mapping[str, Any]) -> dict[str, Any]:
    counts: dict[str, int] = {}
    by_split: dict[str, dict[str, int]] = {}
    for row in rows:
        counts[row["preset"]] = counts.get(row["preset"], 0) + 1
        label = "desirable" if row["label"] else "undesirable"
        split = by_split.setdefault(row["split"], {"desirable": 0, "undesirable": 0})
        split[label] += 1
    return {
        **meta,
        "rows": counts,
        "labels_by_split": by_split,
        "presets": {name: dict(s) for name, s in stats.items()},
        "examples": {name: [example(r) for r in rs[:n_examples]] for name, rs in examples.items()},
    }


def render_markdown(report: Mapping[str, Any]) -> str:
    lines = ["# kto_pairs", "", f"Model: `{report['checkpoint']}` (sha256 `{report['model_sha256'][:16]}`), "
             f"{report['prompts']} prompts ({report['prompts_val']} held out for validation).", "",
             "| split | desirable | undesirable |", "|---|---:|---:|"]
    for split, c in sorted(report["labels_by_split"].items()):
        lines.append(f"| {split} | {c['desirable']} | {c['undesirable']} |")
    lines += ["", "| preset | sampled | kept (undesirable) | turned out fine | "
              + " | ".join(f"flagged {f}" for f in FAILURES) + " | finish reasons |",
              "|---|---:|---:|---:|" + "---:|" * len(FAILURES) + "---|"]
    for name, s in report["presets"].items():
        flagged = " | ".join(str(s["flagged_by"][f]) for f in FAILURES)
        reasons = ", ".join(f"{k} {v}" for k, v in s["finish_reasons"].items())
        lines.append(f"| {name} | {s['sampled']} | {s['kept']} | {s['turned_out_fine']} | {flagged} | {reasons} |")
    lines += ["", "Rows per preset: " + ", ".join(f"{k} {v}" for k, v in report["rows"].items()), ""]
    for name, items in report["examples"].items():
        lines += [f"## {name}", ""]
        for e in items:
            flags = ", ".join(e["flags"]) or "none"
            lines += [f"- **user:** {e['user']!r}", f"  **reply** ({'ended' if e['ended'] else 'no end'}; "
                      f"flags: {flags}): {e['completion']!r}"]
        lines.append("")
    return "\n".join(lines)


def write_report(directory: Path, rows: Sequence[Mapping[str, Any]], stats: Mapping[str, Mapping[str, Any]],
                 examples: Mapping[str, Sequence[Mapping[str, Any]]], n_examples: int,
                 meta: Mapping[str, Any]) -> dict[str, Any]:
    report = build_report(rows, stats, examples, n_examples, meta)
    write_json_atomic(directory / "report.json", report)
    write_text_atomic(directory / "report.md", render_markdown(report))
    return report
