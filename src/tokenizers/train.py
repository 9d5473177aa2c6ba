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
from pathlib import Path
from typing import Any, TextIO

from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from src.paths import resolve
from src.stage import StageRun
from src.tokenizers.base import Tokenizer, TokenizerError, replace_directory
from src.tokenizers.corpus import corpus_sources, iter_documents
from src.tokenizers.report import report_metrics, tokenizer_report, write_report
from src.tokenizers.split import is_val

KINDS = ("bpe", "char")


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


def _write_training_lines(out: TextIO, text: str, max_bytes: int, counts: Counter[str]) -> None:
    for line in text.split("\n"):
        if not line.strip():
            continue  # blank lines teach BPE nothing; "\n" itself is an atomic symbol
        pieces = cut_line(line, max_bytes)
        counts["lines_cut"] += len(pieces) > 1
        for piece in pieces:
            out.write(piece)
            out.write("\n")
        counts["lines"] += len(pieces)


def _train(tcfg: Any, seed: int, text_file: Path, char_counts: Counter[str],
           normalize_cfg: dict[str, Any] | None) -> Tokenizer:
    if tcfg.kind == "bpe":
        from src.tokenizers.bpe import train_bpe

        return train_bpe(text_file, tcfg, seed, normalize_cfg)
    from src.tokenizers.char import train_char

    return train_char(char_counts, tcfg.vocab_size, tcfg.char_min_count, normalize_cfg)


def train_tokenizer(cfg: DictConfig, run: StageRun) -> None:
    tcfg = cfg.tokenizer
    if tcfg.kind not in KINDS:
        raise TokenizerError(f"tokenizer.kind={tcfg.kind!r}: expected one of {list(KINDS)}")
    sources = corpus_sources(tcfg, list(tcfg.corpora))
    normalize_cfg = OmegaConf.to_container(cfg.normalize) if tcfg.normalize_on_encode else None
    out_dir = resolve(tcfg.out_dir)
    heldout, train_sample = TextSample(tcfg.report_max_chars), TextSample(tcfg.report_max_chars)
    counts: Counter[str] = Counter()
    char_counts: Counter[str] = Counter()
    notes: list[str] = []

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        text_file = staging / "training_text.txt"
        with text_file.open("w", encoding="utf-8", newline="\n", errors="surrogatepass") as out:
            docs = iter_documents(sources, notes)
            for doc in tqdm(docs, desc="tokenizer text", unit="doc", disable=None, file=sys.stderr):
                run.summary.add("read", f"{doc.corpus}_docs")
                if not doc.text.strip():
                    run.summary.add("dropped", "whitespace_only_doc")
                    continue
                if is_val(doc.doc_id, tcfg.heldout_fraction, tcfg.split_salt):
                    heldout.add(doc.text)
                    counts["heldout_docs"] += 1
                    continue
                counts["train_docs"] += 1
                counts["train_chars"] += len(doc.text)
                train_sample.add(doc.text)
                if tcfg.kind == "char":
                    char_counts.update(doc.text)
                else:
                    _write_training_lines(out, doc.text, tcfg.max_sentence_length, counts)
        if counts["train_docs"] == 0:
            where = ", ".join(f"{s.path} ({s.config_key})" for s in sources)
            raise TokenizerError(f"empty corpus: no non-blank training document in {where} "
                                 f"({counts['heldout_docs']} held out)")
        started = time.perf_counter()
        tokenizer = _train(tcfg, cfg.seed, text_file, char_counts, normalize_cfg)
        seconds = time.perf_counter() - started
        text_file.unlink()
        tokenizer.save(staging)

        use_heldout = bool(heldout.texts)
        if not use_heldout:
            notes.append("no held-out documents (tiny corpus?): the report measures training text")
        training = {
            "seconds": seconds, "docs": counts["train_docs"], "chars": counts["train_chars"],
            "lines": counts["lines"], "lines_cut": counts["lines_cut"],
            "corpora": [s.name for s in sources], "notes": notes,
        }
        report = tokenizer_report(
            tokenizer, heldout.texts if use_heldout else train_sample.texts, not use_heldout, training)
        write_report(report, staging)
        replace_directory(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise

    run.summary.add("read", "heldout_docs", counts["heldout_docs"])
    run.summary.add("read", "training_chars", counts["train_chars"])
    run.summary.add("wrote", "vocab_size", tokenizer.vocab_size)
    run.summary.notes.extend(notes)
    held = report["heldout"]
    run.summary.notes.append(
        f"{tokenizer.kind} tokenizer in {out_dir}: {held['chars_per_token']:.2f} chars/token, "
        f"round trip {held['docs_roundtrip_exact']}/{held['docs']}, "
        f"fallback rate {held['fallback_rate']:.5f}, trained in {seconds:.1f}s")
    run.log_metrics(report_metrics(report))
    run.log_artifact(out_dir / "report.json")
    run.log_artifact(out_dir / "report.md")
    run.log_artifact(out_dir / "tokenizer.json")
