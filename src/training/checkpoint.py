"""Checkpoint files: written atomically, read with `weights_only=True`.

A checkpoint is replaced in one `os.replace`, so a process killed while saving leaves the previous
file whole: "last" is always a checkpoint training can resume from.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

BEST = "best.ckpt"
LAST = "last.ckpt"


class AtomicCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path,
                        storage_options: Any | None = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        torch.save(checkpoint, tmp)
        os.replace(tmp, path)


def read_checkpoint(path: Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=True)


class IncompatibleCheckpointError(ValueError):
    """The checkpoint to resume from was made for a different model."""


def check_resumable(path: Path, model_config: dict[str, Any]) -> int:
    """The global step of `path`, after checking it holds the same model as the config asks for."""
    ckpt = read_checkpoint(path)
    saved = ckpt.get("hyper_parameters", {}).get("model", {})
    diff = sorted(k for k in set(saved) | set(model_config) if saved.get(k) != model_config.get(k))
    if diff:
        shown = ", ".join(f"{k}: {saved.get(k)!r} -> {model_config.get(k)!r}" for k in diff)
        raise IncompatibleCheckpointError(
            f"{path}: made for another model ({shown}); delete it, point pretrain.ckpt_dir elsewhere "
            "or set pretrain.resume=false"
        )
    return int(ckpt.get("global_step", 0))
