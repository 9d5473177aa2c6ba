"""Part 3, SFT step throughput at the dialog48m shape: packed synthetic conversations (lengths around
a third of the context, the reply two thirds of each), per-conversation attention and the masked
step-normalized loss of SFTModule, through the same trainer as pretraining (src/bench/train.py)."""

from __future__ import annotations

from typing import Any

from src.bench import train as bench_train
from src.bench.gpu_suite.common import bench_args, on_gpu, timed_run
from src.bench.gpu_suite.config import compose_lite
from src.bench.gpu_suite.runner import PartContext


def pretrain_rate(ctx: PartContext, micro: int) -> float | None:
    """The pretrain part's dialog48m tokens/s at micro-batch `micro`, if it timed one."""
    trials = ctx.previous.get("pretrain", {}).get("dialog48m", {}).get("trials", [])
    rates = [t["tokens_per_s"] for t in trials if t.get("micro_batch") == micro and "tokens_per_s" in t]
    return rates[0] if rates else None


def run(ctx: PartContext) -> dict[str, Any]:
    gpu = on_gpu(ctx)
    micro = 32 if gpu else 2  # dialog48m's SFT recipe: micro-batch 32
    steps, warmup = (20, 5) if gpu else (2, 1)
    args = bench_args(ctx, "dialog48m", micro, [], steps, warmup, compile_model=gpu)
    args.sft = True
    cfg = bench_train.bench_config(args, compose_lite)
    block = int(cfg.model.block_size)
    windows = bench_train.sft_windows(args, int(cfg.model.vocab_size), block, cfg.seed)
    ctx.record(windows=len(windows), conversations=windows.conversations,
               padding_share=windows.padding_share)
    result = timed_run(ctx, args, windows)
    out = {k: result[k] for k in ("micro_batch", "tokens_per_step", "ms_per_step", "tokens_per_s", "precision",
                                  "compile", "params") if k in result}
    out.update({k: result[k] for k in ("mfu", "mfu_measured_peak") if k in result})
    out["padding_share"] = windows.padding_share
    base = pretrain_rate(ctx, micro)
    if base:
        out["pretrain_tokens_per_s_same_shape"] = base
        out["sft_vs_pretrain"] = result["tokens_per_s"] / base
    out["headline"] = (f"{result['tokens_per_s']:,.0f} tok/s at micro-batch {micro}"
                       + (f" ({100 * out['sft_vs_pretrain']:.0f}% of pretraining)" if base else "")
                       + f", {100 * windows.padding_share:.1f}% padding")
    return out
