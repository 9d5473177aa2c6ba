"""Part 2, pretraining throughput through the real Lightning trainer and PretrainModule (bf16-mixed,
torch.compile on a GPU): dialog48m and a GPT-2-124M shape, each over a short sweep of micro-batch
sizes that stops at an out-of-memory error, at a batch that gains under 3 %, or when the next
trial would not fit the time left. Tokens/s and MFU of every trial; the best per model. Then, when
the time left allows, a torch.profiler look at dialog48m's step at its best batch (profiling.py): the
top ops by self device time and the matmul share, so a missed aim comes with its bottleneck."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from src.bench.gpu_suite.common import GPT2_124M, bench_args, is_oom, on_gpu, timed_run
from src.bench.gpu_suite.runner import PartContext

AIM_TOKENS_PER_S, AIM_MFU = 1.25e6, 0.55
MODELS = {"dialog48m": [], "gpt2_124m": GPT2_124M}
GPU_BATCHES = {"dialog48m": [32, 64, 128, 256], "gpt2_124m": [16, 32, 64, 128]}
MIN_GAIN = 1.03
# A trial's time is mostly compilation; the next one is tried only if this much of it fits again.
NEXT_TRIAL_MARGIN = 1.3
# The profile runs only with this much of the part's limit left; the sweeps leave it on a GPU. The
# profiled model is compiled (as in training) only with the longer time left: the compile cache of the
# sweep's trial at that batch makes it quick, but not free. Eager otherwise, and it says so.
PROFILE_MIN_S, PROFILE_COMPILED_MIN_S, PROFILE_RESERVE_S = 20.0, 40.0, 30.0
PROFILE_WARMUP, PROFILE_STEPS = 2, 5


def sweep(ctx: PartContext, name: str, batches: list[int], deadline: float, steps: int, warmup: int,
          compile_model: bool) -> dict[str, Any]:
    trials: list[dict[str, Any]] = []
    best: dict[str, Any] | None = None
    stop = "swept every batch size"
    last_s = 0.0
    for micro in batches:
        if trials and time.perf_counter() + NEXT_TRIAL_MARGIN * last_s > deadline:
            stop = f"no time for micro-batch {micro}"
            break
        began = time.perf_counter()
        try:
            result = timed_run(ctx, bench_args(ctx, "dialog48m", micro, MODELS[name], steps, warmup,
                                               compile_model))
        except Exception as exc:  # noqa: BLE001 - recorded; the sweep (and the other model) go on
            trials.append({"micro_batch": micro, "error": f"{type(exc).__name__}: {str(exc)[:300]}"})
            stop = "out of memory" if is_oom(exc) else "error"
            break
        last_s = time.perf_counter() - began
        row = {k: result[k] for k in ("micro_batch", "tokens_per_step", "ms_per_step", "tokens_per_s")}
        row.update({k: result[k] for k in ("mfu", "mfu_measured_peak") if k in result}, trial_s=last_s)
        trials.append(row)
        ctx.record(**{name: {"trials": trials}})
        ctx.log(f"{name} micro {micro}: {row['tokens_per_s']:,.0f} tok/s in {last_s:.0f} s")
        if best is None or row["tokens_per_s"] > best["tokens_per_s"]:
            gained = best is None or row["tokens_per_s"] >= MIN_GAIN * best["tokens_per_s"]
            best = {**row, "params": result["params"], "flops_per_token": result["flops_per_token"],
                    "precision": result["precision"], "compile": result["compile"],
                    "device": result["device"]}
            if not gained:
                stop = f"under {MIN_GAIN - 1:.0%} gain at micro-batch {micro}"
                break
        else:
            stop = f"slower at micro-batch {micro}"
            break
    return {"trials": trials, "best": best, "stopped": stop}


def profile(ctx: PartContext, best: dict[str, Any] | None) -> dict[str, Any]:
    """dialog48m's step profiled at the sweep's best batch, as {"profile": ...} or {"profile_error": ...}:
    a failed or cut-short profile never fails the part (its throughput figures are recorded already)."""
    from src.bench.gpu_suite.profiling import profile_steps

    if best is None:
        return {"profile_error": "no dialog48m trial ran"}
    if ctx.left() < PROFILE_MIN_S:
        return {"profile_error": f"skipped: {ctx.left():.0f} s left, the profile wants {PROFILE_MIN_S:.0f}"}
    compile_model = on_gpu(ctx) and ctx.left() >= PROFILE_COMPILED_MIN_S
    out_dir = ctx.options.get("out_dir")
    try:
        args = bench_args(ctx, "dialog48m", best["micro_batch"], MODELS["dialog48m"], PROFILE_STEPS,
                          PROFILE_WARMUP, compile_model)
        result = profile_steps(ctx, args, PROFILE_WARMUP, PROFILE_STEPS, Path(out_dir) if out_dir else None)
        return {"profile": {"model": "dialog48m", **result, "trainer_ms_per_step": best["ms_per_step"]}}
    except Exception as exc:  # noqa: BLE001 - the part's alarm (PartTimeout) too: the sweeps' figures stand
        return {"profile_error": f"{type(exc).__name__}: {str(exc)[:300]}"}


def run(ctx: PartContext) -> dict[str, Any]:
    gpu = on_gpu(ctx)
    steps, warmup = (20, 5) if gpu else (2, 1)
    out: dict[str, Any] = {}
    names = list(MODELS)
    reserve = PROFILE_RESERVE_S if gpu else 0.0
    for i, name in enumerate(names):
        # Each model gets an even share of what is left after the profile's reserve (the first leaves
        # time for the second).
        deadline = time.perf_counter() + (ctx.left() - reserve) / (len(names) - i) - 2
        batches = GPU_BATCHES[name] if gpu else [2, 4]
        out[name] = sweep(ctx, name, batches, deadline, steps, warmup, compile_model=gpu)
        ctx.record(**{name: out[name]})
    if not any(out[n]["best"] for n in names):
        raise RuntimeError(f"no trial ran: {[out[n]['trials'] for n in names]}")
    d = out["dialog48m"]["best"]
    if d:
        out["headline"] = (f"dialog48m {d['tokens_per_s']:,.0f} tok/s at micro-batch {d['micro_batch']}"
                           + (f", MFU {d['mfu']:.2f}" if "mfu" in d else ""))
        if gpu:
            out["aims_met"] = {"tokens_per_s": d["tokens_per_s"] >= AIM_TOKENS_PER_S,
                               "mfu": d.get("mfu", 0.0) >= AIM_MFU}
    g = out["gpt2_124m"]["best"]
    if g:
        out["headline"] = (out.get("headline", "") + f"; gpt2_124m {g['tokens_per_s']:,.0f} tok/s"
                           + (f", MFU {g['mfu']:.2f}" if "mfu" in g else "")).lstrip("; ")
    # On disk before profiling: a hard kill during it keeps the headline and the aims.
    ctx.record(**{k: out[k] for k in ("headline", "aims_met") if k in out})
    ctx.log("profiling dialog48m's step")
    out.update(profile(ctx, d))
    ctx.record(**{k: out[k] for k in ("profile", "profile_error") if k in out})
    if "profile" in out:
        ctx.log(f"profile: {out['profile']['bottleneck']}")
    return out
