"""Part 4, decoding dialog48m (random weights; the time does not depend on them) through the
generation engine: time to first token, batch-1 tokens/s (on a GPU: the static-cache step captured
as a CUDA graph, compiled first), batch-64 tokens/s. Timing as src/bench/generate.py does it."""

from __future__ import annotations

from typing import Any

import torch

from src.bench.generate import build_model, time_generation
from src.bench.gpu_suite.common import on_gpu
from src.bench.gpu_suite.runner import PartContext
from src.generation.engine import Engine

AIM_BATCH1 = 5000.0
TINY_MODEL = {"n_layer": 2, "n_head": 2, "n_embd": 64, "block_size": 128, "vocab_size": 512}


def run(ctx: PartContext) -> dict[str, Any]:
    gpu = on_gpu(ctx)
    device = torch.device("cuda" if gpu else "cpu")
    model = build_model("dialog48m", None if gpu else TINY_MODEL)
    vocab = model.cfg["vocab_size"]
    prompt_len, new_tokens, batch, batch_new, repeats = (64, 256, 64, 64, 3) if gpu else (8, 8, 4, 4, 1)
    engine = Engine(model, precision="auto", device=device)
    out: dict[str, Any] = {"params": model.num_params(), "precision": engine.precision,
                           "cuda_graphs": engine.use_cuda_graphs, "compiled_step": engine.compile_model,
                           "prompt_tokens": prompt_len, "new_tokens": new_tokens}
    ctx.record(**out)
    for b in (1, batch):  # warm-up: allocations, compilation, graph capture per batch size
        time_generation(engine, b, prompt_len, 4, vocab, 1)
    ttft, rate1 = time_generation(engine, 1, prompt_len, new_tokens, vocab, repeats)
    out.update(ttft_ms=1000 * ttft, batch1_tokens_per_s=rate1)
    ctx.record(**out)
    _, rate_n = time_generation(engine, batch, prompt_len, batch_new, vocab, max(1, repeats - 1))
    out.update({"batch": batch, f"batch{batch}_tokens_per_s": rate_n})
    if gpu:
        out["aim_batch1_met"] = rate1 >= AIM_BATCH1
    out["headline"] = (f"first token {1000 * ttft:.1f} ms, batch 1 {rate1:,.0f} tok/s, "
                       f"batch {batch} {rate_n:,.0f} tok/s")
    return out
