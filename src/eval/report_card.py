"""The report card of a pipeline run: data/eval/results.json rendered as report.md and report.html.

    python -m src.eval.report_card data/eval/results.json OUT_DIR

`render_report_card(results, out_dir)` turns the results (schema in the eval stage's contract:
every part optional but "models") into a Markdown file and one self-contained HTML file (CSS inline,
figures as base64 PNG, no script, no external link) that opens in any browser. A summary table
(metric x model, best per row in bold) comes first, then one section per part. A missing part says
"absent: <why>" (the why from results["absent"] where it names the part), and so does a malformed one.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from src.atomic_io import write_text_atomic
from src.data.readers import read_json
from src.errors import InputError
from src.eval import report_doc as doc
from src.eval import report_plots as plots
from src.eval.report_doc import Absent, Cell, Figure, Para, Table, fmt, fmt_count

log = logging.getLogger(__name__)
TITLE = "Report card"
MODEL_ORDER = ("pretrain", "sft", "kto")
CORPORA = ("literature", "subtitles", "dialogues")
# Generation metrics (generation_metrics.reply_metrics): label and which direction is better.
GENERATION = (("loop_rate", "loop rate", -1), ("end_of_turn_rate", "end-of-turn rate", +1),
              ("distinct_1", "distinct-1", +1), ("distinct_2", "distinct-2", +1),
              ("repeated_ngram_rate", "repeated n-gram rate", -1),
              ("markdown_wall_rate", "markdown-wall rate", -1), ("canned_rate", "canned rate", -1),
              ("mean_length_tokens", "mean length (tokens)", 0),
              ("mean_length_chars", "mean length (chars)", 0), ("n", "replies", 0))
SUMMARY_GENERATION = ("loop_rate", "end_of_turn_rate", "distinct_2", "markdown_wall_rate",
                      "canned_rate", "mean_length_tokens")
PROBE = (("logprob_accuracy", "log-prob accuracy", +1), ("chance", "chance level (log-prob)", 0),
         ("keyword_accuracy", "keyword accuracy", +1), ("mean_margin", "mean log-prob margin", +1),
         ("n", "probes scored", 0), ("cropped", "probes cropped to fit the context", 0))
RERANKER = (("n", "pairs", 0), ("accuracy", "accuracy", +1), ("roc_auc", "ROC AUC", +1),
            ("average_precision", "average precision", +1), ("mrr_at_k", "MRR@k", +1),
            ("hit_at_1", "hit@1", +1), ("k", "k", 0))
LATENCY = (("ttft_ms", "time to first token (ms)", -1), ("first_phrase_ms", "time to first phrase (ms)", -1),
           ("reranked_turn_ms", "reranked turn (ms)", -1), ("tokens_per_s", "tokens/s", +1),
           ("n", "prompts", 0))
TRAINING = (("parameters", "parameters", fmt_count), ("steps", "steps", fmt_count),
            ("tokens", "tokens", fmt_count), ("seconds", "training time", doc.fmt_seconds),
            ("tokens_per_s", "tokens/s", fmt), ("best_val_loss", "best val loss", fmt))
SECTIONS = (("summary", "Summary"), ("data", "Data"), ("tokenizer", "Tokenizer"), ("models", "Models"),
            ("lm", "Language modelling"), ("generation", "Generation"),
            ("probes", "Context retention"), ("kto", "KTO"), ("reranker", "Reranker"),
            ("latency", "Latency"), ("samples", "Samples"), ("absent", "Absent parts"))
SECTION_TITLES = tuple(title for _, title in SECTIONS)
MAX_REPLY_CHARS = 2000


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _get(results: Mapping[str, Any], path: str) -> Any:
    node: Any = results
    for key in path.split("."):
        node = _map(node).get(key)
    return node


def model_names(results: Mapping[str, Any]) -> list[str]:
    """Every model any part mentions: pretrain, sft, kto first, others in the order met."""
    seen: dict[str, None] = {}
    for part in ("models", "lm", "generation", "probes", "latency"):
        seen.update(dict.fromkeys(_map(results.get(part))))
    return sorted(seen, key=lambda m: (MODEL_ORDER.index(m) if m in MODEL_ORDER else len(MODEL_ORDER)))


def why_absent(results: Mapping[str, Any], key: str, title: str, expect: type = Mapping) -> str:
    """The reason results["absent"] gives for a part, else that results.json has none of it."""
    names = {key.lower(), key.split(".")[-1].lower(), title.lower()}
    for entry in results.get("absent") or ():
        if isinstance(entry, str) and entry.split(":", 1)[0].strip().lower() in names:
            return entry
    value = _get(results, key)
    if value is not None and not isinstance(value, expect):
        wanted = "a list" if expect is list else "an object"
        return f"results.json's {key!r} is a {type(value).__name__}, not {wanted}"
    return f"results.json's {key!r} is empty" if value is not None else f"results.json has no {key!r} data"


# ---------------------------------------------------------------- sections


def summary(results: Mapping[str, Any], models: list[str]) -> list:
    lm, gen, probes = _map(results.get("lm")), _map(results.get("generation")), _map(results.get("probes"))
    latency, reranker = _map(results.get("latency")), _map(results.get("reranker"))
    columns = models + (["reranker"] if reranker else [])
    header = [c if _map(_map(results.get("models")).get(c)).get("present", True) else f"{c} (absent)"
              for c in columns]
    rows: list[list[Cell]] = []

    def add(label: str, direction: int, value: Callable[[str], Any]) -> None:
        values = [value(c) for c in columns]
        if any(v is not None for v in values):
            rows.append(doc.marked_row(label, values, direction))

    corpora = list(CORPORA) + [c for m in lm.values() for c in _map(m) if c not in CORPORA]
    for corpus in dict.fromkeys(corpora):
        add(f"val bpb · {corpus}", -1,
            lambda c, corpus=corpus: _map(_map(lm.get(c)).get(corpus)).get("bpb"))
    for key, label, direction in (g for g in GENERATION if g[0] in SUMMARY_GENERATION):
        add(label, direction, lambda c, key=key: _map(gen.get(c)).get(key))
    for lang in ("ru", "en"):
        add(f"context probes {lang} (log-prob acc.)", +1,
            lambda c, lang=lang: _map(_map(probes.get(c)).get(lang)).get("logprob_accuracy"))
    add("reranker ROC AUC", +1, lambda c: reranker.get("roc_auc") if c == "reranker" else None)
    add("reranker MRR@k", +1, lambda c: reranker.get("mrr_at_k") if c == "reranker" else None)
    add("time to first token (ms)", -1, lambda c: _map(latency.get(c)).get("ttft_ms"))
    add("tokens/s", +1, lambda c: _map(latency.get(c)).get("tokens_per_s"))
    if not rows:
        return [Absent("no metric of any model in results.json")]
    return [Table(["metric"] + header, rows), Para(
        "Best value of each row in bold: lower is better for bpb, loop, markdown-wall and canned "
        "rates and latency, higher for the rest; mean length has no better direction.")]


def data(results: Mapping[str, Any], models: list[str]) -> list:
    stages = _map(_get(results, "pipeline.data"))
    if not stages:
        return [Absent(why_absent(results, "pipeline.data", "data"))]

    def counts(d: Any) -> str:
        return " · ".join(f"{k} {fmt_count(v)}" for k, v in _map(d).items()) or doc.MISSING

    sizes = Table(["stage", "read", "wrote"], [[Cell(s), Cell(counts(_map(v).get("read"))),
                                                 Cell(counts(_map(v).get("wrote")))]
                                                for s, v in stages.items()], "sizes before and after")
    dropped = [[Cell(s), Cell(str(reason)), Cell(fmt_count(n))]
               for s, v in stages.items() for reason, n in _map(_map(v).get("dropped")).items()]
    blocks: list = [sizes, doc.Sub("Dropped")]
    blocks.append(Table(["stage", "reason", "count"], dropped) if dropped
                  else Para("nothing dropped by any stage"))
    notes = [f"{s}: {n}" for s, v in stages.items() if isinstance(_map(v).get("notes"), list)
             for n in v["notes"]]
    return blocks + ([doc.Items(notes)] if notes else [])


def tokenizer(results: Mapping[str, Any], models: list[str]) -> list:
    tok = _map(_get(results, "pipeline.tokenizer"))
    return [doc.kv_table(tok) if tok else Absent(why_absent(results, "pipeline.tokenizer", "tokenizer"))]


def models_section(results: Mapping[str, Any], models: list[str]) -> list:
    info, training = _map(results.get("models")), _map(_get(results, "pipeline.training"))
    if not info and not training:
        return [Absent(why_absent(results, "models", "models"))]
    rows = []
    for m in [m for m in models if m in info or m in training]:
        meta, train = _map(info.get(m)), _map(training.get(m))
        present = "yes" if meta.get("present", True) else f"no: {meta.get('reason') or 'no reason given'}"
        rows.append([Cell(m), Cell(present)] + [
            Cell(f(train.get(key, meta.get("parameters") if key == "parameters" else None)))
            for key, _, f in TRAINING] + [Cell(str(meta.get("mlflow_run_id") or doc.MISSING))])
    blocks: list = [Table(["model", "present"] + [label for _, label, _ in TRAINING] + ["MLflow run"],
                          rows)]
    if not any(_map(t).get("seconds") is not None for t in training.values()):
        blocks.append(Para("Training time and throughput are wall-clock figures, kept out of the "
                           "DVC-tracked results; each training stage's MLflow run has them."))
    png = plots.loss_curves(_map(_get(results, "series.loss_curves")))
    blocks.append(Figure(png, "training and validation loss per model") if png
                  else Absent(why_absent(results, "series.loss_curves", "loss curves")))
    return blocks


def lm(results: Mapping[str, Any], models: list[str]) -> list:
    lm_data, unigram = _map(results.get("lm")), _map(results.get("unigram"))
    if not lm_data and not unigram:
        return [Absent(why_absent(results, "lm", "language modelling"))]
    columns = [m for m in models if m in lm_data] + (["unigram"] if unigram else [])
    corpora = list(dict.fromkeys([c for c in CORPORA if any(c in _map(v) for v in lm_data.values())
                                  or c in unigram] + [c for v in lm_data.values() for c in _map(v)]
                                 + list(unigram)))

    def value(col: str, corpus: str, key: str) -> Any:
        source = unigram if col == "unigram" else _map(lm_data.get(col))
        return _map(source.get(corpus)).get(key)

    def first(corpus: str, key: str) -> Any:  # every model reads the same validation text
        return next((v for m in columns if (v := value(m, corpus, key)) is not None), None)

    blocks: list = [Table(["corpus"] + columns, [doc.marked_row(c, [value(m, c, key) for m in columns], -1)
                                                 for c in corpora], caption)
                    for key, caption in (("bpb", "bits per byte on validation text (lower is better)"),
                                         ("loss", "loss, nats per token"))]
    blocks.append(Table(["corpus", "tokens", "bytes"], [[Cell(c), Cell(fmt_count(first(c, "tokens"))),
                                                         Cell(fmt_count(first(c, "bytes")))]
                                                        for c in corpora], "size of each validation set"))
    blocks.append(Para("The unigram baseline is a model of token frequencies alone, scored by the same "
                       "code; a language model that does not beat it has learnt nothing about order.")
                  if unigram else Absent(why_absent(results, "unigram", "unigram")))
    return blocks


def generation(results: Mapping[str, Any], models: list[str]) -> list:
    gen = _map(results.get("generation"))
    if not gen:
        return [Absent(why_absent(results, "generation", "generation"))]
    columns = [m for m in models if m in gen]
    blocks: list = [doc.metric_table(GENERATION, {m: gen.get(m) for m in columns})]
    png = plots.reply_lengths(_map(_get(results, "series.reply_lengths")))
    blocks.append(Figure(png, "reply length histogram per model") if png
                  else Absent(why_absent(results, "series.reply_lengths", "reply lengths")))
    return blocks


def probes(results: Mapping[str, Any], models: list[str]) -> list:
    data = _map(results.get("probes"))
    if not data:
        return [Absent(why_absent(results, "probes", "context retention"))]
    columns = [m for m in models if m in data]
    langs = sorted({k for m in columns for k, v in _map(data.get(m)).items() if isinstance(v, Mapping)},
                   key=lambda lang: (("ru", "en").index(lang) if lang in ("ru", "en") else 2, lang))
    blocks: list = []
    for lang in langs:
        blocks += [doc.Sub(f"probes in {lang}"),
                   doc.metric_table(PROBE, {m: _map(data.get(m)).get(lang) for m in columns})]
    if not blocks:
        return [Absent("no language in the probe results")]
    return blocks + [Para("Log-prob accuracy: the share of probes whose right continuation outscores "
                          "the wrong ones; its chance level (the row above) is what a model that "
                          "ignores the first turn gets. A keyword answer by chance is rare, so its "
                          "chance level is near 0.")]


def kto(results: Mapping[str, Any], models: list[str]) -> list:
    series = _map(_get(results, "series.kto"))
    if not series:
        return [Absent(why_absent(results, "series.kto", "kto"))]
    rows = []
    for key, points in series.items():
        pts = plots._finite_pairs(points)
        if pts:
            values = [v for _, v in pts]
            rows.append([Cell(key), Cell(fmt_count(pts[0][0])), Cell(fmt(values[0])),
                         Cell(fmt_count(pts[-1][0])), Cell(fmt(values[-1])), Cell(fmt(min(values))),
                         Cell(fmt(max(values)))])
    if not rows:
        return [Absent("the KTO series hold no finite (step, value) point")]
    blocks: list = [Table(["series", "first step", "first", "last step", "last", "min", "max"], rows),
                    Figure(plots.kto_series(series), "KTO rewards, KL and drift over steps")]
    blocks.append(Para("Drift is the change of the log-probability of held-out desirable replies; "
                       "a steady fall while rewards rise is the sign of a collapsing policy."))
    return blocks


def reranker(results: Mapping[str, Any], models: list[str]) -> list:
    data = _map(results.get("reranker"))
    scores = _map(_get(results, "series.reranker_scores"))
    if not data and not scores:
        return [Absent(why_absent(results, "reranker", "reranker"))]
    blocks: list = []
    if data:
        blocks.append(doc.metric_table(RERANKER, {"value": data}, caption="held-out pairs",
                                       skip=("auc_by_kind", "best_of_n")))
        by_kind = _map(data.get("auc_by_kind"))
        if by_kind:
            blocks.append(Table(["negative kind", "ROC AUC (positives vs this kind)"],
                                [[Cell(k), Cell(fmt(v))] for k, v in by_kind.items()]))
    png = plots.reranker_scores(scores)
    blocks.append(Figure(png, "reranker scores: positives against each kind of negative") if png
                  else Absent(why_absent(results, "series.reranker_scores", "reranker scores")))
    best = _map(data.get("best_of_n"))
    blocks.append(doc.Sub("Best-of-N against plain sampling"))
    if not best:
        blocks.append(Absent(why_absent(results, "reranker.best_of_n", "best-of-n")))
        return blocks
    rows = (("mean_reranker_score", "mean reranker score", +1),) + GENERATION
    # The arms (reranked, unranked, plain, ...) are the sub-objects that carry reply metrics.
    arms = {k: v for k, v in best.items() if isinstance(v, Mapping)
            and any(key in v for key, _, _ in rows)}
    blocks.append(doc.metric_table(rows, arms))
    facts = [f"{k}: {fmt(v)}" for k, v in best.items() if k not in arms and k != "samples"
             and not isinstance(v, (Mapping, list))]
    facts += [f"dropped · {k}: {fmt_count(v)}" for k, v in _map(best.get("dropped")).items()]
    notes = [str(n) for n in best["notes"]] if isinstance(best.get("notes"), list) else []
    return blocks + ([Para(" · ".join(facts))] if facts else []) + ([doc.Items(notes)] if notes else [])


def latency(results: Mapping[str, Any], models: list[str]) -> list:
    data = _map(results.get("latency")) or _map(_get(results, "series.latency"))
    if not data:
        return [Absent(why_absent(results, "latency", "latency"))]
    columns = [m for m in models if m in data] + [m for m in data if m not in models]
    blocks: list = [doc.metric_table(LATENCY, {m: data.get(m) for m in columns})]
    png = plots.latency({m: _map(data.get(m)) for m in columns})
    blocks.append(Figure(png, "latency per chat model, batch 1 (dashed: the 2 s first-utterance limit)")
                  if png else Absent("no finite latency figure"))
    return blocks


def _prompt_text(prompt: Any) -> str:
    if isinstance(prompt, list):  # a conversation: [{role, content}, ...]
        return "\n".join(f"{_map(t).get('role', '?')}: {_map(t).get('content', t)}" for t in prompt)
    return str(prompt)


def _clip(text: str) -> str:
    over = len(text) - MAX_REPLY_CHARS
    return text if over <= 0 else f"{text[:MAX_REPLY_CHARS]} … [{over:,} more chars]"


def samples(results: Mapping[str, Any], models: list[str]) -> list:
    rows = results.get("samples")
    if not isinstance(rows, list) or not rows:
        return [Absent(why_absent(results, "samples", "samples", expect=list))]
    blocks: list = []
    skipped = 0
    for i, row in enumerate(map(_map, rows)):
        replies = _map(row.get("replies"))
        if not replies:
            skipped += 1  # said below, never dropped silently
            continue
        order = [m for m in models if m in replies] + [m for m in replies if m not in models]
        cut = [(m, _clip(str(replies[m]))) for m in order]
        title = f"{row.get('id', i + 1)} ({row.get('language', '?')})"
        blocks.append(doc.SideBySide(title, _prompt_text(row.get("prompt", "")), cut))
    if skipped:
        blocks.append(Absent(f"{skipped} of {len(rows)} sample rows have no replies (or are not objects)"))
    return blocks


def absent(results: Mapping[str, Any], models: list[str]) -> list:
    entries = results.get("absent")
    if not entries:
        return [Para("nothing listed as absent")]
    return [doc.Items([str(e) for e in entries])]


BUILDERS = {"summary": summary, "data": data, "tokenizer": tokenizer, "models": models_section,
            "lm": lm, "generation": generation, "probes": probes, "kto": kto, "reranker": reranker,
            "latency": latency, "samples": samples, "absent": absent}


def build_sections(results: Mapping[str, Any]) -> list[doc.Section]:
    """Every section in order, each followed by the results["absent"] lines about its parts
    ("lm.subtitles: ..." under Language modelling). A section whose data has an unexpected shape
    renders one absent line with the error: one malformed part never costs the rest of the report."""
    models = model_names(results)
    entries = [e for e in results.get("absent") or () if isinstance(e, str)]
    sections = []
    for key, title in SECTIONS:
        try:
            blocks = BUILDERS[key](results, models)
        except (TypeError, ValueError, AttributeError, KeyError, IndexError) as exc:
            reason = f"the {key!r} data has an unexpected shape ({type(exc).__name__}: {exc})"
            log.warning("report card: section %s: %s", title, reason)
            blocks = [Absent(reason)]
        shown = {b.reason for b in blocks if isinstance(b, Absent)}
        blocks += [Absent(e) for e in entries if key != "absent" and e not in shown
                   and (e.split(":", 1)[0].strip().lower() + ".").startswith(key + ".")]
        sections.append(doc.Section(title, key, blocks))
    return sections


def render_report_card(results: Mapping[str, Any], out_dir: Path) -> tuple[Path, Path]:
    """Write report.md and report.html for `results` into `out_dir`; returns both paths."""
    if not isinstance(results, Mapping):
        raise InputError(f"report card: results must be a JSON object, got {type(results).__name__}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sections = build_sections(results)
    models = model_names(results)
    note = ("Models: " + ", ".join(models) if models else "No model in the results") + \
        ". Figures are embedded in report.html."
    md_path, html_path = out_dir / "report.md", out_dir / "report.html"
    write_text_atomic(md_path, doc.render_markdown(TITLE, sections, note))
    write_text_atomic(html_path, doc.render_html(TITLE, sections, note))
    return md_path, html_path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", help="a results.json written by the eval stage")
    ap.add_argument("out_dir", help="folder for report.md and report.html")
    args = ap.parse_args(argv)
    try:
        md_path, html_path = render_report_card(read_json(args.results, hint="run the eval stage first"),
                                                Path(args.out_dir))
    except InputError as exc:
        print(f"error: report_card: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {md_path} and {html_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
