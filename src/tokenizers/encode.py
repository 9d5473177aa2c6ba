"""Stage `tokenize`: encode the corpora into flat token memmaps `train.bin` / `val.bin` + `meta.json`.

Two streamed passes over the parquet files: the first lists document ids (and drops blank documents), so
the hash split can fall back sensibly on tiny corpora; the second cuts documents into chunks of about
`chunk_chars` characters (long documents at line breaks only: they are atomic tokens, so the cut
changes no token), encodes them in `workers` processes with a bounded number in flight, and appends the results in
submission order: the output does not depend on the number of workers. Each document is followed by
the end-of-text id.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from omegaconf import DictConfig
from tqdm import tqdm

from src.atomic_io import replace_directory, write_json_atomic
from src.paths import resolve
from src.stage import StageRun
from src.tokenizers import load_tokenizer
from src.tokenizers.base import Tokenizer, TokenizerError
from src.tokenizers.corpus import CorpusError, corpus_sources, iter_documents
from src.tokenizers.split import BOTH, TRAIN, VAL, assign_splits
from src.worker_pool import process_pool

SPLITS = (TRAIN, VAL)
UINT16_MAX_VOCAB = 65535  # uint16 holds ids < 65536; larger vocabularies get uint32 files


def token_dtype(vocab_size: int, choice: str) -> np.dtype:
    if choice == "auto":
        return np.dtype(np.uint16 if vocab_size <= UINT16_MAX_VOCAB else np.uint32)
    if choice not in ("uint16", "uint32"):
        raise TokenizerError(f"tokenize.dtype={choice!r}: expected auto, uint16 or uint32")
    if choice == "uint16" and vocab_size > UINT16_MAX_VOCAB + 1:
        raise TokenizerError(f"tokenize.dtype=uint16 cannot hold vocab_size={vocab_size}")
    return np.dtype(choice)


# --- worker side --------------------------------------------------------------------------------

_worker_tokenizer: Tokenizer | None = None


def _init_worker(tokenizer_dir: str) -> None:
    global _worker_tokenizer
    _worker_tokenizer = load_tokenizer(tokenizer_dir)


@dataclass
class EncodedChunk:
    tokens: np.ndarray
    n_chars: int
    n_bytes: int
    n_fallback: int
    unknown: dict[str, int]


def encode_chunk(pieces: list[tuple[str, bool]], dtype: str) -> EncodedChunk:
    """Encode (text, ends_document) pieces; an end-of-text id follows each document's last piece."""
    tok = _worker_tokenizer
    assert tok is not None, "worker tokenizer not initialized"
    arrays, n_chars, n_bytes, unknown = [], 0, 0, Counter()
    eot = np.array([tok.eot_id], dtype=np.int64)
    for text, ends_doc in pieces:
        arrays.append(tok.encode_array(text))
        if ends_doc:
            arrays.append(eot)
        n_chars += len(text)
        n_bytes += len(text.encode("utf-8", errors="surrogatepass"))
        if hasattr(tok, "unknown_chars"):
            unknown.update(tok.unknown_chars(text))
    ids = np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.int64)
    n_fallback = int(tok.fallback_mask(ids).sum())
    return EncodedChunk(ids.astype(dtype), n_chars, n_bytes, n_fallback, dict(unknown))


# --- main side ----------------------------------------------------------------------------------

@dataclass
class SplitWriter:
    path: Path
    file: BinaryIO
    n_tokens: int = 0
    n_chars: int = 0
    n_bytes: int = 0
    n_docs: int = 0
    n_fallback: int = 0
    unknown: Counter[str] = field(default_factory=Counter)

    def write(self, chunk: EncodedChunk) -> None:
        self.file.write(chunk.tokens.tobytes())
        self.n_tokens += len(chunk.tokens)
        self.n_chars += chunk.n_chars
        self.n_bytes += chunk.n_bytes
        self.n_fallback += chunk.n_fallback
        self.unknown.update(chunk.unknown)

    def meta(self) -> dict[str, Any]:
        return {"file": self.path.name, "n_tokens": self.n_tokens, "n_bytes": self.n_bytes,
                "n_docs": self.n_docs}


def cut_at_newlines(text: str, max_chars: int) -> Iterator[str]:
    """Consecutive parts of `text` of about `max_chars`, each ending just after a newline.

    Only newlines cut: they are atomic tokens, so encoding the parts gives exactly the ids of encoding
    the whole. A single line longer than `max_chars` stays in one part.
    """
    start = 0
    while len(text) - start > max_chars:
        cut = text.rfind("\n", start, start + max_chars)
        if cut < start:
            cut = text.find("\n", start + max_chars)
            if cut < 0:
                break
        yield text[start:cut + 1]
        start = cut + 1
    yield text[start:]


def _plan(sources: list, val_fraction: float, salt: str, run: StageRun,
          notes: list[str]) -> tuple[dict[str, str], int]:
    """Pass 1: the split of every non-blank document, and the total characters to encode."""
    ids: list[str] = []
    seen: set[str] = set()
    total_chars = 0
    docs = iter_documents(sources, notes)
    for doc in tqdm(docs, desc="tokenize: listing", unit="doc", disable=None, file=sys.stderr):
        run.summary.add("read", f"{doc.corpus}_docs")
        if not doc.text.strip():
            run.summary.add("dropped", "whitespace_only_doc")
            continue
        if doc.doc_id in seen:
            # Same id, same hash: both copies land in one split; counted so it does not go unnoticed.
            run.summary.add("read", "duplicate_doc_id")
        else:
            seen.add(doc.doc_id)
            ids.append(doc.doc_id)
        total_chars += len(doc.text)
    if not ids:
        where = ", ".join(f"{s.path} ({s.config_key})" for s in sources)
        raise CorpusError(f"empty corpus: no non-blank document in {where}")
    splits, split_notes = assign_splits(ids, val_fraction, salt)
    notes.extend(split_notes)
    return splits, total_chars


def tokenize_corpus(cfg: DictConfig, run: StageRun) -> None:
    kcfg = cfg.tokenize
    tokenizer_dir = resolve(kcfg.tokenizer_dir)
    tok = load_tokenizer(tokenizer_dir)
    dtype = token_dtype(tok.vocab_size, kcfg.dtype)
    sources = corpus_sources(cfg.tokenizer, list(kcfg.corpora))
    if kcfg.chunk_chars <= 0:
        raise TokenizerError(f"tokenize.chunk_chars={kcfg.chunk_chars}: must be positive")
    notes: list[str] = []
    splits, total_chars = _plan(sources, kcfg.val_fraction, kcfg.split_salt, run, notes)

    out_dir = resolve(kcfg.out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    writers: dict[str, SplitWriter] = {}
    try:
        for name in SPLITS:
            path = staging / f"{name}.bin"
            writers[name] = SplitWriter(path, path.open("wb"))
        _encode_all(kcfg, tok, tokenizer_dir, dtype, sources, splits, writers, total_chars)
        for w in writers.values():
            w.file.close()
        meta = _meta(kcfg, tok, dtype, writers, notes)
        write_json_atomic(staging / "meta.json", meta)
        write_json_atomic(staging / "report.json", _report(kcfg, tok, writers, run, notes))
        replace_directory(staging, out_dir)
    except BaseException:
        for w in writers.values():
            w.file.close()
        shutil.rmtree(staging, ignore_errors=True)
        raise

    for name, w in writers.items():
        run.summary.add("wrote", f"{name}_docs", w.n_docs)
        run.summary.add("wrote", f"{name}_tokens", w.n_tokens)
    n_unknown = sum(sum(w.unknown.values()) for w in writers.values())
    if n_unknown:
        run.summary.add("dropped", "unknown_chars_encoded_as_unk", n_unknown)
        notes.append(f"{n_unknown} characters are outside the {tok.kind} vocabulary and became <unk>; "
                     f"see {out_dir / 'report.json'}")
    run.summary.notes.extend(notes)
    metrics = {f"tokens.{name}.{k}": v for name, w in writers.items()
               for k, v in w.meta().items() if k != "file"}
    run.log_metrics(metrics)
    run.log_artifact(out_dir / "meta.json")
    run.log_artifact(out_dir / "report.json")


def _encode_all(kcfg: Any, tok: Tokenizer, tokenizer_dir: Path, dtype: np.dtype, sources: list,
                splits: dict[str, str], writers: dict[str, SplitWriter], total_chars: int) -> None:
    """Pass 2: chunk documents per split, encode (in parallel), append in submission order."""
    buffers: dict[str, list[tuple[str, bool]]] = {name: [] for name in SPLITS}
    sizes = dict.fromkeys(SPLITS, 0)
    pending: deque[tuple[str, Future | EncodedChunk, int]] = deque()
    workers = max(0, kcfg.workers)
    max_pending = max(1, workers * kcfg.pending_per_worker)
    bar = tqdm(total=total_chars, desc="tokenize: encoding", unit="char", unit_scale=True,
               disable=None, file=sys.stderr)
    pool = None
    if workers:
        # process_pool: the workers die with this process, even when it is killed.
        pool = process_pool(workers, _init_worker, (str(tokenizer_dir),), start_method="spawn")
    else:
        _init_worker(str(tokenizer_dir))

    def drain(limit: int) -> None:
        while len(pending) > limit:
            name, job, n_chars = pending.popleft()
            writers[name].write(job.result() if isinstance(job, Future) else job)
            bar.update(n_chars)

    def submit(name: str) -> None:
        chunk, n_chars = buffers[name], sizes[name]
        buffers[name], sizes[name] = [], 0
        if not chunk:
            return
        job = pool.submit(encode_chunk, chunk, dtype.str) if pool else encode_chunk(chunk, dtype.str)
        pending.append((name, job, n_chars))
        drain(max_pending)

    try:
        for doc in iter_documents(sources):
            split = splits.get(doc.doc_id)
            if split is None or not doc.text.strip():
                continue  # blank: dropped and counted in pass 1
            for name in (TRAIN, VAL) if split == BOTH else (split,):
                writers[name].n_docs += 1
                parts = list(cut_at_newlines(doc.text, kcfg.chunk_chars))
                for k, part in enumerate(parts):
                    buffers[name].append((part, k == len(parts) - 1))
                    sizes[name] += len(part)
                    if sizes[name] >= kcfg.chunk_chars:
                        submit(name)
        for name in SPLITS:
            submit(name)
        drain(0)
    finally:
        bar.close()
        if pool:
            pool.shutdown(cancel_futures=True)


def _meta(kcfg: Any, tok: Tokenizer, dtype: np.dtype, writers: dict[str, SplitWriter],
          notes: list[str]) -> dict[str, Any]:
    return {
        "vocab_size": tok.vocab_size,
        "dtype": dtype.name,
        "eot_id": tok.eot_id,
        "eot_placement": "after every document",
        "splits": {name: w.meta() for name, w in writers.items()},
        "tokenizer": {"kind": tok.kind, "dir": str(kcfg.tokenizer_dir), "sha256": tok.sha256},
        "val_fraction": kcfg.val_fraction,
        "notes": notes,
    }


def _report(kcfg: Any, tok: Tokenizer, writers: dict[str, SplitWriter], run: StageRun,
            notes: list[str]) -> dict[str, Any]:
    unknown: Counter[str] = Counter()
    for w in writers.values():
        unknown.update(w.unknown)
    return {
        "read": dict(run.summary.read),
        "dropped": dict(run.summary.dropped),
        "splits": {
            name: {**w.meta(), "n_chars": w.n_chars, "fallback_tokens": w.n_fallback,
                   "fallback_rate": w.n_fallback / w.n_tokens if w.n_tokens else 0.0,
                   # Per token, end-of-text ids included.
                   "chars_per_token": w.n_chars / w.n_tokens if w.n_tokens else 0.0,
                   "bytes_per_token": w.n_bytes / w.n_tokens if w.n_tokens else 0.0}
            for name, w in writers.items()
        },
        "unknown_chars_total": sum(unknown.values()),
        "unknown_chars": dict(unknown.most_common(kcfg.report_top_unknown)),
        "tokenizer_kind": tok.kind,
        "notes": notes,
    }
