"""A decoder-only transformer (GPT) in one file.

The defaults are nanoGPT's architecture, so its recipes reproduce: learned absolute positions,
LayerNorm, a GELU MLP four times as wide, token embedding tied to the output head, no biases, and
N(0, 0.02) init with the residual projections scaled by 1/sqrt(2 * n_layer). Modern options are
switches in `ModelConfig` (conf/model/*.yaml):

    pos_emb        learned | rope          rotary positions on q and k instead of a position table
    norm           layernorm | rmsnorm
    qk_norm        true                    RMSNorm of q and k per head before attention
    mlp            gelu | relu2            relu2 = ReLU(x)^2
    tie_embeddings false                   a separate output head
    logit_softcap  c > 0                   logits = c * tanh(logits / c)

Attention runs through `F.scaled_dot_product_attention` (flash / memory-efficient kernels on GPU).

Packed sequences (supervised fine-tuning puts several conversations in one window): `forward(idx,
doc_ids=...)` gives each token the id of the sequence it belongs to; attention is then causal within
a sequence and never crosses into another, and positions restart at 0 where each sequence starts
(src/models/packed_attention.py picks the kernel: plain causal when each row holds one sequence,
FlexAttention on CUDA, per-sequence causal slices on CPU). Without `doc_ids` the plain causal path
runs, unchanged.

Besides the training forward, `forward_cached` runs new tokens against a preallocated key/value
cache (`KVCache`); the generation engine (src/generation/engine.py) drives it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from src.config.sections.model import CHOICES, ModelConfig  # noqa: F401 - CHOICES re-exported
from src.models.packed_attention import (
    PackedLayout,
    attend,
    block_diagonal_mask,
    packed_layout,
    packed_positions,
)

MODEL_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(ModelConfig))
IGNORE_INDEX = -100


def read_config(cfg: Any) -> dict[str, Any]:
    """The ModelConfig fields of `cfg` (dataclass, DictConfig, SimpleNamespace or dict) as a plain,
    validated dict; missing fields take the ModelConfig defaults."""
    defaults = ModelConfig()
    out: dict[str, Any] = {}
    for name in MODEL_FIELDS:
        if isinstance(cfg, dict):
            value = cfg.get(name, getattr(defaults, name))
        else:
            value = getattr(cfg, name, getattr(defaults, name))
        out[name] = value
    if isinstance(cfg, dict):
        unknown = sorted(set(cfg) - set(MODEL_FIELDS))
        if unknown:
            raise ValueError(f"model: unknown key(s) {unknown}; known: {list(MODEL_FIELDS)}")
    # The same rules the config loader applies, for configs that come from checkpoints and exports.
    for key, problem in ModelConfig.problems(out):
        raise ValueError(f"model.{key}: {problem}")
    if int(out["vocab_size"]) <= 0:
        raise ValueError(
            f"model.vocab_size must be > 0 to build a model (got {out['vocab_size']}); 0 means "
            "'take it from the tokenized data', so set it from the data's meta.json first")
    return out


def make_norm(kind: str, dim: int, bias: bool) -> nn.Module:
    if kind == "layernorm":
        return nn.LayerNorm(dim, bias=bias)
    return nn.RMSNorm(dim)


class Rotary(nn.Module):
    """cos/sin tables for rotary position embeddings (the rotate-half formulation).

    The tables are derived state: rebuilt in float32 wherever the module is moved, so casting the
    model to fp16/bf16 for inference does not round the angles.
    """

    def __init__(self, head_dim: int, max_positions: int, theta: float) -> None:
        super().__init__()
        self.head_dim, self.max_positions, self.theta = head_dim, max_positions, theta
        cos, sin = self._tables(torch.device("cpu"))
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)

    def _tables(self, device: torch.device) -> tuple[Tensor, Tensor]:
        inv_freq = self.theta ** (-torch.arange(0, self.head_dim, 2, device=device, dtype=torch.float32)
                                  / self.head_dim)
        angles = torch.outer(torch.arange(self.max_positions, device=device, dtype=torch.float32), inv_freq)
        return angles.cos(), angles.sin()

    def _apply(self, fn, recurse=True):  # noqa: ANN001 - nn.Module's own signature
        super()._apply(fn, recurse)
        if self.cos.dtype != torch.float32:
            self.cos, self.sin = self._tables(self.cos.device)
        return self

    def forward(self, positions: Tensor) -> tuple[Tensor, Tensor]:
        """cos, sin for `positions` [B, T] (or [T]), shaped to broadcast over [B, H, T, D/2]."""
        cos, sin = self.cos[positions], self.sin[positions]
        if positions.dim() == 1:
            return cos[None, None], sin[None, None]
        return cos[:, None], sin[:, None]


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate pairs (x[i], x[i + D/2]) of `x` [B, H, T, D] by the position angles, in float32."""
    x32 = x.float()
    half = x32.shape[-1] // 2
    a, b = x32[..., :half], x32[..., half:]
    return torch.cat((a * cos - b * sin, b * cos + a * sin), dim=-1).to(x.dtype)


@dataclass
class KVCache:
    """Preallocated keys and values, one [B, H, max_len, D] pair per layer.

    `forward_cached` writes the new tokens' keys/values at the given slots and attends to slots
    [0, kv_len). The engine owns slot bookkeeping and masks (padding, per-row lengths).
    """

    k: list[Tensor]
    v: list[Tensor]

    @classmethod
    def allocate(cls, n_layer: int, batch: int, n_head: int, max_len: int, head_dim: int,
                 device: torch.device | str, dtype: torch.dtype) -> KVCache:
        shape = (batch, n_head, max_len, head_dim)
        return cls([torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layer)],
                   [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layer)])

    @property
    def batch(self) -> int:
        return self.k[0].shape[0]

    @property
    def max_len(self) -> int:
        return self.k[0].shape[2]

    def copy_row(self, src: int, dst: slice, length: int) -> None:
        """Copy row `src`'s first `length` slots into rows `dst` (prefill once, sample many)."""
        for k, v in zip(self.k, self.v, strict=True):
            k[dst, :, :length] = k[src:src + 1, :, :length]
            v[dst, :, :length] = v[src:src + 1, :, :length]


class CausalSelfAttention(nn.Module):
    def __init__(self, c: dict[str, Any]) -> None:
        super().__init__()
        self.n_head = c["n_head"]
        self.head_dim = c["n_embd"] // c["n_head"]
        self.dropout = c["dropout"]
        self.c_attn = nn.Linear(c["n_embd"], 3 * c["n_embd"], bias=c["bias"])
        self.c_proj = nn.Linear(c["n_embd"], c["n_embd"], bias=c["bias"])
        self.resid_dropout = nn.Dropout(c["dropout"])
        # QK-norm: normalizing q and k per head bounds the attention logits (stabler at high LR).
        self.q_norm = nn.RMSNorm(self.head_dim) if c["qk_norm"] else None
        self.k_norm = nn.RMSNorm(self.head_dim) if c["qk_norm"] else None

    def _qkv(self, x: Tensor, rope: tuple[Tensor, Tensor] | None) -> tuple[Tensor, Tensor, Tensor]:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, self.head_dim).transpose(1, 2) for t in (q, k, v))
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)
        return q, k, v

    def _out(self, y: Tensor) -> Tensor:
        B, H, T, D = y.shape
        return self.resid_dropout(self.c_proj(y.transpose(1, 2).reshape(B, T, H * D)))

    def forward(self, x: Tensor, rope: tuple[Tensor, Tensor] | None, packed: PackedLayout | None = None) -> Tensor:
        q, k, v = self._qkv(x, rope)
        dropout = self.dropout if self.training else 0.0
        if packed is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=dropout)
        else:  # packed sequences: attention stays inside each (src/models/packed_attention.py)
            y = attend(packed, q, k, v, dropout)
        return self._out(y)

    def forward_cached(self, x: Tensor, rope: tuple[Tensor, Tensor] | None, cache_k: Tensor,
                       cache_v: Tensor, slots: Tensor, kv_len: int, attn_mask: Tensor | None) -> Tensor:
        q, k, v = self._qkv(x, rope)
        # The cache may be kept in a wider dtype than the weights (fp32 attention is much faster
        # than bf16 on CPUs); index_copy_ with a slot tensor (not a Python int) keeps the step
        # capturable as a CUDA graph.
        cache_k.index_copy_(2, slots, k.to(cache_k.dtype))
        cache_v.index_copy_(2, slots, v.to(cache_v.dtype))
        keys, values = cache_k[:, :, :kv_len], cache_v[:, :, :kv_len]
        q = q.to(keys.dtype)
        if attn_mask is None and q.shape[2] > 1:
            # Only valid when the new tokens are the whole context (a first prefill without padding).
            y = F.scaled_dot_product_attention(q, keys, values, is_causal=True)
        else:
            y = F.scaled_dot_product_attention(q, keys, values, attn_mask=attn_mask)
        return self._out(y.to(x.dtype))


class MLP(nn.Module):
    def __init__(self, c: dict[str, Any]) -> None:
        super().__init__()
        hidden = int(c["mlp_ratio"] * c["n_embd"])
        self.c_fc = nn.Linear(c["n_embd"], hidden, bias=c["bias"])
        self.c_proj = nn.Linear(hidden, c["n_embd"], bias=c["bias"])
        self.relu2 = c["mlp"] == "relu2"
        self.dropout = nn.Dropout(c["dropout"])

    def forward(self, x: Tensor) -> Tensor:
        h = self.c_fc(x)
        h = F.relu(h).square() if self.relu2 else F.gelu(h)
        return self.dropout(self.c_proj(h))


class Block(nn.Module):
    def __init__(self, c: dict[str, Any]) -> None:
        super().__init__()
        self.ln_1 = make_norm(c["norm"], c["n_embd"], c["bias"])
        self.attn = CausalSelfAttention(c)
        self.ln_2 = make_norm(c["norm"], c["n_embd"], c["bias"])
        self.mlp = MLP(c)

    def forward(self, x: Tensor, rope: tuple[Tensor, Tensor] | None, packed: PackedLayout | None = None) -> Tensor:
        x = x + self.attn(self.ln_1(x), rope, packed)
        return x + self.mlp(self.ln_2(x))

    def forward_cached(self, x: Tensor, rope: tuple[Tensor, Tensor] | None, cache_k: Tensor,
                       cache_v: Tensor, slots: Tensor, kv_len: int, attn_mask: Tensor | None) -> Tensor:
        x = x + self.attn.forward_cached(self.ln_1(x), rope, cache_k, cache_v, slots, kv_len, attn_mask)
        return x + self.mlp(self.ln_2(x))


def packed_positions_and_mask(doc_ids: Tensor) -> tuple[Tensor, Tensor]:
    """Position ids [B, T] restarting at 0 where each run of equal `doc_ids` begins, and the boolean
    attention mask [B, 1, T, T] (True = may attend): causal, and only within the same run. Every
    row keeps its diagonal, so padding given a run of its own never produces an all-masked row.
    (The forward itself uses `packed_layout`, which avoids the mask where it can.)"""
    return packed_positions(doc_ids), block_diagonal_mask(doc_ids)


class GPT(nn.Module):
    def __init__(self, cfg: Any) -> None:
        super().__init__()
        c = read_config(cfg)
        self.cfg = c
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(c["vocab_size"], c["n_embd"]),
            drop=nn.Dropout(c["dropout"]),
            h=nn.ModuleList(Block(c) for _ in range(c["n_layer"])),
            ln_f=make_norm(c["norm"], c["n_embd"], c["bias"]),
        ))
        if c["pos_emb"] == "learned":
            self.transformer["wpe"] = nn.Embedding(c["block_size"], c["n_embd"])
            self.rotary = None
        else:
            self.rotary = Rotary(c["n_embd"] // c["n_head"], c["block_size"], c["rope_theta"])
        self.lm_head = nn.Linear(c["n_embd"], c["vocab_size"], bias=False)
        if c["tie_embeddings"]:
            self.lm_head.weight = self.transformer.wte.weight
        self._init_weights(c["init_std"], c["n_layer"])

    # --- construction -------------------------------------------------------------------------------
    def _init_weights(self, std: float, n_layer: int) -> None:
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, mean=0.0, std=std)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, mean=0.0, std=std)
        # GPT-2: each residual branch's output projection is scaled down by the number of residual
        # additions (two per layer), so the residual stream's variance does not grow with depth.
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=std / math.sqrt(2 * n_layer))

    @classmethod
    def from_config_dict(cls, d: dict[str, Any]) -> GPT:
        return cls(dict(d))

    def config_dict(self) -> dict[str, Any]:
        """The ModelConfig fields as plain Python values (for checkpoints and exports)."""
        return dict(self.cfg)

    @property
    def block_size(self) -> int:
        return self.cfg["block_size"]

    @property
    def head_dim(self) -> int:
        return self.cfg["n_embd"] // self.cfg["n_head"]

    # --- accounting ---------------------------------------------------------------------------------
    def num_params(self, non_embedding: bool = False) -> int:
        """Parameter count (each tied matrix once). `non_embedding=True` leaves out the lookup
        tables that do no matmul: the position table, and the token table when the head is untied
        (a tied table is also the output head, so it stays, as in nanoGPT)."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            if "wpe" in self.transformer:
                n -= self.transformer.wpe.weight.numel()
            if not self.cfg["tie_embeddings"]:
                n -= self.transformer.wte.weight.numel()
        return n

    def flops_per_token(self) -> int:
        """Training FLOPs per token, the PaLM/nanoGPT estimate: 6N for the forward and backward
        matmuls over N = num_params(non_embedding=True) weights, plus 12 * n_layer * n_embd *
        block_size for attention scores and weighted values at full context."""
        c = self.cfg
        return 6 * self.num_params(non_embedding=True) + 12 * c["n_layer"] * c["n_embd"] * c["block_size"]

    def optim_groups(self, weight_decay: float, decay_embeddings: bool = False) -> list[dict]:
        """Optimizer groups, each tagged with its `kind`:

        - "matrix": weight matrices of the hidden Linear layers, always decayed;
        - "head": the output projection when untied, decayed like a matrix (Muon leaves it out);
        - "embedding": the token and position tables (a tied head is the token table), decayed
          only with `decay_embeddings` (nanoGPT decays every 2-D tensor, modern recipes do not);
        - "vector": norms and biases, never decayed.
        """
        linear_weights = {id(m.weight) for m in self.modules() if isinstance(m, nn.Linear)}
        embedding_weights = {id(m.weight) for m in self.modules() if isinstance(m, nn.Embedding)}
        by_kind: dict[str, list[Tensor]] = {"matrix": [], "head": [], "embedding": [], "vector": []}
        for p in self.parameters():  # parameters() yields a tied tensor once
            if not p.requires_grad:
                continue
            if id(p) in embedding_weights:
                kind = "embedding"
            elif p is self.lm_head.weight:
                kind = "head"
            elif id(p) in linear_weights and p.dim() >= 2:
                kind = "matrix"
            else:
                kind = "vector"
            by_kind[kind].append(p)
        decay = {"matrix": weight_decay, "head": weight_decay,
                 "embedding": weight_decay if decay_embeddings else 0.0, "vector": 0.0}
        return [{"params": params, "weight_decay": decay[kind], "kind": kind}
                for kind, params in by_kind.items() if params]

    # --- forward ------------------------------------------------------------------------------------
    def _embed(self, idx: Tensor, positions: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor] | None]:
        x = self.transformer.wte(idx)
        rope = None
        if self.rotary is None:
            x = x + self.transformer.wpe(positions)
        else:
            rope = self.rotary(positions)
        return self.transformer.drop(x), rope

    def _logits(self, x: Tensor) -> Tensor:
        logits = self.lm_head(self.transformer.ln_f(x))
        cap = self.cfg["logit_softcap"]
        if cap > 0:
            logits = cap * torch.tanh(logits / cap)
        return logits

    def forward(self, idx: Tensor, targets: Tensor | None = None,
                doc_ids: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """Logits [B, T, V] for token ids `idx` [B, T]; with `targets`, also the mean cross-entropy
        over positions whose target is not -100 (computed in float32). `doc_ids` [B, T] (packed
        sequences, each a contiguous run of equal ids): attention stays inside each run and
        positions restart at its first token."""
        T = idx.shape[1]
        if T > self.block_size:
            raise ValueError(f"sequence of {T} tokens is longer than model.block_size={self.block_size}")
        packed = None
        if doc_ids is None:
            positions = torch.arange(T, device=idx.device)
        else:
            packed = packed_layout(doc_ids, dropout_active=self.training and self.cfg["dropout"] > 0)
            positions = packed.positions
        x, rope = self._embed(idx, positions)
        for block in self.transformer.h:
            x = block(x, rope, packed)
        logits = self._logits(x)
        if targets is None:
            return logits, None
        loss = F.cross_entropy(logits.float().view(-1, logits.shape[-1]), targets.reshape(-1),
                               ignore_index=IGNORE_INDEX)
        return logits, loss

    def encode(self, idx: Tensor, key_mask: Tensor | None = None) -> Tensor:
        """Final hidden states [B, T, C] with bidirectional attention (no causal mask): the model as
        an encoder (the reranker's cross-encoder). `key_mask` [B, T] (True = a real token) keeps
        padding out of every position's attention; padded positions still get (unused) outputs."""
        B, T = idx.shape
        if T > self.block_size:
            raise ValueError(f"sequence of {T} tokens is longer than model.block_size={self.block_size}")
        if key_mask is None:
            key_mask = torch.ones(B, T, dtype=torch.bool, device=idx.device)
        positions = torch.arange(T, device=idx.device)
        # The "mask" layout with a key-padding mask (no causal part): every token sees every real token.
        layout = PackedLayout(positions.expand(B, T), "mask", mask=key_mask[:, None, None, :].to(torch.bool))
        x, rope = self._embed(idx, positions)
        for block in self.transformer.h:
            x = block(x, rope, layout)
        return self.transformer.ln_f(x)

    def forward_cached(self, idx: Tensor, positions: Tensor, cache: KVCache, slots: Tensor,
                       kv_len: int, attn_mask: Tensor | None = None,
                       last_only: bool = True) -> Tensor:
        """Run new tokens `idx` [B, S] at position ids `positions` [B, S] against `cache`.

        Their keys/values are written at cache slots `slots` [S]; attention covers slots
        [0, kv_len) under `attn_mask` (bool [B, 1, S, kv_len], True = may attend). `attn_mask=None`
        means: one new token attending to every slot, or S new tokens that are the whole context
        (causal). Returns logits [B, V] for the last token (`last_only`) or [B, S, V].
        """
        x, rope = self._embed(idx, positions)
        for i, block in enumerate(self.transformer.h):
            x = block.forward_cached(x, rope, cache.k[i], cache.v[i], slots, kv_len, attn_mask)
        if last_only:
            x = x[:, -1]
        return self._logits(x)

    def allocate_cache(self, batch: int, max_len: int | None = None, device: torch.device | str | None = None,
                       dtype: torch.dtype | None = None) -> KVCache:
        ref = self.transformer.wte.weight
        return KVCache.allocate(self.cfg["n_layer"], batch, self.cfg["n_head"], max_len or self.block_size,
                                self.head_dim, device or ref.device, dtype or ref.dtype)
