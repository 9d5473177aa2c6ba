"""Stage `train_tokenizer`: train the configured tokenizer on the chosen cleaned corpora.

Documents stream from parquet: BPE training lines go to a temporary text file (SentencePiece samples at
most `input_sentence_size` of them), the char kind only counts characters. Held-out documents (by the
same id hash as the tokenize stage's val split) are kept out of training and measured in the report.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from src.atomic_io import replace_directory
from src.paths import resolve
from src.stage import StageRun
from src.tokenizers.base import Tokenizer, TokenizerError
from src.tokenizers.char import update_char_counts
from src.tokenizers.corpus import CorpusError, corpus_sources, iter_documents
from src.tokenizers.report import report_metrics, tokenizer_report, write_report
from src.tokenizers.split import is_val

KINDS = ("bpe", "char")
TRAIN, HELDOUT = "train", "heldout"
PARTS = (TRAIN, HELDOUT)


class TextSample:
    """Whole texts up to a character budget (the last one cut), for the report; memory stays bounded."""

    def __init__(self, max_chars: int) -> None:
        self.max_chars = max_chars
        self.texts: list[str] = []
        self.chars = 0

    def add(self, text: str) -> None:
        room = self.max_chars - self.chars
        if room > 0:
            self.texts.append(text[:room])
            self.chars += min(room, len(text))


def cut_line(line: str, max_bytes: int) -> list[str]:
    """Pieces of at most `max_bytes` UTF-8 bytes, cut just before a space where possible.

    SentencePiece skips training lines longer than `max_sentence_length` bytes; cutting keeps their text.
    """
    if len(line) * 4 <= max_bytes or len(line.encode("utf-8")) <= max_bytes:
        return [line]
    window = max(1, max_bytes // 4)  # chars that surely fit: UTF-8 needs at most 4 bytes per char
    pieces, start = [], 0
    while start < len(line):
        end = min(len(line), start + window)
        if end < len(line):
            space = line.rfind(" ", start + 1, end)
            end = space if space > start else end
        pieces.append(line[start:end])
        start = end
    return pieces


def _write_training_lines(out: TextIO, text: str, max_bytes: int, counts: Counter[str],
                          prefix: str) -> None:
    for line in text.split("\n"):
        if not line.strip():
            continue  # blank lines teach BPE nothing; "\n" itself is an atomic symbol
        pieces = cut_line(line, max_bytes)
        counts[f"{prefix}lines_cut"] += len(pieces) > 1
        for piece in pieces:
            out.write(piece)
            out.write("\n")
        counts[f"{prefix}lines"] += len(pieces)


def _train(tcfg: Any, seed: int, text_file: Path, char_counts: Counter[str],
           normalize_cfg: dict[str, Any] | None) -> Tokenizer:
    if tcfg.kind == "bpe":
        from src.tokenizers.bpe import train_bpe

        return train_bpe(text_file, tcfg, seed, normalize_cfg)
    from src.tokenizers.char import train_char

    return train_char(char_counts, tcfg.vocab_size, tcfg.char_min_count, normalize_cfg)


@dataclass
class CorpusText:
    """What one pass over the corpora collected for training (`train`) and for the report (`heldout`)."""

    files: dict[str, Path]  # part -> BPE training lines
    chars: dict[str, Counter[str]] = field(default_factory=lambda: {p: Counter() for p in PARTS})
    counts: Counter[str] = field(default_factory=Counter)  # "<part>_docs", "<part>_chars", ...
    samples: dict[str, TextSample] = field(default_factory=dict)


def _collect(tcfg: Any, sources: list, staging: Path, run: StageRun, notes: list[str]) -> CorpusText:
    """Stream the documents once: held-out ones by id hash, training lines to files, char counts."""
    text = CorpusText({p: staging / f"{p}_text.txt" for p in PARTS},
                      samples={p: TextSample(tcfg.report_max_chars) for p in PARTS})
    with ExitStack() as stack:
        outs = {p: stack.enter_context(f.open("w", encoding="utf-8", newline="\n",
                                              errors="surrogatepass")) for p, f in text.files.items()}
        docs = iter_documents(sources, notes)
        for doc in tqdm(docs, desc="tokenizer text", unit="doc", disable=None, file=sys.stderr):
            run.summary.add("read", f"{doc.corpus}_docs")
            if not doc.text.strip():
                run.summary.add("dropped", "whitespace_only_doc")
                continue
            held = is_val(doc.doc_id, tcfg.heldout_fraction, tcfg.split_salt)
            part = HELDOUT if held else TRAIN
            text.counts[f"{part}_docs"] += 1
            text.counts[f"{part}_chars"] += len(doc.text)
            text.samples[part].add(doc.text)
            if tcfg.kind == "char":
                update_char_counts(text.chars[part], doc.text)
            else:
                _write_training_lines(outs[part], doc.text, tcfg.max_sentence_length,
                                      text.counts, prefix=f"{part}_")
    return text


def train_tokenizer(cfg: DictConfig, run: StageRun) -> None:
    tcfg = cfg.tokenizer
    if tcfg.kind not in KINDS:
        raise TokenizerError(f"tokenizer.kind={tcfg.kind!r}: expected one of {list(KINDS)}")
    sources = corpus_sources(tcfg, list(tcfg.corpora))
    normalize_cfg = OmegaConf.to_container(cfg.normalize) if tcfg.normalize_on_encode else None
    out_dir = resolve(tcfg.out_dir)
    notes: list[str] = []
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        text = _collect(tcfg, sources, staging, run, notes)
        counts = text.counts
        if counts[f"{TRAIN}_docs"] + counts[f"{HELDOUT}_docs"] == 0:
            where = ", ".join(f"{s.path} ({s.config_key})" for s in sources)
            raise CorpusError(f"empty corpus: no non-blank document in {where}")
        # A corpus so tiny that every document is held out still trains (on those documents).
        part, measured = TRAIN, HELDOUT
        if counts[f"{TRAIN}_docs"] == 0:
            part = HELDOUT
            notes.append(f"all {counts[f'{HELDOUT}_docs']} documents are held out "
                         f"(tokenizer.heldout_fraction={tcfg.heldout_fraction}): trained on them")
        if part == HELDOUT or counts[f"{HELDOUT}_docs"] == 0:
            measured = part
            notes.append("no held-out documents apart from the training ones: the report measures "
                         "training text")
        started = time.perf_counter()
        tokenizer = _train(tcfg, cfg.seed, text.files[part], text.chars[part], normalize_cfg)
        seconds = time.perf_counter() - started
        for path in text.files.values():
            path.unlink()
        tokenizer.save(staging)
        # No wall-clock time in the report: data/tokenizer is a DVC output and its hash must depend
        # on content only (the time goes to the stage summary's timings instead).
        run.summary.timings["train_seconds"] = seconds
        training = {
            "docs": counts[f"{part}_docs"], "chars": counts[f"{part}_chars"],
            "lines": counts[f"{part}_lines"], "lines_cut": counts[f"{part}_lines_cut"],
            "corpora": [s.name for s in sources], "notes": notes,
        }
        report = tokenizer_report(tokenizer, text.samples[measured].texts, measured == part, training)
        write_report(report, staging)
        replace_directory(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _finish(run, out_dir, tokenizer, report, counts, part, notes)


def _finish(run: StageRun, out_dir: Path, tokenizer: Tokenizer, report: dict[str, Any],
            counts: Counter[str], part: str, notes: list[str]) -> None:
    run.summary.add("read", "heldout_docs", counts[f"{HELDOUT}_docs"])
    run.summary.add("read", "training_chars", counts[f"{part}_chars"])
    run.summary.add("wrote", "vocab_size", tokenizer.vocab_size)
    run.summary.notes.extend(notes)
    held = report["heldout"]
    run.summary.notes.append(
        f"{tokenizer.kind} tokenizer in {out_dir}: {held['chars_per_token']:.2f} chars/token, "
        f"round trip {held['docs_roundtrip_exact']}/{held['docs']}, "
        f"fallback rate {held['fallback_rate']:.5f}")
    run.log_metrics(report_metrics(report))
    for name in ("report.json", "report.md", "tokenizer.json"):
        run.log_artifact(out_dir / name)
