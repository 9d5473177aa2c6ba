"""Reranker benchmark: time to score N candidates (default 4,096 of about 40 tokens) for one context.

    python -m src.bench.rerank [--reranker DIR] [--n 4096] [--tokens 40] [--batch-size 512]
                               [--threads 2] [--device cpu|cuda] [--repeats 3] [--precision auto]

Without --reranker it builds the `own` cross-encoder of `conf/reranker/sample.yaml` (the default
size) with random weights and the pipeline tokenizer (`data/tokenizer`): the time does not depend on
the weights. Candidates are built from the cleaned subtitle lines (words of the sample corpus when
data/clean/subtitles.parquet is absent), each cut to --tokens tokens of that tokenizer; the context
is three lines. Prints the median wall time of `Reranker.score` over --repeats runs after a warm-up.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from src.generation.reranker import Reranker, load_reranker
from src.paths import CONF_DIR, resolve

CONTEXT = ["Where were you last night?", "At the station. The train was late again.", "Again?"]


def candidate_texts(reranker: Reranker, n: int, tokens: int) -> list[str]:
    """n different texts of about `tokens` tokens each, from subtitle lines when there are some."""
    words: list[str] = []
    subs = resolve("data/clean/subtitles.parquet")
    if subs.is_file():
        import pyarrow.parquet as pq

        words = " ".join(pq.read_table(subs, columns=["text"]).column("text").to_pylist()).split()
    if len(words) < 50:
        words = "the train was late again and nobody told us why we waited at the station".split()
    tok = reranker.model.tokenizer
    out: list[str] = []
    i = 0
    while len(out) < n:
        piece: list[str] = []
        while True:
            piece.append(words[i % len(words)])
            i += 1
            text = " ".join(piece)
            count = len(tok.encode(text)) if hasattr(tok, "encode") else len(tok(text)["input_ids"])
            if count >= tokens:
                break
        out.append(text)
        i += len(out) % 7  # shift the start so candidates differ
    return out


def default_reranker(device: str, batch_size: int, precision: str = "auto", tokenizer: Any = None) -> Reranker:
    """The `own` reranker at the default size (conf/reranker/sample.yaml), random weights, with
    `tokenizer` (default: the pipeline's data/tokenizer)."""
    from src.models.cross_encoder import OwnCrossEncoder
    from src.tokenizers import load_tokenizer

    cfg = OmegaConf.load(CONF_DIR / "reranker" / "sample.yaml")
    tokenizer = tokenizer if tokenizer is not None else load_tokenizer(resolve("data/tokenizer"))
    model_cfg = OmegaConf.to_container(cfg.model)
    assert isinstance(model_cfg, dict)
    model_cfg["vocab_size"] = model_cfg["vocab_size"] or tokenizer.vocab_size
    torch.manual_seed(0)
    model = OwnCrossEncoder(model_cfg, str(cfg.pooling))
    model.attach_tokenizer(tokenizer)
    return Reranker(model, device, batch_size, precision)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reranker", type=Path, default=None, help="an export directory (default: random own model)")
    ap.add_argument("--n", type=int, default=4096)
    ap.add_argument("--tokens", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    reranker = (load_reranker(args.reranker, args.device, args.batch_size, args.precision) if args.reranker
                else default_reranker(args.device, args.batch_size, args.precision))
    candidates = candidate_texts(reranker, args.n, args.tokens)
    model = reranker.model
    print(f"reranker: {model.config_dict()['backbone']}, {model.num_params():,} parameters, device "
          f"{args.device} ({reranker.precision}), {torch.get_num_threads()} threads; {len(candidates)} candidates of "
          f"~{args.tokens} tokens, batch {args.batch_size}")
    reranker.score(CONTEXT, candidates[: args.batch_size])  # warm-up
    times = []
    for _ in range(args.repeats):
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        scores = reranker.score(CONTEXT, candidates)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    best = int(scores.argmax())
    print(f"score {len(candidates)} candidates: median {statistics.median(times):.3f} s "
          f"(runs: {', '.join(f'{t:.3f}' for t in times)}); {len(candidates) / statistics.median(times):,.0f} "
          f"candidates/s; top: {candidates[best][:60]!r} ({scores[best]:.3f})")


if __name__ == "__main__":
    main()
