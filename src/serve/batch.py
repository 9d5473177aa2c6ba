"""The KV cache of a batch that rows join and leave between decode steps (continuous batching).

The engine (src/generation/engine.py) decodes a fixed set of prompts from start to end. A server
cannot wait for the longest reply before taking the next request, so here rows come and go:

- Every row's tokens are right-aligned at the batch's write slot `end`: row r holds its
  `lengths[r]` tokens in slots [end - lengths[r], end). One decode step writes every row's new token
  at slot `end`, at that row's own position id (`lengths[r]`), and a per-row mask hides the slots
  left of the row's start.
- A request joins by a prefill of its prompt alone (no padding), whose cache is copied into new rows
  aligned the same way; the existing rows move right only when the new prompt is longer than `end`.
- A finished or cancelled row leaves by selecting the rows that stay.
- The physical cache grows with what the rows hold, not with the context: it starts at the first
  prompt plus `growth` slots. When `end` reaches its width, the part every live row still needs,
  [end - max(lengths), end), moves to the front of the same buffer when that frees at least half of
  it, or else of a buffer twice as wide (at most block_size + slack: a row never holds more than
  block_size tokens, so at that width every move frees at least the slack).

Attention runs over [end - max(lengths), end + 1) only, so dead slots on the left cost nothing.
"""

from __future__ import annotations

import torch
from torch import Tensor

from src.models.gpt import GPT, KVCache

# Slots a new buffer holds beyond what its rows need now (rounded up to a multiple of this).
GROWTH = 64


class RunningBatch:
    """Rows of token sequences decoding together; row order is join order."""

    def __init__(self, model: GPT, cache_dtype: torch.dtype | None = None, slack: int | None = None,
                 growth: int = GROWTH) -> None:
        self.model = model
        self.device = model.transformer.wte.weight.device
        self.cache_dtype = cache_dtype or model.transformer.wte.weight.dtype
        self.block_size = model.block_size
        self.max_width = self.block_size + (slack if slack is not None else max(8, self.block_size // 4))
        self.width = 0
        self.growth = growth
        self.resizes = 0
        self.cache: KVCache | None = None
        self.lengths = torch.zeros(0, dtype=torch.long, device=self.device)
        self.end = 0  # the next write slot
        self.compactions = 0

    @property
    def size(self) -> int:
        return int(self.lengths.shape[0])

    def row_length(self, row: int) -> int:
        return int(self.lengths[row])

    # --- joining and leaving ------------------------------------------------------------------------
    @torch.inference_mode()
    def join(self, prompt: list[int], copies: int = 1) -> Tensor:
        """Prefill `prompt` (1..block_size tokens) once and add it as `copies` new rows at the end of
        the batch; returns their next-token logits [copies, V]."""
        return self.join_many([(prompt, copies)])[0]

    @torch.inference_mode()
    def join_many(self, requests: list[tuple[list[int], int]]) -> list[Tensor]:
        """`join` for several (prompt, copies) at once: each prompt is prefilled alone (no padding),
        and the batch's cache is copied once for all of them."""
        for prompt, _ in requests:
            if not 0 < len(prompt) <= self.block_size:
                raise ValueError(f"prompt of {len(prompt)} tokens; a row holds 1..{self.block_size}")
        prefilled, logits = [], []
        for prompt, copies in requests:
            P = len(prompt)
            columns = torch.arange(P, device=self.device)
            own = self.model.allocate_cache(1, P, dtype=self.cache_dtype)
            idx = torch.tensor([prompt], dtype=torch.long, device=self.device)
            logits.append(self.model.forward_cached(idx, columns[None], own, columns, P, None).expand(copies, -1))
            prefilled.append((own, P, copies))
        longest = max(P for _, P, _ in prefilled)
        if self.cache is None or self.size == 0:
            self.width = self._rounded(longest)
            self.cache = self.model.allocate_cache(0, self.width, dtype=self.cache_dtype)
            self.end = 0
        if self.end < longest:
            if longest > self.width:  # the running rows move right to end at slot `longest`
                self._resize(self._rounded(longest))
            self._move(longest - self.end)
        rows = sum(copies for _, _, copies in prefilled)
        new = self.model.allocate_cache(rows, self.width, dtype=self.cache_dtype)
        row = 0
        for own, P, copies in prefilled:
            for src, dst in zip((*own.k, *own.v), (*new.k, *new.v), strict=True):
                dst[row:row + copies, :, self.end - P:self.end] = src
            row += copies
        self.cache = KVCache([torch.cat(pair) for pair in zip(self.cache.k, new.k, strict=True)],
                             [torch.cat(pair) for pair in zip(self.cache.v, new.v, strict=True)])
        lengths = [P for _, P, copies in prefilled for _ in range(copies)]
        self.lengths = torch.cat([self.lengths, torch.tensor(lengths, dtype=torch.long, device=self.device)])
        return logits

    def keep(self, rows: list[int]) -> None:
        """Keep only `rows` (in this order); the others leave the batch."""
        if len(rows) == self.size:
            return
        if not rows:
            self.cache, self.lengths, self.end = None, self.lengths[:0], 0
            return
        index = torch.tensor(rows, dtype=torch.long, device=self.device)
        assert self.cache is not None
        self.cache = KVCache([k.index_select(0, index) for k in self.cache.k],
                             [v.index_select(0, index) for v in self.cache.v])
        self.lengths = self.lengths.index_select(0, index)

    # --- decoding -----------------------------------------------------------------------------------
    @torch.inference_mode()
    def step(self, tokens: Tensor) -> Tensor:
        """Feed each row's newest token (every row must have fewer than block_size tokens); returns
        logits [B, V] for the token after it."""
        assert self.cache is not None and tokens.shape[0] == self.size
        if int(self.lengths.max()) >= self.block_size:
            raise ValueError("a row with a full context cannot take another token")
        if self.end >= self.width:
            self._make_room()
        start = self._start()
        view = KVCache([k[:, :, start:] for k in self.cache.k], [v[:, :, start:] for v in self.cache.v])
        slot = self.end - start
        mask = None
        if bool((self.lengths != self.lengths[0]).any()):
            # Slot s (relative to `start`) is a real token of row r when s >= slot - lengths[r].
            first = slot - self.lengths
            mask = (torch.arange(slot + 1, device=self.device)[None] >= first[:, None])[:, None, None]
        positions = self.lengths[:, None]
        logits = self.model.forward_cached(tokens[:, None].to(self.device), positions, view,
                                           torch.tensor([slot], device=self.device), slot + 1, mask)
        self.lengths = self.lengths + 1
        self.end += 1
        return logits

    # --- slot bookkeeping -----------------------------------------------------------------------------
    def _rounded(self, needed: int) -> int:
        return min(self.max_width, -(-(needed + self.growth) // self.growth) * self.growth)

    def _start(self) -> int:
        """The first slot any live row still needs."""
        return self.end - (int(self.lengths.max()) if self.size else 0)

    def _move(self, shift: int) -> None:
        """Move every row's tokens `shift` slots right (positive) or left (negative)."""
        assert self.cache is not None
        start = self._start()
        if self.end > start:
            for t in (*self.cache.k, *self.cache.v):
                t[:, :, start + shift:self.end + shift] = t[:, :, start:self.end].clone()
        self.end += shift

    def _make_room(self) -> None:
        used = self.end - self._start()
        if used > self.width // 2 and self.width < self.max_width:
            self._resize(min(self.max_width, 2 * self.width))
        else:
            self._move(-self._start())
            self.compactions += 1

    def _resize(self, width: int) -> None:
        """A buffer of `width` slots holding the live part at its front."""
        assert self.cache is not None
        start = self._start()
        used = self.end - start
        new = self.model.allocate_cache(self.size, width, dtype=self.cache_dtype)
        for old_t, new_t in zip((*self.cache.k, *self.cache.v), (*new.k, *new.v), strict=True):
            new_t[:, :, :used] = old_t[:, :, start:self.end]
        self.cache, self.width, self.end = new, width, used
        self.resizes += 1
