from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from src.config.checks import above, at_least, field_problems, one_of, within

# The switches' values; src/models/gpt.py builds exactly these.
CHOICES: dict[str, tuple[str, ...]] = {
    "pos_emb": ("learned", "rope"),
    "norm": ("layernorm", "rmsnorm"),
    "mlp": ("gelu", "relu2"),
}


@dataclass
class ModelConfig:
    """A decoder-only transformer. Defaults are the nanoGPT baseline; modern options are switches."""

    name: str = "tiny"
    # 0 = take the vocabulary size from the tokenized data's meta.json at training time.
    vocab_size: int = 0
    block_size: int = 128
    n_layer: int = 2
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0
    bias: bool = False
    # learned | rope
    pos_emb: str = "learned"
    rope_theta: float = 10000.0
    # layernorm | rmsnorm
    norm: str = "layernorm"
    qk_norm: bool = False
    # gelu | relu2
    mlp: str = "gelu"
    mlp_ratio: float = 4.0
    tie_embeddings: bool = True
    # 0 = off; otherwise logits = c * tanh(logits / c)
    logit_softcap: float = 0.0
    init_std: float = 0.02

    @staticmethod
    def problems(m: Mapping[str, Any]) -> list[tuple[str, str]]:
        """Values no model can be built from (checked at config load and again when building)."""
        out = field_problems(m, {
            "vocab_size": at_least(0), "block_size": at_least(1), "n_layer": at_least(1),
            "n_head": at_least(1), "n_embd": at_least(1), "dropout": within(0, 1, high_open=True),
            "rope_theta": above(0), "mlp_ratio": above(0), "logit_softcap": at_least(0),
            "init_std": above(0), **{key: one_of(*allowed) for key, allowed in CHOICES.items()}})
        if out:
            return out
        if m["n_embd"] % m["n_head"]:
            out.append(("n_head", f"model.n_embd={m['n_embd']} must be divisible by it, got {m['n_head']}"))
        elif m["pos_emb"] == "rope" and (m["n_embd"] // m["n_head"]) % 2:
            out.append(("n_head", f"pos_emb=rope needs an even head size n_embd / n_head, got "
                                  f"{m['n_embd']} / {m['n_head']} = {m['n_embd'] // m['n_head']}"))
        return out
