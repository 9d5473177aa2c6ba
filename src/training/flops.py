"""Model FLOPs utilization: achieved FLOP/s (FLOPs per token x tokens/s) over the hardware's peak."""

from __future__ import annotations

import torch

# Dense (no sparsity) peak TFLOP/s per GPU from the vendors' data sheets, by the precision the matmuls
# run in: "bf16" for bf16/fp16 autocast, "tf32" for fp32 with TF32 matmuls. Matched as a substring of
# torch.cuda.get_device_name(); the first match wins, so more specific names come first.
PEAK_TFLOPS: dict[str, dict[str, float]] = {
    "H200": {"bf16": 989.0, "tf32": 494.7},
    "H100 PCIe": {"bf16": 756.0, "tf32": 378.0},
    "H100": {"bf16": 989.0, "tf32": 494.7},
    "A100": {"bf16": 312.0, "tf32": 156.0},
    "L40S": {"bf16": 362.1, "tf32": 183.0},
    "L4": {"bf16": 121.0, "tf32": 60.0},
    "A10G": {"bf16": 70.0, "tf32": 35.0},
    "RTX 4090": {"bf16": 165.2, "tf32": 82.6},
    "RTX 3090": {"bf16": 71.0, "tf32": 35.6},
}


def matmul_kind(precision: str) -> str:
    return "bf16" if "16" in precision else "tf32"


def peak_flops(device: torch.device, precision: str, configured_tflops: float = 0.0) -> float | None:
    """Peak FLOP/s of one device: the configured value, else the table entry; None when unknown
    (e.g. on a CPU without a configured peak), in which case MFU is not reported."""
    if configured_tflops > 0:
        return configured_tflops * 1e12
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, peaks in PEAK_TFLOPS.items():
        if key in name:
            return peaks[matmul_kind(precision)] * 1e12
    return None


def mfu(flops_per_token: float, tokens_per_s: float, peak_per_device: float | None,
        n_devices: int) -> float | None:
    if not peak_per_device:
        return None
    return flops_per_token * tokens_per_s / (peak_per_device * n_devices)
