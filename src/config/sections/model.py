from __future__ import annotations

from dataclasses import dataclass


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
