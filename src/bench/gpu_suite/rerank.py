"""Part 6, the reranker: scoring 4,096 candidates of about 40 tokens for one context with the `own`
cross-encoder of conf/reranker/sample.yaml (random weights: the time does not depend on them),
through src/bench/rerank.py's candidates and context and `Reranker.score`. On the GPU at the
default batch (512) and in one batch of 4,096; median of the timed runs after a warm-up."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import torch

from src.bench.gpu_suite.common import on_gpu
from src.bench.gpu_suite.runner import PartContext
from src.bench.rerank import CONTEXT, candidate_texts, default_reranker
from src.generation.reranker import Reranker
from src.tokenizers import load_tokenizer
from src.tokenizers.char import CharTokenizer

AIM_MS = 100.0
DRY_CHARS = "abcdefghijklmnopqrstuvwxyz .,?!'ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def median_seconds(reranker: Reranker, candidates: list[str], batch_size: int, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        if reranker.device.type == "cuda":
            torch.cuda.synchronize()
        began = time.perf_counter()
        reranker.score(CONTEXT, candidates, batch_size=batch_size)
        if reranker.device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - began)
    return times


def run(ctx: PartContext) -> dict[str, Any]:
    gpu = on_gpu(ctx)
    tokenizer_dir = ctx.options.get("tokenizer_dir")
    if tokenizer_dir and Path(tokenizer_dir).is_dir() and not ctx.dry_run:
        tokenizer, which = load_tokenizer(Path(tokenizer_dir)), str(tokenizer_dir)
    else:
        tokenizer, which = CharTokenizer(DRY_CHARS), "characters (no BPE tokenizer given)"
    n, tokens, repeats = (4096, 40, 5) if gpu else (64, 40, 2)
    reranker = default_reranker("cuda" if gpu else "cpu", 512, "auto", tokenizer=tokenizer)
    candidates = candidate_texts(reranker, n, tokens)
    lengths = [len(tokenizer.encode(c)) for c in candidates]
    out: dict[str, Any] = {"tokenizer": which, "params": reranker.model.num_params(),
                           "precision": reranker.precision, "candidates": n,
                           "mean_candidate_tokens": sum(lengths) / n, "runs": []}
    for batch in (512, n) if gpu else (16, n):
        reranker.score(CONTEXT, candidates[:batch], batch_size=batch)  # warm-up at this batch size
        times = median_seconds(reranker, candidates, batch, repeats)
        out["runs"].append({"batch_size": batch, "median_ms": 1000 * statistics.median(times),
                            "min_ms": 1000 * min(times)})
        ctx.record(**out)
    best = min(out["runs"], key=lambda r: r["median_ms"])
    if gpu:
        out["aim_met"] = best["median_ms"] <= AIM_MS
    out["headline"] = f"{n:,} candidates in {best['median_ms']:.1f} ms (batch {best['batch_size']})"
    return out
