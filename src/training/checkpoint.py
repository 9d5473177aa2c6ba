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


def identity_diff(path: Path, identity: dict[str, Any]) -> tuple[int, list[str]]:
    """The global step of checkpoint `path` and the keys where its run identity differs from
    `identity` (what is being trained: seed, model, recipe, data); empty when it can be resumed."""
    ckpt = read_checkpoint(path)
    saved = flatten_dict(ckpt.get("hyper_parameters", {}).get("identity", {}))
    current = flatten_dict(identity)
    diff = [f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in sorted(set(saved) | set(current))
            if saved.get(k) != current.get(k)]
    return int(ckpt.get("global_step", 0)), diff


def flatten_dict(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in d.items():
        if isinstance(value, dict):
            out.update(flatten_dict(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out
