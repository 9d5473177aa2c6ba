"""What GPT-2's architecture can hold, and our weights laid out as GPT-2 names them.

Our baseline is GPT-2's block (pre-LayerNorm with eps 1e-5, fused qkv, exact-erf GELU MLP, learned
positions, 1/sqrt(head_dim) attention scale), so its weights map one to one; the differences are
only in storage: we train without biases by default (GPT-2 has them everywhere: zeros are exact),
and transformers stores its Linear weights transposed (Conv1D), which hf.py handles.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from src.errors import InputError
from src.models.gpt import GPT

# torch.nn.LayerNorm's default, which make_norm uses.
LAYER_NORM_EPS = 1e-5

# Options GPT-2's architecture has no equivalent for: (config key, the value it supports, why).
UNSUPPORTED: tuple[tuple[str, Any, str], ...] = (
    ("pos_emb", "learned", "GPT-2 has a learned position table, no rotary embeddings"),
    ("norm", "layernorm", "GPT-2 uses LayerNorm, not RMSNorm"),
    ("qk_norm", False, "GPT-2 has no per-head norm of q and k"),
    ("mlp", "gelu", "GPT-2's MLP is GELU, not ReLU squared"),
    ("logit_softcap", 0.0, "GPT-2 has no logit soft-capping"),
)


class ExportError(InputError, ValueError):
    """A model or tokenizer the chosen export format cannot represent; the message says why."""


def require_gpt2(cfg: dict[str, Any], fmt: str) -> None:
    """Refuse a model config GPT-2 cannot represent, naming every offending option."""
    problems = [f"model.{key}={cfg[key]!r} ({why}; only {supported!r} exports)"
                for key, supported, why in UNSUPPORTED if cfg[key] != supported]
    if problems:
        raise ExportError(f"--format {fmt} writes GPT-2's architecture, which this model does not "
                          f"fit: {'; '.join(problems)}")


def check_layer_norm_eps(model: GPT) -> None:
    """Every LayerNorm must use the eps GPT-2's config will carry (a bug guard, not user input)."""
    eps = {m.eps for m in model.modules() if isinstance(m, nn.LayerNorm)}
    if eps != {LAYER_NORM_EPS}:
        raise ExportError(f"LayerNorm eps {sorted(eps)} differs from the {LAYER_NORM_EPS} the export writes")


def gpt2_tensors(model: GPT) -> dict[str, Tensor]:
    """Every GPT-2 tensor under our (= GPT-2's) names, float32, Linear weights as [out, in];
    absent biases filled with zeros; `lm_head.weight` only when the head is untied."""
    require_gpt2(model.cfg, "gpt2")
    check_layer_norm_eps(model)
    out: dict[str, Tensor] = {}
    for name, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.LayerNorm, nn.Embedding)):
            if name == "lm_head" and model.cfg["tie_embeddings"]:
                continue
            out[f"{name}.weight"] = module.weight.detach().float().clone()
            if isinstance(module, nn.Embedding) or name == "lm_head":
                continue  # neither has a bias in GPT-2
            bias = module.bias
            rows = module.weight.shape[0]
            out[f"{name}.bias"] = (bias.detach().float().clone() if bias is not None
                                   else torch.zeros(rows, dtype=torch.float32))
    return out


def mlp_hidden(cfg: dict[str, Any]) -> int:
    """The MLP width, as src/models/gpt.py computes it."""
    return int(cfg["mlp_ratio"] * cfg["n_embd"])
