"""Benchmark: tokenizer training time and encoding throughput on a folder of .txt files.

    python -m src.bench.tokenize [--root DIR] [--vocab N] [--workers 2] [--kind bpe|char]

Defaults to ../shared/data/corpus_ru (57 MB of Russian classics). Each .txt file becomes one document of
a temporary literature parquet; then the real stage functions run on it: `train_tokenizer` (the bpe16k
preset with the vocabulary from --vocab) and `tokenize` with --workers processes. Prints the figures and
writes them as JSON with --json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from omegaconf import OmegaConf

from src.config import load_config
from src.paths import CONF_DIR, shared_data_dir
from src.stage import StageRun
from src.tokenizers.encode import tokenize_corpus
from src.tokenizers.train import train_tokenizer

FALLBACK_ENCODING = "cp1251"  # corpus_ru has one windows-1251 file (see its PROVENANCE.md)


def write_corpus_parquet(root: Path, path: Path) -> dict[str, Any]:
    """One row per .txt file under `root` (doc_id = relative path), written file by file."""
    schema = pa.schema([("doc_id", pa.string()), ("text", pa.string()), ("n_chars", pa.int64())])
    files = sorted(root.rglob("*.txt"))
    if not files:
        raise SystemExit(f"error: no .txt files under {root}")
    stats = {"files": len(files), "bytes": 0, "chars": 0, "not_utf8": []}
    with pq.ParquetWriter(path, schema) as writer:
        for f in files:
            raw = f.read_bytes()
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                text = raw.decode(FALLBACK_ENCODING)
                stats["not_utf8"].append(str(f.relative_to(root)))
            stats["bytes"] += len(text.encode("utf-8"))
            stats["chars"] += len(text)
            writer.write_table(pa.table({"doc_id": [str(f.relative_to(root))], "text": [text],
                                         "n_chars": [len(text)]}, schema=schema))
    return stats


def bench_config(tmp: Path, kind: str, vocab: int, workers: int, preset: str) -> Any:
    tokenizer = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "tokenizer" / f"{preset}.yaml"))
    tokenizer.update({
        "kind": kind, "vocab_size": vocab if kind == "bpe" else 0, "corpora": ["literature"],
        "literature_path": str(tmp / "corpus.parquet"), "out_dir": str(tmp / "tokenizer"),
        "num_threads": max(1, workers),
    })
    tokenize = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "tokenize" / "default.yaml"),
                                      resolve=False)
    tokenize.update({
        "corpora": ["literature"], "tokenizer_dir": tokenizer["out_dir"],
        "out_dir": str(tmp / "tokens"), "workers": workers,
        "val_fraction": tokenizer["heldout_fraction"], "split_salt": tokenizer["split_salt"],
    })
    return load_config({"tracking": {"enabled": False}, "tokenizer": tokenizer, "tokenize": tokenize})


def run_bench(root: Path, kind: str, vocab: int, workers: int, preset: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-tokenize-") as tmp_name:
        tmp = Path(tmp_name)
        corpus = write_corpus_parquet(root, tmp / "corpus.parquet")
        cfg = bench_config(tmp, kind, vocab, workers, preset)

        started = time.perf_counter()
        tokenizer_run = StageRun("train_tokenizer", cfg, tracking_active=False)
        train_tokenizer(cfg, tokenizer_run)
        train_stage_s = time.perf_counter() - started
        report = json.loads((tmp / "tokenizer" / "report.json").read_text())

        started = time.perf_counter()
        tokenize_corpus(cfg, StageRun("tokenize", cfg, tracking_active=False))
        encode_s = time.perf_counter() - started
        meta = json.loads((tmp / "tokens" / "meta.json").read_text())

    splits = meta["splits"].values()
    n_tokens = sum(s["n_tokens"] for s in splits)
    n_bytes = sum(s["n_bytes"] for s in splits)
    return {
        "root": str(root), "kind": kind, "vocab_size": meta["vocab_size"], "workers": workers,
        "corpus_files": corpus["files"], "corpus_mb": corpus["bytes"] / 1e6,
        "corpus_chars": corpus["chars"], "not_utf8_files": corpus["not_utf8"],
        "train_tokenizer_stage_s": train_stage_s,
        "tokenizer_fit_s": tokenizer_run.summary.timings["train_seconds"],
        "tokenize_stage_s": encode_s,
        "tokenize_stage_mb_per_s": n_bytes / 1e6 / encode_s,
        "tokens": n_tokens,
        "chars_per_token_heldout": report["heldout"]["chars_per_token"],
        "bytes_per_token_heldout": report["heldout"]["bytes_per_token"],
        "roundtrip_heldout": f"{report['heldout']['docs_roundtrip_exact']}/{report['heldout']['docs']}",
        "fallback_rate_heldout": report["heldout"]["fallback_rate"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=None,
                        help="folder of .txt files (default: ../shared/data/corpus_ru)")
    parser.add_argument("--kind", choices=("bpe", "char"), default="bpe")
    parser.add_argument("--vocab", type=int, default=16000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--preset", default="bpe16k", help="conf/tokenizer/<preset>.yaml to start from")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    root = args.root or shared_data_dir() / "corpus_ru"
    if not root.is_dir():
        print(f"error: corpus folder {root} not found (pass --root)", file=sys.stderr)
        return 2
    figures = run_bench(root, args.kind, args.vocab, args.workers, args.preset)
    for key, value in figures.items():
        shown = f"{value:.3f}" if isinstance(value, float) else value
        print(f"{key:<28}{shown}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
