"""Cross-encoders for the next-line reranker: context and candidate in one sequence, one logit.

Two backbones:

- `OwnCrossEncoder`: the project's transformer (src/models/gpt.py) run as a bidirectional encoder
  (`GPT.encode`), pooled over the real tokens (`mean`) or at the leading marker token (`marker`),
  then one linear unit. Input: `<|endoftext|> context <|end|> candidate <|end|>` in the project's
  tokenizer (context lines joined with " | "); the context is cut from the left (its latest lines
  stay) and the candidate from the right when the pair is longer than the block.
- `HFCrossEncoder`: a local Hugging Face encoder directory loaded with
  `AutoModelForSequenceClassification` (one label) and its own tokenizer, pairs encoded exactly as
  `sentence_transformers.CrossEncoder` encodes them, so a directory saved with `save` loads there and
  gives the same scores.

Both expose `pair_batch(contexts, candidates) -> dict of tensors`, `forward(**batch) -> logits [B]`,
`optim_groups`, `config_dict`, `num_params`, `flops_per_token` (what the Lightning module uses).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from src.models.gpt import GPT

POOLINGS = ("mean", "marker")
MARKER = "<|endoftext|>"
SEPARATOR_TOKEN = "<|end|>"


class OwnCrossEncoder(nn.Module):
    def __init__(self, model: dict[str, Any], pooling: str = "mean") -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {list(POOLINGS)}, got {pooling!r}")
        self.encoder = GPT.from_config_dict(model)
        self.pooling = pooling
        self.head = nn.Linear(self.encoder.cfg["n_embd"], 1)
        nn.init.normal_(self.head.weight, std=self.encoder.cfg["init_std"])
        nn.init.zeros_(self.head.bias)
        self.tokenizer: Any = None  # set by `attach_tokenizer` before pair_batch is used

    # --- what the training module and exports read
    def config_dict(self) -> dict[str, Any]:
        return {"backbone": "own", "pooling": self.pooling, "model": self.encoder.config_dict()}

    def num_params(self, non_embedding: bool = False) -> int:
        return self.encoder.num_params(non_embedding) + sum(p.numel() for p in self.head.parameters())

    def flops_per_token(self) -> int:
        return self.encoder.flops_per_token()

    def optim_groups(self, weight_decay: float, decay_embeddings: bool = False) -> list[dict]:
        groups = self.encoder.optim_groups(weight_decay, decay_embeddings)
        # The encoder's output head is unused here (the classifier replaces it): leave it out, unless
        # it is the tied token table, which the embedding group already holds.
        lm_head = self.encoder.lm_head.weight
        for g in groups:
            g["params"] = [p for p in g["params"] if p is not lm_head or g["kind"] == "embedding"]
        groups = [g for g in groups if g["params"]]
        groups.append({"params": [self.head.weight], "weight_decay": weight_decay, "kind": "head"})
        groups.append({"params": [self.head.bias], "weight_decay": 0.0, "kind": "vector"})
        return groups

    # --- input
    def attach_tokenizer(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        specials = tokenizer.special_tokens
        self.marker_id = specials[MARKER]
        self.sep_id = specials.get(SEPARATOR_TOKEN, self.marker_id)

    def encode_pair(self, context: str | list[int], candidate: str) -> list[int]:
        """Token ids of one pair, cut to the block: context (text, or its ids) from the left, the
        candidate from the right (it keeps at least half of the block when it is that long)."""
        tok, block = self.tokenizer, self.encoder.block_size
        ctx = tok.encode(context) if isinstance(context, str) else context
        cand = tok.encode(candidate)
        room = block - 3
        cand = cand[:max(room // 2, room - len(ctx))]
        ctx = ctx[len(ctx) - (room - len(cand)):] if len(ctx) > room - len(cand) else ctx
        return [self.marker_id, *ctx, self.sep_id, *cand, self.sep_id]

    def pair_batch(self, contexts: Sequence[str], candidates: Sequence[str]) -> dict[str, Tensor]:
        encoded: dict[str, list[int]] = {}  # one context is usually paired with many candidates
        for c in contexts:
            if c not in encoded:
                encoded[c] = self.tokenizer.encode(c)
        return pad_batch([self.encode_pair(encoded[c], d) for c, d in zip(contexts, candidates, strict=True)])

    # --- model
    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        mask = attention_mask.to(torch.bool)
        hidden = self.encoder.encode(input_ids, mask)
        if self.pooling == "marker":
            pooled = hidden[:, 0]
        else:
            weights = mask.to(hidden.dtype)[..., None]
            pooled = (hidden * weights).sum(1) / weights.sum(1).clamp_min(1)
        return self.head(pooled).squeeze(-1)


def pad_batch(rows: Sequence[Sequence[int]], pad_id: int = 0) -> dict[str, Tensor]:
    """Right-padded ids and the mask of real tokens."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, :len(r)] = 1
    return {"input_ids": ids, "attention_mask": mask}


class HFCrossEncoder(nn.Module):
    """A Hugging Face sequence classifier with one label, loaded from a local directory only."""

    def __init__(self, directory: str | Path, max_length: int = 256) -> None:
        super().__init__()
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.source = str(directory)
        self.model = AutoModelForSequenceClassification.from_pretrained(
            self.source, num_labels=1, local_files_only=True)
        self.tokenizer = AutoTokenizer.from_pretrained(self.source, local_files_only=True)
        self.max_length = min(max_length, int(getattr(self.model.config, "max_position_embeddings", max_length)))

    def config_dict(self) -> dict[str, Any]:
        return {"backbone": "hf", "source": self.source, "max_length": self.max_length,
                "model_type": self.model.config.model_type}

    def num_params(self, non_embedding: bool = False) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def flops_per_token(self) -> int:
        return 6 * self.num_params()

    def optim_groups(self, weight_decay: float, decay_embeddings: bool = False) -> list[dict]:
        decay, rest = [], []
        for name, p in self.model.named_parameters():
            if not p.requires_grad:
                continue
            (decay if p.dim() >= 2 and "embeddings" not in name else rest).append(p)
        return [{"params": decay, "weight_decay": weight_decay, "kind": "matrix"},
                {"params": rest, "weight_decay": 0.0, "kind": "vector"}]

    def pair_batch(self, contexts: Sequence[str], candidates: Sequence[str]) -> dict[str, Tensor]:
        # What sentence_transformers.CrossEncoder.predict does: pairs, longest_first truncation.
        enc = self.tokenizer(list(contexts), list(candidates), padding=True, truncation=True,
                             max_length=self.max_length, return_tensors="pt")
        return dict(enc)

    def forward(self, **batch: Tensor) -> Tensor:
        return self.model(**batch).logits.squeeze(-1)

    def save(self, directory: str | Path) -> None:
        """A directory `sentence_transformers.CrossEncoder` loads as it is (model, tokenizer, and the
        sigmoid activation and max_length it should apply)."""
        import json

        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(out, safe_serialization=True)
        # CrossEncoder truncates at the tokenizer's model_max_length: the same length as here
        self.tokenizer.model_max_length = self.max_length
        self.tokenizer.save_pretrained(out)
        config_path = out / "config.json"
        config = json.loads(config_path.read_text(encoding="utf-8"))
        config["sentence_transformers"] = {"activation_fn": "torch.nn.modules.activation.Sigmoid",
                                           "max_length": self.max_length}
        config_path.write_text(json.dumps(config, indent=2), encoding="utf-8")
