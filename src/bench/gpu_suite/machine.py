"""Part 1, the machine: GPU name and memory, torch/CUDA versions, and a measured bf16 matmul peak.

The measured peak (an n x n x n bf16 product on random data, timed with CUDA events after warm-up,
median of the timed runs) stands beside the data-sheet peak of src/training/flops.py: MFU is reported
against both (the data sheet's is the usual denominator; the measured one says how far the model's
steps are from what this very card does on one large matmul).
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from typing import Any

import torch

from src.bench.gpu_suite.runner import PartContext
from src.training.flops import peak_flops


def time_matmul(n: int, device: torch.device, dtype: torch.dtype, warmup: int, repeats: int) -> list[float]:
    """Seconds per n x n x n product, one figure per timed run."""
    g = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(n, n, device=device, dtype=dtype, generator=g)
    b = torch.randn(n, n, device=device, dtype=dtype, generator=g)
    for _ in range(warmup):
        torch.mm(a, b)
    times = []
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        for _ in range(repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            torch.mm(a, b)
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1000)
    else:
        for _ in range(repeats):
            began = time.perf_counter()
            torch.mm(a, b)
            times.append(time.perf_counter() - began)
    return times


def copy_bandwidth(device: torch.device, n_bytes: int, repeats: int) -> float:
    """Device-to-device copy, bytes read plus written per second (median)."""
    src = torch.empty(n_bytes, dtype=torch.uint8, device=device).random_()
    dst = torch.empty_like(src)
    dst.copy_(src)
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        began = time.perf_counter()
        dst.copy_(src)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - began)
    return 2 * n_bytes / statistics.median(times)


def run(ctx: PartContext) -> dict[str, Any]:
    cuda = torch.cuda.is_available() and not ctx.dry_run
    device = torch.device("cuda" if cuda else "cpu")
    info: dict[str, Any] = {"torch": torch.__version__, "cuda": torch.version.cuda,
                            "python": platform.python_version(), "cpus": os.cpu_count(),
                            "device": "cpu"}
    if cuda:
        props = torch.cuda.get_device_properties(device)
        info.update(device=props.name, memory_gib=round(props.total_memory / 2**30, 1),
                    multiprocessors=props.multi_processor_count,
                    capability=f"{props.major}.{props.minor}",
                    cudnn=torch.backends.cudnn.version())
    ctx.record(**info)
    n, repeats = (8192, 20) if cuda else (256, 5)
    dtype = torch.bfloat16 if cuda else torch.float32
    times = time_matmul(n, device, dtype, warmup=5 if cuda else 1, repeats=repeats)
    measured = 2 * n**3 / statistics.median(times)
    nominal = peak_flops(device, "bf16-mixed")
    bandwidth = copy_bandwidth(device, (2 << 30) if cuda else (8 << 20), 10 if cuda else 3)
    figures = {"matmul_n": n, "matmul_dtype": str(dtype).removeprefix("torch."),
               "matmul_tflops_measured": measured / 1e12,
               "matmul_tflops_nominal": nominal / 1e12 if nominal else None,
               "copy_tb_per_s": bandwidth / 1e12}
    figures["headline"] = (f"{info['device']}: {measured / 1e12:.3g} TFLOP/s {figures['matmul_dtype']} measured"
                           + (f" (nominal {nominal / 1e12:.0f})" if nominal else "")
                           + f", copy {bandwidth / 1e12:.3g} TB/s")
    return figures
