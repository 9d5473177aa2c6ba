"""Turning next-token logits into tokens: repetition penalty, temperature, top-k, top-p.

All functions work on a batch of rows at once ([B, V] logits) and never leave the device, so a
decode step costs no host synchronization beyond reading the chosen ids.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor

from src.config.sections.generation import GenerationConfig


@dataclass(frozen=True)
class SamplingParams:
    """How to pick tokens. temperature 0 = greedy (argmax); top_k 0 and top_p 1.0 = off;
    repetition_penalty 1.0 = off (CTRL-style: logits of tokens already in the context are divided
    by it when positive and multiplied when negative)."""

    temperature: float = GenerationConfig.temperature
    top_k: int = GenerationConfig.top_k
    top_p: float = GenerationConfig.top_p
    repetition_penalty: float = GenerationConfig.repetition_penalty
    max_new_tokens: int = GenerationConfig.max_new_tokens

    def __post_init__(self) -> None:
        checks = {
            "temperature": self.temperature >= 0,
            "top_k": self.top_k >= 0,
            "top_p": 0 < self.top_p <= 1,
            "repetition_penalty": self.repetition_penalty > 0,
            "max_new_tokens": self.max_new_tokens >= 1,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in bad)
            raise ValueError(f"invalid sampling parameter(s): {shown} (temperature >= 0, top_k >= 0, "
                             "0 < top_p <= 1, repetition_penalty > 0, max_new_tokens >= 1)")

    def with_(self, **changes: float | int) -> SamplingParams:
        return replace(self, **changes)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


GREEDY = SamplingParams(temperature=0.0)


def apply_repetition_penalty(logits: Tensor, seen: Tensor, penalty: float) -> Tensor:
    """`seen` [B, V] bool marks tokens already in each row's context."""
    if penalty == 1.0:
        return logits
    penalized = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(seen, penalized, logits)


# top-p first looks for its nucleus among this many most likely tokens (a top-k is cheap; a full sort
# of a 32k vocabulary costs milliseconds per row on a CPU) and sorts the whole row only when the
# candidates hold less than top_p of the probability mass.
TOP_P_CANDIDATES = 256


def sample_from_probs(probs: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """One index per row of `probs` [B, N] (non-negative, any scale) by inverting the CDF with one
    uniform number per row: cheaper on a CPU than torch.multinomial, which draws N numbers."""
    cdf = probs.cumsum(dim=-1)
    u = torch.rand(probs.shape[0], 1, generator=generator, device=probs.device, dtype=cdf.dtype)
    picks = torch.searchsorted(cdf, u * cdf[:, -1:], right=True)
    return picks.clamp_(max=probs.shape[-1] - 1).squeeze(-1)


def nucleus_mask(sorted_probs: Tensor, p: float) -> Tensor:
    """For probabilities sorted descending along the last dim: True where a token is in the top-p
    nucleus (kept while the mass before it is below p, so the top token always stays)."""
    return (sorted_probs.cumsum(dim=-1) - sorted_probs) < p


def candidates(logits: Tensor, params: SamplingParams) -> tuple[Tensor, Tensor | None]:
    """(probabilities, their token ids or None for 'all of the vocabulary') after temperature,
    top-k and top-p; probabilities are unnormalized (zeros mark dropped tokens)."""
    vocab = logits.shape[-1]
    logits = logits / params.temperature
    if 0 < params.top_k < vocab:
        values, ids = torch.topk(logits, params.top_k, dim=-1)  # sorted descending
        probs = values.softmax(dim=-1)
        if params.top_p < 1.0:
            probs = probs * nucleus_mask(probs, params.top_p)
        return probs, ids
    probs = logits.softmax(dim=-1)
    if params.top_p >= 1.0:
        return probs, None
    top, ids = torch.topk(probs, min(TOP_P_CANDIDATES, vocab), dim=-1)
    if not bool((top.sum(dim=-1) >= params.top_p).all()):
        top, ids = torch.sort(probs, dim=-1, descending=True)
    return top * nucleus_mask(top, params.top_p), ids


def sample(logits: Tensor, params: SamplingParams, seen: Tensor | None = None,
           generator: torch.Generator | None = None) -> Tensor:
    """One token id per row of `logits` [B, V] -> [B] (long)."""
    logits = logits.float()
    if seen is not None:
        logits = apply_repetition_penalty(logits, seen, params.repetition_penalty)
    if params.greedy:
        return logits.argmax(dim=-1)
    probs, ids = candidates(logits, params)
    picks = sample_from_probs(probs, generator)
    return picks if ids is None else ids.gather(-1, picks[:, None]).squeeze(-1)
