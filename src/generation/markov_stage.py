"""Stage `markov`: the Markov writer learned from subtitle lines, literature and your own texts.

Lines come from the cleaned subtitles (one utterance per row), from the cleaned lib.ru works and
from text files (`markov.literature.mode`: the spoken parts of dialogue paragraphs, every sentence,
or every paragraph). A line that is too long or has too few pieces is counted and left out. The
model goes to `markov.out_dir` (markov.safetensors, vocab.json, meta.json); the report lists what
was read and dropped, the model's size per order, and sample lines made with a fixed seed.
"""

from __future__ import annotations

import re
import sys
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from src.atomic_io import write_json_atomic, write_text_atomic
from src.data.dialogues.speech import speech_runs, split_paragraphs
from src.data.literature import literature_texts as shared_literature_texts
from src.data.literature import read_text_file  # noqa: F401 - used by bench.markov
from src.data.readers import read_parquet
from src.errors import InputError
from src.generation.markov import MarkovModel, split_pieces
from src.paths import resolve
from src.stage import StageRun

# A sentence ends at . ! ? … (and closing quotes or brackets after them) before a space and a
# capital, quote or dash; not after a short capitalized word with a full stop (Mr. Dr. St. Ив.).
_SENTENCE_END = re.compile(r"(?<!\b[A-ZА-ЯЁ][a-zа-яё]\.)(?<!\b[A-ZА-ЯЁ][a-zа-яё]{2}\.)"
                           r"(?:(?<=[.!?…])|(?<=[.!?…][\"»”’)]))\s+(?=(?:[\"«„“(]|[—–-]\s?)?[A-ZА-ЯЁ])")


def split_sentences(paragraph: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(paragraph) if s.strip()]


def subtitle_lines(sub: Any, counts: Counter[str]) -> Iterator[str]:
    path = resolve(sub.path)
    if not path.is_file():
        raise InputError(f"{path}: not found (markov.subtitles.path; run clean_subs, or set "
                         "markov.subtitles.enabled=false)")
    table = read_parquet(path, ["language", "text"], hint="rebuild it with the clean_subs stage")
    keep = set(sub.languages)
    for language, text in zip(table.column("language").to_pylist(), table.column("text").to_pylist(),
                              strict=True):
        if language not in keep:
            counts["subtitles_lines_skipped_language"] += 1
            continue
        counts["subtitles_lines"] += 1
        yield text or ""


def literature_texts(lit: Any, normalize: Any, counts: Counter[str]) -> Iterator[str]:
    # the cleaned corpus is normalized already; a user's own files are not
    for doc_id, text in shared_literature_texts(lit.path, lit.text_paths, "markov", counts,
                                                parquet_key="literature_documents", file_key="text_files",
                                                apparatus_rules=lit.apparatus_rules):
        yield normalize(text) if doc_id.startswith("text:") else text


def literature_lines(lit: Any, normalize: Any, counts: Counter[str]) -> Iterator[str]:
    for text in literature_texts(lit, normalize, counts):
        if lit.mode == "speech":
            for run in speech_runs(text, counts, lit.min_quoted_share, lit.inline_colon_dash):
                yield from run
        else:
            for paragraph in split_paragraphs(text):
                yield from (split_sentences(paragraph) if lit.mode == "sentences" else [paragraph])


def corpus_lines(c: Any, normalize: Any, counts: Counter[str]) -> Iterator[str]:
    """Every line the model learns from; those too long or too short are counted and skipped."""
    sources = []
    if c.subtitles.enabled:
        sources.append(("subtitles", subtitle_lines(c.subtitles, counts)))
    if c.literature.enabled:
        sources.append(("literature", literature_lines(c.literature, normalize, counts)))
    if not sources:
        raise InputError("markov: no source enabled (markov.subtitles.enabled, markov.literature.enabled)")
    for name, lines in sources:
        for line in lines:
            line = " ".join(line.split())
            if len(line) > c.max_line_chars:
                counts[f"dropped_{name}_too_long"] += 1
            elif len(split_pieces(line)) < c.min_pieces:
                counts[f"dropped_{name}_too_few_pieces"] += 1
            else:
                counts[f"kept_{name}"] += 1
                yield line


def markov(cfg: DictConfig, run: StageRun) -> None:
    c = cfg.markov
    from src.text.normalize import as_normalize_config, normalize_text

    ncfg = as_normalize_config(OmegaConf.to_container(cfg.normalize, resolve=True))
    counts: Counter[str] = Counter()
    start = time.perf_counter()
    bar = tqdm(corpus_lines(c, lambda text: normalize_text(text, ncfg), counts), desc="markov lines",
               unit="line", disable=None, file=sys.stderr)
    lines = list(bar)
    read_s = time.perf_counter() - start
    model = MarkovModel.build(lines, c.order, c.min_choices,
                              meta={"sources": {k: v for k, v in counts.items() if k.startswith("kept_")}})
    build_s = time.perf_counter() - read_s - start
    out_dir = resolve(c.out_dir)
    model.save(out_dir)

    g = c.generate
    samples = model.generate(c.report_samples, seed=cfg.seed, seeded_share=0.0, max_pieces=g.max_pieces,
                             rounds=g.rounds).texts if c.report_samples else []
    sizes = {"forward_states_per_order": np.diff(model.forward.first_state, append=model.forward.absorbing)
             .tolist(), "transitions": int(len(model.forward.next_ids) + len(model.backward.next_ids))}
    report = {"model": model.meta, "size": sizes, "counts": dict(sorted(counts.items())), "samples": samples}
    report_dir = resolve(c.report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(report_dir / "report.json", report)
    write_text_atomic(report_dir / "report.md", render_markdown(report))
    run.log_artifact(report_dir / "report.md")

    s = run.summary
    for key, n in sorted(counts.items()):
        bucket = "dropped" if key.startswith("dropped_") else "read"
        s.add(bucket, key.removeprefix("dropped_"), n)
    s.add("wrote", "model_lines", model.meta["lines"])
    s.add("wrote", "model_pieces", model.meta["pieces"])
    s.add("wrote", "vocab_size", model.meta["vocab_size"])
    s.timings.update({"read_s": read_s, "build_s": build_s})
    s.notes.append(f"model in {out_dir} (order {c.order}, min_choices {c.min_choices}); report in {report_dir}")
    run.log_metrics({"markov.lines": model.meta["lines"], "markov.vocab_size": model.meta["vocab_size"]})


def render_markdown(r: dict[str, Any]) -> str:
    m = r["model"]
    out = [f"# Markov writer: order {m['order']}, min_choices {m['min_choices']}", "",
           f"{m['lines']:,} lines, {m['pieces']:,} pieces, vocabulary {m['vocab_size']:,}; "
           f"forward states per order (0 = unigram): {r['size']['forward_states_per_order']}", "",
           "| count | n |", "|---|---|"]
    out += [f"| {k} | {v:,} |" for k, v in r["counts"].items()]
    out += ["", "## Sample lines (from line starts, fixed seed)", ""]
    out += [f"- {line}" for line in r["samples"]]
    return "\n".join(out) + "\n"
