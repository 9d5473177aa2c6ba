"""A short torch.profiler look at the pretraining step, so a missed aim comes with its bottleneck.

A bare forward/backward/clip/optimizer loop on the model, optimizer and precision the benchmark's
trainer builds (src/bench/train.py `run`), on random tokens already on the device: the input pipeline
and Lightning are left out on purpose, so the gap between the trainer's ms/step and this loop's is
theirs. Ops are ranked by self device time (self CPU time on the CPU): every kernel counts once,
for the innermost op that launched it (a compiled model's Triton kernels are ops of their own).
"""

from __future__ import annotations

import gzip
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import torch
from omegaconf import OmegaConf

from src.bench import train as bench_train
from src.bench.gpu_suite.common import fresh_compile_state, synthetic_tokens
from src.bench.gpu_suite.config import compose_lite
from src.bench.gpu_suite.runner import PartContext
from src.training.data import read_meta
from src.training.module import PretrainModule
from src.training.pretrain import model_config, set_torch_globals

TOP_OPS = 10
# Matrix products and attention (whose time is its matmuls): what a well-fed GPU should mostly run.
MATMUL_LIKE = re.compile(r"aten::(mm|addmm|bmm|baddbmm|matmul|linear)\b|flash|sdpa|scaled_dot_product|"
                         r"efficient_attention|cudnn_attention|gemm|cutlass|triton_tem_", re.IGNORECASE)
# A compressed Chrome trace over this is left out: the device call brings back 64 MiB in all.
TRACE_MAX_BYTES = 4 * 2**20
NAME_CHARS = 80


def is_matmul_like(name: str) -> bool:
    return bool(MATMUL_LIKE.search(name))


def build_step(ctx: PartContext, args: Any) -> tuple[Callable[[], None], dict[str, Any]]:
    """One optimizer step of the model `args` describes, as the trainer would run it, and what it is."""
    fresh_compile_state()
    cfg = bench_train.bench_config(args, compose_lite)
    p, t = cfg.pretrain, cfg.trainer
    set_torch_globals(t)
    L.seed_everything(cfg.seed, verbose=False)
    meta = read_meta(synthetic_tokens(ctx, cfg.model.vocab_size or args.vocab))
    module = PretrainModule(model_config(cfg, meta), OmegaConf.to_container(p, resolve=True),
                            OmegaConf.to_container(t, resolve=True), "")
    device = torch.device(args.device)
    module.to(device)
    optimizer = module.configure_optimizers()["optimizer"]  # fused AdamW on CUDA, as in training
    if module.compile_model:
        module.model.compile(mode=module.compile_mode)  # in place, as PretrainModule.setup does
    gpt = module.model.config_dict()
    shape = (p.micro_batch_size, gpt["block_size"] + 1)
    tokens = torch.randint(0, gpt["vocab_size"], shape, device=device)
    x, y = tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()
    precision = str(t.precision)
    if precision == "bf16-true":
        module.to(torch.bfloat16)
    # Lightning's "*-mixed" precision is autocast around forward and loss, backward outside it.
    autocast_dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(precision)
    max_norm = module.recipe.grad_clip if module.recipe.grad_clip > 0 else None

    def step() -> None:
        with torch.autocast(device.type, dtype=autocast_dtype or torch.float32,
                            enabled=autocast_dtype is not None):
            _, loss = module.model(x, y)
        loss.backward()
        if max_norm is not None:
            torch.nn.utils.clip_grad_norm_(module.parameters(), max_norm, foreach=True)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    about = {"micro_batch": p.micro_batch_size, "tokens_per_step": shape[0] * (shape[1] - 1),
             "precision": precision, "compiled": module.compile_model, "device": device.type}
    return step, about


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def self_us(event: Any, on_device: bool) -> float:
    if not on_device:
        return float(event.self_cpu_time_total)
    # self_cuda_time_total is the name before torch 2.4
    return float(getattr(event, "self_device_time_total", getattr(event, "self_cuda_time_total", 0.0)))


def top_ops(events: list[Any], steps: int, on_device: bool) -> dict[str, Any]:
    """The ops that took the most self time, per optimizer step, and the matmul-like share of all."""
    from torch.autograd import DeviceType

    # Host-side ops only: a device kernel is also listed as an event of its own, and counting both
    # would count its time twice.
    ops = [e for e in events if getattr(e, "device_type", DeviceType.CPU) == DeviceType.CPU]
    timed = [(self_us(e, on_device), e) for e in ops]
    total = sum(us for us, _ in timed)
    if total <= 0:
        raise RuntimeError("the profiler recorded no op time" + (" on the device (CUPTI unavailable?)"
                                                                    if on_device else ""))
    timed.sort(key=lambda pair: pair[0], reverse=True)
    matmul = sum(us for us, e in timed if is_matmul_like(e.key))
    rows = [{"name": e.key[:NAME_CHARS], "self_ms": us / steps / 1e3, "share": us / total,
             "calls": round(e.count / steps, 1)} for us, e in timed[:TOP_OPS] if us > 0]
    return {"ranked_by": "self device time" if on_device else "self CPU time",
            "op_ms_per_step": total / steps / 1e3, "matmul_share": matmul / total,
            "other_share": 1 - matmul / total, "top_ops": rows}


def bottleneck(summary: dict[str, Any]) -> str:
    """One line on where the step's time goes (thresholds are rules of thumb, the figures are beside)."""
    busy = summary.get("busy_share")
    if summary["device"] == "cuda" and busy is not None and busy < 0.7:
        return f"host or launch overhead: the GPU runs kernels {busy:.0%} of the step"
    if summary["matmul_share"] >= 0.6:
        return f"matmul/attention kernels ({summary['matmul_share']:.0%} of op time)"
    others = [op["name"] for op in summary["top_ops"] if not is_matmul_like(op["name"])]
    return (f"non-matmul ops ({summary['other_share']:.0%} of op time"
            + (f"; the largest {others[0]})" if others else ")"))


def save_trace(prof: Any, scratch: Path, out_dir: Path) -> str:
    """The Chrome trace, gzipped (Perfetto and chrome://tracing open .json.gz) when small enough."""
    raw = scratch / "pretrain_profile.json"
    prof.export_chrome_trace(str(raw))
    target = out_dir / "pretrain_profile.json.gz"
    out_dir.mkdir(parents=True, exist_ok=True)
    with raw.open("rb") as src, gzip.open(target, "wb", compresslevel=6) as dst:
        shutil.copyfileobj(src, dst)
    raw.unlink()
    size = target.stat().st_size
    if size > TRACE_MAX_BYTES:
        target.unlink()
        return f"left out: {size / 2**20:.1f} MiB compressed"
    return str(target)


def profile_steps(ctx: PartContext, args: Any, warmup: int = 2, steps: int = 5,
                  out_dir: Path | None = None) -> dict[str, Any]:
    """Profile `steps` optimizer steps after `warmup` (compilation, allocator and cuDNN warm-up)."""
    from torch.profiler import ProfilerActivity, profile

    started = time.perf_counter()
    step, about = build_step(ctx, args)
    device = about["device"]
    began = time.perf_counter()
    for _ in range(warmup):
        step()
    sync(device)
    about["warmup_s"] = time.perf_counter() - began
    # Unprofiled steps give the step time the device-busy share is measured against: the profiler
    # slows the host's side of every op, which would make the GPU look idler than it is.
    began = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    about["step_ms"] = 1e3 * (time.perf_counter() - began) / steps
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    with profile(activities=activities) as prof:
        began = time.perf_counter()
        for _ in range(steps):
            step()
        sync(device)
        about["profiled_step_ms"] = 1e3 * (time.perf_counter() - began) / steps
    summary = {**about, "steps": steps, **top_ops(list(prof.key_averages()), steps, device == "cuda")}
    if device == "cuda":  # on the CPU the ops' time is the step's by construction
        summary["busy_share"] = min(1.0, summary["op_ms_per_step"] / about["step_ms"])
    summary["bottleneck"] = bottleneck(summary)
    if out_dir is not None:
        try:
            summary["trace"] = save_trace(prof, ctx.scratch, out_dir)
        except Exception as exc:  # noqa: BLE001 - the figures stand without the trace
            summary["trace"] = f"not saved: {type(exc).__name__}: {str(exc)[:200]}"
    summary["seconds"] = time.perf_counter() - started  # what the profile costs, to budget it
    return summary
