from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from src.config.checks import at_least, either, field_problems, one_of

ACCELERATORS = ("cpu", "gpu", "cuda", "mps", "auto")
STRATEGIES = ("auto", "ddp", "ddp_spawn", "ddp_fork", "fsdp")
PRECISIONS = ("32-true", "32", "64-true", "bf16-mixed", "bf16-true", "16-mixed", "16-true")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
FSDP_SHARDING = ("FULL_SHARD", "SHARD_GRAD_OP", "NO_SHARD", "HYBRID_SHARD", "_HYBRID_SHARD_ZERO2")


@dataclass
class TrainerConfig:
    """Where and how training runs: hardware, strategy, precision. The recipe is in `pretrain`."""

    name: str = "cpu"
    # cpu | gpu | auto (Lightning accelerator names)
    accelerator: str = "cpu"
    # devices per node; -1 = all visible
    devices: int = 1
    # > 1 for multi-node runs; Lightning reads the rank layout from torchrun / SLURM env variables
    num_nodes: int = 1
    # auto | ddp | ddp_spawn | ddp_fork | fsdp
    strategy: str = "auto"
    # 32-true on CPU; bf16-mixed on GPUs (no loss scaling needed, unlike fp16)
    precision: str = "32-true"
    # torch.compile the model (GPU; adds start-up time)
    compile: bool = False
    # default | reduce-overhead | max-autotune
    compile_mode: str = "default"
    # torch.set_float32_matmul_precision: highest | high (TF32) | medium
    matmul_precision: str = "high"
    # deterministic kernels; required for bit-exact resume checks on CPU
    deterministic: bool = False
    # 0 = leave torch's default thread count
    num_threads: int = 0
    # DataLoader workers; windows are cheap to cut, so 0 (main process) is usually enough
    num_workers: int = 0
    # pinned host memory so host->device copies are asynchronous (ignored on CPU)
    pin_memory: bool = True
    # FSDP only: sharding strategy and the module class names wrapped as FSDP units
    fsdp_sharding: str = "FULL_SHARD"
    fsdp_wrap: list[str] = field(default_factory=lambda: ["Block"])
    # peak FLOP/s per device for MFU in TFLOP/s; 0 = look the GPU up in the peak table (CPU: no MFU)
    peak_tflops: float = 0.0
    enable_progress_bar: bool | None = None

    @staticmethod
    def problems(t: Mapping[str, Any]) -> list[tuple[str, str]]:
        return field_problems(t, {
            "accelerator": one_of(*ACCELERATORS), "devices": either(-1, at_least(1)),
            "num_nodes": at_least(1), "strategy": one_of(*STRATEGIES),
            "precision": one_of(*PRECISIONS), "compile_mode": one_of(*COMPILE_MODES),
            "matmul_precision": one_of("highest", "high", "medium"), "num_threads": at_least(0),
            "num_workers": at_least(0), "fsdp_sharding": one_of(*FSDP_SHARDING),
            "peak_tflops": at_least(0)})
