"""The `build_dialogues` report: per source what was read, filtered, rejected and written; turns
and token lengths (p50/p90/p95/p99 in tokens of the pipeline's tokenizer); the share of tokens under
loss; and a few conversations rendered with the tokens under loss marked ⟦like this⟧."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from src.atomic_io import write_json_atomic, write_text_atomic
from src.data.dialogues.datasets import FileCounts

PERCENTILES = (50, 90, 95, 99)
LOSS_OPEN, LOSS_CLOSE = "⟦", "⟧"


@dataclass
class SourceStats:
    read: int = 0
    duplicates: int = 0
    bad_rows: Counter[str] = field(default_factory=Counter)
    extraction: Counter[str] = field(default_factory=Counter)  # speech/subtitle extraction counts
    files: list[FileCounts] = field(default_factory=list)
    written: Counter[str] = field(default_factory=Counter)  # per split
    turns: list[int] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    loss_tokens: int = 0

    def add_written(self, split: str, n_turns: int, n_tokens: int, n_loss: int) -> None:
        self.written[split] += 1
        self.turns.append(n_turns)
        self.tokens.append(n_tokens)
        self.loss_tokens += n_loss

    def move_to_val(self) -> None:
        self.written["train"] -= 1
        self.written["val"] += 1


def _distribution(values: Sequence[int]) -> dict[str, float]:
    if not values:
        return {"count": 0}
    arr = np.asarray(values)
    out = {"count": int(arr.size), "mean": round(float(arr.mean()), 1), "max": int(arr.max())}
    out.update({f"p{q}": round(float(np.percentile(arr, q)), 1) for q in PERCENTILES})
    return out


def marked_view(tokenizer: Any, ids: Sequence[int], mask: Sequence[bool]) -> str:
    """The conversation as the model reads it (special tokens visible), loss tokens inside ⟦ ⟧."""
    specials = set(tokenizer.special_tokens.values())
    parts: list[str] = []
    i = 0
    while i < len(ids):
        j = i
        while j < len(ids) and mask[j] == mask[i]:
            j += 1
        text, run = [], []
        for t in [*ids[i:j], None]:  # ordinary ids decode together (multi-byte characters stay whole)
            if t is not None and t not in specials:
                run.append(t)
                continue
            if run:
                text.append(tokenizer.decode(run))
                run = []
            if t is not None:
                text.append(tokenizer.id_to_piece(t))
        chunk = "".join(text)
        parts.append(f"{LOSS_OPEN}{chunk}{LOSS_CLOSE}" if mask[i] else chunk)
        i = j
    return "".join(parts)


class DialogueStats:
    def __init__(self, tokenizer: Any, examples_per_source: int) -> None:
        self.tok = tokenizer
        self.examples_per_source = examples_per_source
        self.sources: dict[str, SourceStats] = {}
        self.examples: dict[str, list[str]] = {}

    def source(self, name: str) -> SourceStats:
        return self.sources.setdefault(name, SourceStats())

    def offer_example(self, source: str, conv: list[dict[str, str]], ids: list[int], mask: list[bool]) -> None:
        shown = self.examples.setdefault(source, [])
        # The first multi-turn conversations (and a system prompt when the source has one) show most.
        if len(shown) < self.examples_per_source and (len(conv) > 2 or len(shown) == 0):
            shown.append(marked_view(self.tok, ids, mask))

    def total_written(self) -> int:
        return sum(sum(s.written.values()) for s in self.sources.values())

    def split_total(self, split: str) -> int:
        return sum(s.written[split] for s in self.sources.values())


def _shown(path: Path) -> str:
    """A path relative to the project when it is inside it (reports stay machine-independent)."""
    from src.paths import display_path

    return display_path(path)


def _source_dict(s: SourceStats) -> dict[str, Any]:
    total = sum(s.tokens)
    return {
        # Dataset sources: rows in the files, and rows left after the filters (what the checks saw);
        # extracted sources: conversations extracted.
        "read": sum(f.rows for f in s.files) if s.files else s.read,
        "filters": [{**f.to_dict(), "path": _shown(Path(f.path))} for f in s.files],
        "after_filters": s.read,
        "bad_rows": dict(s.bad_rows),
        "duplicates": s.duplicates,
        "written": sum(s.written.values()),
        "train": s.written["train"],
        "val": s.written["val"],
        "extraction": dict(s.extraction),
        "turns": _distribution(s.turns),
        "tokens": _distribution(s.tokens),
        "loss_tokens": s.loss_tokens,
        "loss_share": round(s.loss_tokens / total, 4) if total else 0.0,
    }


def write_report(report_dir: Path, stats: DialogueStats, tokenizer: Any, notes: list[str],
                 bad_lines: list[str], output: Path) -> dict[str, Any]:
    """Write report.json and report.md; return the report plus `metrics` and `examples_text`."""
    report_dir.mkdir(parents=True, exist_ok=True)
    all_tokens = [t for s in stats.sources.values() for t in s.tokens]
    all_turns = [t for s in stats.sources.values() for t in s.turns]
    loss = sum(s.loss_tokens for s in stats.sources.values())
    report: dict[str, Any] = {
        "output": _shown(output),
        "tokenizer": {"kind": tokenizer.kind, "sha256": tokenizer.sha256, "vocab_size": tokenizer.vocab_size},
        "written": stats.total_written(),
        "train": stats.split_total("train"),
        "val": stats.split_total("val"),
        "turns": _distribution(all_turns),
        "tokens": _distribution(all_tokens),
        "loss_tokens": loss,
        "loss_share": round(loss / sum(all_tokens), 4) if all_tokens else 0.0,
        "sources": {name: _source_dict(s) for name, s in stats.sources.items()},
        "bad_json_lines": bad_lines[:100],
        "notes": notes,
        "examples": stats.examples,
    }
    write_json_atomic(report_dir / "report.json", report)
    write_text_atomic(report_dir / "report.md", render_markdown(report))
    metrics = {"conversations.written": report["written"], "conversations.val": report["val"],
               "tokens.loss_share": report["loss_share"]}
    metrics.update({f"tokens.p{q}": report["tokens"].get(f"p{q}", 0.0) for q in PERCENTILES})
    for name, s in report["sources"].items():
        metrics[f"{name.replace(':', '_')}.written"] = s["written"]
    examples_text = "\n\n".join(f"## {src}\n" + "\n\n".join(views) for src, views in stats.examples.items())
    return {**report, "metrics": metrics, "examples_text": examples_text}


def render_markdown(r: dict[str, Any]) -> str:
    lines = [
        "# build_dialogues", "",
        f"{r['written']} conversations written to `{r['output']}` ({r['train']} train, {r['val']} val); "
        f"tokenizer {r['tokenizer']['kind']} (vocab {r['tokenizer']['vocab_size']}, sha256 "
        f"{r['tokenizer']['sha256'][:12]}); {100 * r['loss_share']:.1f} % of tokens under loss.", "",
        "| source | read | bad | duplicates | written | train | val | turns p50 | tokens p50 | p90 | p95 | p99 | loss share |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, s in [*r["sources"].items(), ("**all**", {**r, "read": sum(x["read"] for x in r["sources"].values()),
                                    "bad_rows": {k: v for x in r["sources"].values() for k, v in x["bad_rows"].items()},
                                    "duplicates": sum(x["duplicates"] for x in r["sources"].values())})]:
        t = s["tokens"]
        lines.append(
            f"| {name} | {s['read']} | {sum(s['bad_rows'].values())} | {s['duplicates']} | {s['written']} | "
            f"{s['train']} | {s['val']} | {s['turns'].get('p50', '-')} | {t.get('p50', '-')} | "
            f"{t.get('p90', '-')} | {t.get('p95', '-')} | {t.get('p99', '-')} | {100 * s['loss_share']:.1f} % |")
    for name, s in r["sources"].items():
        for f in s["filters"]:
            lines += ["", f"## Filters: {name}, `{f['path']}`", "",
                      f"{f['rows']} rows" + (f", {f['invalid_json_lines']} invalid JSON lines" if f["invalid_json_lines"] else ""),
                      "", "| filter | before | after | not applicable |", "|---|---|---|---|"]
            lines += [f"| `{x['name']}` | {x['before']} | {x['after']} | {x['not_applicable']} |" for x in f["filters"]]
        if s["bad_rows"]:
            lines += ["", f"## Bad rows: {name}", "", "| reason | rows |", "|---|---|"]
            lines += [f"| {k} | {v} |" for k, v in sorted(s["bad_rows"].items(), key=lambda kv: -kv[1])]
        if s["extraction"]:
            lines += ["", f"## Extraction: {name}", "", "| count | value |", "|---|---|"]
            lines += [f"| {k} | {v} |" for k, v in sorted(s["extraction"].items())]
    if r["notes"]:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in r["notes"]]
    lines += ["", f"## Examples (tokens under loss in {LOSS_OPEN} {LOSS_CLOSE})"]
    for src, views in r["examples"].items():
        for v in views:
            lines += ["", f"{src}:", "", "```", v, "```"]
    return "\n".join(lines) + "\n"
