"""Checkpoint files: written atomically, read with `weights_only=True`.

A checkpoint is replaced in one `os.replace` (src.atomic_io), so a process killed while saving
leaves the previous file whole. A checkpoint damaged some other way (disk, copy, a hand edit) is
named in one line by `read_resumable` and can be moved aside, so the next run is not stuck on it.
"""

from __future__ import annotations

import functools
import hashlib
import os
import time
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from src.atomic_io import atomic_path
from src.errors import InputError

BEST = "best.ckpt"
LAST = "last.ckpt"
# What Lightning needs to continue a run; a file without them cannot be resumed.
RESUME_KEYS = ("state_dict", "global_step", "optimizer_states", "loops", "hyper_parameters")


class CheckpointError(InputError, ValueError):
    """A checkpoint file that cannot be read or resumed; the message names the file."""


class AtomicCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path,
                        storage_options: Any | None = None) -> None:
        # fsync'ed before the rename; temporaries of runs killed mid-save are swept, so the
        # persisted checkpoint folder does not collect them.
        # torch.save names the zip's inner folder after the file it is given, so it writes through
        # a file object (inner folder "archive"): the temporary's random name must not reach the
        # bytes of a DVC-tracked checkpoint.
        with atomic_path(path, sweep_stale=True) as tmp, open(tmp, "wb") as f:
            torch.save(checkpoint, f)


def read_checkpoint(path: Path) -> dict[str, Any]:
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - zip, pickle, EOF, OS errors: all mean "unreadable"
        reason = (str(exc).strip().splitlines() or [""])[0][:200]
        raise CheckpointError(f"{path}: unreadable checkpoint ({type(exc).__name__}: {reason})") from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path}: not a checkpoint (holds a {type(ckpt).__name__})")
    return ckpt


def read_resumable(path: Path) -> dict[str, Any]:
    """A training checkpoint with everything Lightning needs to continue from it."""
    ckpt = read_checkpoint(path)
    missing = [key for key in RESUME_KEYS if key not in ckpt]
    if missing:
        raise CheckpointError(f"{path}: not a resumable training checkpoint (no {', '.join(missing)})")
    return ckpt


def move_aside(path: Path) -> Path:
    """Rename a bad checkpoint to `<name>.corrupt-<UTC time>` beside it (kept for inspection, out of
    the way of the next run) and return the new path."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    os.replace(path, target)
    return target


# The code whose change makes a finished or killed run another run: a persisted checkpoint written by
# other model or training code is not resumed (DVC reruns a stage when its code changes, and a
# "resumed" finished run would then keep the old weights and metrics).
TRAINING_CODE_DIRS = ("src/models", "src/training", "src/tokenizers")


@functools.lru_cache(maxsize=1)
def training_code_sha256() -> str:
    """sha256 over the model, training and tokenizer sources (path and bytes of every .py file)."""
    from src.paths import PROJECT_ROOT

    digest = hashlib.sha256()
    for folder in TRAINING_CODE_DIRS:
        for path in sorted((PROJECT_ROOT / folder).rglob("*.py")):
            digest.update(path.relative_to(PROJECT_ROOT).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def identity_diff(ckpt: dict[str, Any], identity: dict[str, Any]) -> tuple[int, list[str]]:
    """The global step of checkpoint `ckpt` and the keys where its run identity differs from
    `identity` (what is being trained: seed, model, recipe, data); empty when it can be resumed."""
    saved = flatten_dict(ckpt.get("hyper_parameters", {}).get("identity", {}))
    current = flatten_dict(identity)
    diff = [f"{k}: {_short(saved.get(k))} -> {_short(current.get(k))}" for k in sorted(set(saved) | set(current))
            if saved.get(k) != current.get(k)]
    return int(ckpt.get("global_step", 0)), diff


def _short(value: Any) -> str:
    """A value for the "differs" note: hashes cut to 12 characters, which tell them apart."""
    text = repr(value)
    return text[:13] + "…'" if isinstance(value, str) and len(value) > 16 else text


def flatten_dict(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in d.items():
        if isinstance(value, dict):
            out.update(flatten_dict(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out
