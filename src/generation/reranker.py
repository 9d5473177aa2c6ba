"""Scoring candidate lines for a conversation with a trained reranker (the `reranker` stage's export).

    from src.generation.reranker import load_reranker
    reranker = load_reranker("data/models/reranker/model")
    scores = reranker.score(["Hi.", "Hi, how are you?"], ["Fine, thanks.", "The train leaves at six."])

`score` returns one float per candidate: the probability (sigmoid of the logit) that the candidate
is the line that follows the context, in the candidates' order. The context is the list of previous
lines, oldest first (joined with " | " as in training; the `own` backbone keeps the latest lines when
they do not fit). Candidates are scored in batches (longest first, so padding stays small), without
gradients. Text is expected as the corpora were cleaned (src/text/normalize); `Reranker.normalize`
applies the training tokenizer's normalization when the caller has raw user text.

An export directory holds `reranker.json` (backbone and settings) and, for the `own` backbone,
`model.safetensors` with the project tokenizer in `tokenizer/`; for the `hf` backbone the Hugging Face
files themselves, which `sentence_transformers.CrossEncoder(path)` loads and scores identically.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from src.data.reranker.samples import join_context
from src.errors import InputError

EXPORT_FILE = "reranker.json"
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_SUBDIR = "tokenizer"
DEFAULT_BATCH = 512


class RerankerLoadError(InputError, ValueError):
    """An export directory that cannot be loaded; the message names the path."""


PRECISIONS = ("fp32", "bf16", "auto")


def fast_bf16(device: torch.device) -> bool:
    """bf16 matmuls are faster than fp32 here: a GPU, or a CPU with AMX tiles (Sapphire Rapids on)."""
    if device.type == "cuda":
        return True
    probe = getattr(getattr(torch._C, "_cpu", None), "_is_amx_tile_supported", None)
    if probe is not None:
        return bool(probe())
    try:  # torch builds without the probe: the kernel's CPU flags (Linux)
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return " amx_bf16" in flags


class Reranker:
    """A cross-encoder ready to score. `precision`: fp32 (exact), bf16 (weights in bfloat16: about
    1.6x faster on an AMX CPU, scores within ~1e-3), auto (bf16 where `fast_bf16`, else fp32)."""

    def __init__(self, model: Any, device: str | torch.device = "cpu", batch_size: int = DEFAULT_BATCH,
                 precision: str = "fp32") -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
        self.device = torch.device(device)
        if precision == "auto":
            precision = "bf16" if fast_bf16(self.device) else "fp32"
        self.precision = precision
        dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        self.model = model.eval().to(device=self.device, dtype=dtype)
        self.batch_size = batch_size

    @property
    def backbone(self) -> str:
        return self.model.config_dict()["backbone"]

    def normalize(self, text: str) -> str:
        tok = self.model.tokenizer
        return tok.normalize(text) if hasattr(tok, "normalize") else text

    @torch.no_grad()
    def score(self, context: Sequence[str], candidates: Sequence[str], *,
              batch_size: int | None = None) -> np.ndarray:
        """Probability that each candidate follows `context` (previous lines, oldest first)."""
        if isinstance(context, str):
            raise TypeError("context is the list of previous lines, not one string")
        n = len(candidates)
        out = np.empty(n, dtype=np.float32)
        if n == 0:
            return out
        joined = join_context(list(context))
        size = batch_size or self.batch_size
        order = sorted(range(n), key=lambda i: -len(candidates[i]))
        for start in range(0, n, size):
            idx = order[start:start + size]
            batch = self.model.pair_batch([joined] * len(idx), [candidates[i] for i in idx])
            batch = {k: v.to(self.device) for k, v in batch.items()}
            out[idx] = torch.sigmoid(self.model(**batch).float()).cpu().numpy()
        return out


def load_reranker(path: str | Path, device: str | torch.device = "cpu",
                  batch_size: int = DEFAULT_BATCH, precision: str = "fp32") -> Reranker:
    """The reranker exported to directory `path` by the reranker stage (see `Reranker` for precision)."""
    from src.models.cross_encoder import HFCrossEncoder, OwnCrossEncoder

    directory = Path(path)
    meta_path = directory / EXPORT_FILE
    if not meta_path.is_file():
        raise RerankerLoadError(f"{directory}: not a reranker export (no {EXPORT_FILE}); run the reranker stage")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        backbone = meta["backbone"]
    except (ValueError, KeyError, TypeError) as exc:
        raise RerankerLoadError(f"{meta_path}: unreadable ({type(exc).__name__}: {exc})") from None
    if backbone == "hf":
        try:
            model = HFCrossEncoder(directory, int(meta.get("max_length", 256)))
        except (OSError, ValueError) as exc:
            raise RerankerLoadError(f"{directory}: Hugging Face files unreadable ({exc})") from None
        return Reranker(model, device, batch_size, precision)
    if backbone != "own":
        raise RerankerLoadError(f"{meta_path}: unknown backbone {backbone!r}; expected own or hf")
    from safetensors.torch import load_file

    from src.tokenizers import load_tokenizer

    try:
        model = OwnCrossEncoder(meta["model"], meta.get("pooling", "mean"))
        state = load_file(str(directory / WEIGHTS_FILE))
        missing, unexpected = model.load_state_dict(state, strict=False)
        wrong = [k for k in missing if k != "encoder.lm_head.weight"] + list(unexpected)
        if wrong:
            raise ValueError(f"{WEIGHTS_FILE} does not fit reranker.json's model: keys {wrong[:5]}")
        tokenizer = load_tokenizer(directory / TOKENIZER_SUBDIR)
    except (OSError, RuntimeError, ValueError, KeyError, TypeError, InputError) as exc:
        raise RerankerLoadError(f"{directory}: weights or tokenizer unreadable ({type(exc).__name__}: "
                                f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    if meta.get("tokenizer_sha256") and tokenizer.sha256 != meta["tokenizer_sha256"]:
        raise RerankerLoadError(f"{directory / TOKENIZER_SUBDIR}: tokenizer sha256 {tokenizer.sha256[:12]} is not "
                                f"the one the reranker was trained with ({meta['tokenizer_sha256'][:12]})")
    model.attach_tokenizer(tokenizer)
    return Reranker(model, device, batch_size, precision)


def export_own(model: Any, tokenizer: Any, directory: str | Path, extra: dict[str, Any] | None = None) -> None:
    """Write an `own` cross-encoder (weights, settings, tokenizer) to `directory`."""
    from safetensors.torch import save_file

    from src.atomic_io import write_json_atomic

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    # safetensors refuses shared tensors: the tied token table / output head is stored once
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()
             if not (k == "encoder.lm_head.weight" and model.encoder.cfg["tie_embeddings"])}
    save_file(state, str(out / WEIGHTS_FILE))
    tokenizer.save(out / TOKENIZER_SUBDIR)
    write_json_atomic(out / EXPORT_FILE, {**model.config_dict(), "tokenizer_sha256": tokenizer.sha256,
                                          **(extra or {})})


def export_hf(model: Any, directory: str | Path, extra: dict[str, Any] | None = None) -> None:
    """Write an `hf` cross-encoder where CrossEncoder(directory) and load_reranker both read it."""
    from src.atomic_io import write_json_atomic

    model.save(directory)
    write_json_atomic(Path(directory) / EXPORT_FILE, {**model.config_dict(), **(extra or {})})
