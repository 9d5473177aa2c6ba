"""What the training parts share: one timed run of the real Lightning loop through src/bench/train.py,
with its config composed without Hydra, on synthetic tokens; tiny shapes in the dry run."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

import torch

from src.bench import train as bench_train
from src.bench.gpu_suite.config import compose_lite
from src.bench.gpu_suite.runner import PartContext
from src.training.sft_data import PackedWindows

# The dry run's model: every training part at this shape on the CPU, seconds each.
TINY = ["model.n_layer=2", "model.n_head=2", "model.n_embd=64", "model.block_size=64", "model.vocab_size=512"]
# GPT-2 small (124M) on dialog48m's recipe, as nanoGPT benchmarks it: no dropout, vocab padded to 50304.
GPT2_124M = ["model.name=gpt2_124m", "model.n_layer=12", "model.n_head=12", "model.n_embd=768",
             "model.vocab_size=50304", "model.dropout=0.0"]


def on_gpu(ctx: PartContext) -> bool:
    return torch.cuda.is_available() and not ctx.dry_run


def device_name(ctx: PartContext) -> str:
    return "cuda" if on_gpu(ctx) else "cpu"


def measured_peak(ctx: PartContext) -> float | None:
    """FLOP/s of the machine part's measured bf16 matmul (None in a dry run or when it failed)."""
    machine = ctx.previous.get("machine", {})
    value = machine.get("matmul_tflops_measured") if machine.get("device", "cpu") != "cpu" else None
    return value * 1e12 if value else None


def bench_args(ctx: PartContext, preset: str, micro_batch: int, extra: list[str], steps: int,
               warmup: int, compile_model: bool) -> Any:
    argv = ["--preset", preset, "--device", device_name(ctx), "--micro-batch", str(micro_batch),
            "--steps", str(steps), "--warmup", str(warmup)]
    if compile_model:
        argv.append("--compile")
    if not on_gpu(ctx):
        argv += ["--threads", "1"]  # tiny shapes on a shared CPU: threads only wait for each other
    return bench_train.parse_args(argv + list(extra) + (TINY if ctx.dry_run else []))


def synthetic_tokens(ctx: PartContext, vocab: int) -> Path:
    """Random tokens in the tokenize stage's format under the part's scratch folder (one per vocabulary)."""
    directory = ctx.scratch / f"tokens_{vocab}"
    if not (directory / "meta.json").exists():
        directory.mkdir(parents=True, exist_ok=True)
        n = 50_000 if ctx.dry_run else bench_train.SYNTHETIC_TOKENS
        bench_train.write_synthetic(directory, vocab, n, seed=0)
    return directory


def fresh_compile_state() -> None:
    """Each trial compiles its own model at static shapes: a batch size is timed with the kernels
    made for it (no dynamic-shape recompile), and earlier trials' guards do not count toward
    Dynamo's recompile limit (hitting it would run the model eagerly, silently)."""
    import torch._dynamo

    torch._dynamo.reset()
    torch._dynamo.config.automatic_dynamic_shapes = False
    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(torch._dynamo.config, name):
            setattr(torch._dynamo.config, name, 64)
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


def timed_run(ctx: PartContext, args: Any, windows: PackedWindows | None = None) -> dict[str, Any]:
    """One run of the real trainer (src/bench/train.py `run`): its figures plus MFU against the
    measured matmul peak as well as the data sheet's."""
    fresh_compile_state()
    cfg = bench_train.bench_config(args, compose_lite)
    vocab = cfg.model.vocab_size or args.vocab
    result = dict(bench_train.run(args, synthetic_tokens(ctx, vocab), windows, cfg))
    peak = measured_peak(ctx)
    if peak:
        result["mfu_measured_peak"] = result["flops_per_token"] * result["tokens_per_s"] / peak
    return result
