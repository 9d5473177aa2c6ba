"""Attention over packed windows: several sequences in one row, none attending to another.

`GPT.forward(idx, doc_ids=...)` describes the packing once per forward (`packed_layout`); every
layer then calls `attend`. The layout picks the cheapest exact kernel:

- `causal`: every row holds one sequence, so plain causal attention is exact (one batched call on
  the flash / fused kernels).
- `flex` (CUDA, torch's FlexAttention available, no attention dropout): one compiled kernel with a
  document-causal block mask; blocks that cross sequences are skipped, not computed and masked.
- `segments` (CPU, or CUDA without flex, from a context of SEGMENTS_MIN_CONTEXT): varlen attention
  by gathering: the sequences of all rows, bucketed by length and right-padded within a bucket, go
  through a few batched is_causal calls. The work is about sum(L_i^2) instead of T^2 on the fast
  causal kernels. Reading the run boundaries needs the doc ids on the host (free on CPU, one sync
  on CUDA).
- `mask`: a boolean block-diagonal causal mask [B, 1, T, T], the generic SDPA path: for short
  contexts, where it is cheaper than gathering, and while torch.compile traces the model without
  flex (data-dependent shapes would break the graph).

All four give the same result up to float rounding (tests/models/test_packed_attention.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

# Below this context the dense mask costs little (T^2 is small) and gathering the runs costs more
# than it saves. Attention forward+backward, 4 heads of 32, one CPU thread, real packed dialogues:
# T=128 x 8 rows: mask 5.3 ms, runs 10.6 ms; T=512 x 2: 33.9 vs 23.0 ms; T=1024 x 2: 142 vs 60 ms
# (plain causal attention, the pretraining cost: 4.7, 25.9, 82 ms).
SEGMENTS_MIN_CONTEXT = 512


@dataclass
class VarlenPlan:
    """Runs of similar length batched together: bucket b gathers its runs, right-padded to a common
    length, from the flattened [B*T] positions (`gather[b]`: [n_b, L_b]); `scatter` puts every
    position back from the concatenated bucket outputs. Causal attention makes the right padding
    harmless: a real query only sees keys at or before it, all of its own run; the padded queries'
    outputs are never gathered back."""

    gather: list[Tensor]
    scatter: Tensor  # [B*T] index into the concatenation of the buckets' flattened outputs


@dataclass
class PackedLayout:
    positions: Tensor  # [B, T] position ids restarting at 0 where each sequence starts
    mode: str  # causal | flex | segments | mask
    segments: list[list[tuple[int, int]]] | None = None  # per row: [start, end) of each run
    varlen: VarlenPlan | None = None  # mode "segments": the runs gathered into length buckets
    mask: Tensor | None = None  # bool [B, 1, T, T], True = may attend (mode "mask")
    block_mask: Any = None  # FlexAttention BlockMask (mode "flex")


def run_starts(doc_ids: Tensor) -> Tensor:
    """bool [B, T]: True where a run of equal doc ids begins."""
    starts = torch.ones_like(doc_ids, dtype=torch.bool)
    starts[:, 1:] = doc_ids[:, 1:] != doc_ids[:, :-1]
    return starts


def packed_positions(doc_ids: Tensor, starts: Tensor | None = None) -> Tensor:
    B, T = doc_ids.shape
    starts = run_starts(doc_ids) if starts is None else starts
    index = torch.arange(T, device=doc_ids.device).expand(B, T)
    run_start = torch.where(starts, index, torch.zeros_like(index)).cummax(dim=1).values
    return index - run_start


def block_diagonal_mask(doc_ids: Tensor) -> Tensor:
    """bool [B, 1, T, T]: causal and only within the same run. Every row keeps its diagonal, so
    padding given a run of its own never produces an all-masked row."""
    T = doc_ids.shape[1]
    same = doc_ids[:, :, None] == doc_ids[:, None, :]
    causal = torch.ones(T, T, dtype=torch.bool, device=doc_ids.device).tril()
    return (same & causal)[:, None]


def row_segments(starts: Tensor) -> list[list[tuple[int, int]]]:
    """[start, end) of every run of each row, from the run-start flags (read on the host)."""
    B, T = starts.shape
    rows: list[list[int]] = [[] for _ in range(B)]
    for b, t in starts.nonzero().tolist():
        rows[b].append(t)
    return [list(zip(r, r[1:] + [T], strict=True)) for r in rows]


def varlen_plan(segments: list[list[tuple[int, int]]], T: int, device: torch.device) -> VarlenPlan:
    """Bucket the runs by length (powers of two) so that a few batched causal calls cover them all;
    padding within a bucket is less than half of its positions."""
    buckets: dict[int, list[tuple[int, int]]] = {}
    for b, runs in enumerate(segments):
        for start, end in runs:
            size = 1 << (end - start - 1).bit_length()
            buckets.setdefault(size, []).append((b * T + start, end - start))
    gather, scatter, offset = [], torch.empty(len(segments) * T, dtype=torch.long), 0
    for size in sorted(buckets):
        runs = buckets[size]
        width = max(n for _, n in runs)
        index = torch.zeros(len(runs), width, dtype=torch.long)
        for row, (first, n) in enumerate(runs):
            index[row, :n] = torch.arange(first, first + n)
            index[row, n:] = first + n - 1  # any position of the run: padded keys are never attended
            scatter[first:first + n] = torch.arange(offset + row * width, offset + row * width + n)
        gather.append(index.to(device))
        offset += len(runs) * width
    return VarlenPlan(gather, scatter.to(device))


@cache
def flex_kernels() -> tuple[Any, Any] | None:
    """(compiled flex_attention, create_block_mask), or None where this torch has no FlexAttention."""
    try:
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention
    except ImportError:
        return None
    return torch.compile(flex_attention, dynamic=False), create_block_mask


def use_flex(device: torch.device, dropout_active: bool) -> bool:
    # FlexAttention has no dropout; its CPU backend is not worth compiling for windows this short.
    return device.type == "cuda" and not dropout_active and flex_kernels() is not None


def document_block_mask(doc_ids: Tensor) -> Any:
    _, create_block_mask = flex_kernels()
    B, T = doc_ids.shape

    def document_causal(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
        return (doc_ids[b, q_idx] == doc_ids[b, kv_idx]) & (q_idx >= kv_idx)

    return create_block_mask(document_causal, B, None, T, T, device=doc_ids.device)


def packed_layout(doc_ids: Tensor, dropout_active: bool = False, mode: str = "auto") -> PackedLayout:
    """The positions and attention plan of packed windows `doc_ids` [B, T] (each sequence a
    contiguous run of equal ids). `mode`: auto, or one of the modes above to force it (tests, benchmarks)."""
    starts = run_starts(doc_ids)
    positions = packed_positions(doc_ids, starts)
    if mode == "auto":
        compiling = torch.compiler.is_compiling()
        if use_flex(doc_ids.device, dropout_active):
            mode = "flex"
        elif compiling:
            mode = "mask"
        elif not bool(starts[:, 1:].any()):
            mode = "causal"
        else:
            mode = "segments" if doc_ids.shape[1] >= SEGMENTS_MIN_CONTEXT else "mask"
    if mode == "flex":
        return PackedLayout(positions, mode, block_mask=document_block_mask(doc_ids))
    if mode == "mask":
        return PackedLayout(positions, mode, mask=block_diagonal_mask(doc_ids))
    if mode == "segments":
        segments = row_segments(starts)
        return PackedLayout(positions, mode, segments=segments,
                            varlen=varlen_plan(segments, doc_ids.shape[1], doc_ids.device))
    if mode == "causal":
        return PackedLayout(positions, mode)
    raise ValueError(f"packed attention mode {mode!r}: expected auto, causal, flex, segments or mask")


def attend(layout: PackedLayout, q: Tensor, k: Tensor, v: Tensor, dropout_p: float) -> Tensor:
    """Attention [B, H, T, D] of q, k, v [B, H, T, D] under the packing `layout`."""
    if layout.mode == "causal":
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=dropout_p)
    if layout.mode == "mask":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=layout.mask, dropout_p=dropout_p)
    if layout.mode == "flex":
        flex_attention, _ = flex_kernels()
        return flex_attention(q, k, v, block_mask=layout.block_mask)
    B, H, T, D = q.shape
    flat = [t.transpose(1, 2).reshape(B * T, H, D) for t in (q, k, v)]  # views of the projection
    outs = []
    for index in layout.varlen.gather:
        n, width = index.shape
        qb, kb, vb = (t[index.reshape(-1)].view(n, width, H, D).transpose(1, 2) for t in flat)
        y = F.scaled_dot_product_attention(qb, kb, vb, is_causal=True, dropout_p=dropout_p)
        outs.append(y.transpose(1, 2).reshape(n * width, H, D))
    return torch.cat(outs)[layout.varlen.scatter].view(B, T, H, D).transpose(1, 2)
