"""Unpaired preference data for KTO: read, encoded as SFT trained on it, arranged into micro-batches.

- Input: `pairs.parquet` from the kto_pairs stage, in the unpaired format of preference-tuning
  libraries: `prompt` (chat messages), `completion` (the reply's text), `label` (true = desirable),
  `split` (train/val), and `completion_ended` (whether the reply closed with `<|end|>`; a dataset
  without it counts every reply as ended, and the summary says so).
- Encoding: `scoring.encode_pair`, the SFT template with the generation prompt; the completion
  carries the `<|end|>` id only when the reply ended. A completion longer than the context, or
  holding special-token text, is dropped and counted by reason.
- Arrangement. KTO's reference point pairs each prompt with the next example's completion in the
  micro-batch (`kto.mismatched_pairs`). kto_pairs writes a prompt's desirable reply and its
  undesirable samples side by side, so reading rows in file order would pair a prompt with its own
  replies. The rows are therefore arranged once per run (seeded): prompt groups interleaved so no
  two neighbours share a prompt wherever the group sizes allow, then cut into micro-batches that
  training walks through sequentially, epoch after epoch. Fixed micro-batches also fix each row's
  mismatched partner, so the reference model's log-probs of those pairs can be computed once.
  A rotation that still pairs two rows of one prompt is marked and left out of z0.
- Micro-step m of rank r reads micro-batch (m x world + r) mod n: a pure function of the step, so a
  resumed run sees exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset

from src.data.readers import read_parquet
from src.errors import InputError
from src.generation.scoring import encode_pair
from src.training.kto import genuine_mismatches, mismatched_pairs

PAIRS_FILE = "pairs.parquet"
REQUIRED_COLUMNS = ("prompt", "completion", "label", "split")
SPLITS = ("train", "val")


class PairsDataError(InputError, ValueError):
    """A pairs file that cannot be trained on; the message names the file (and row)."""


@dataclass
class PairRow:
    prompt: list[dict[str, str]]
    completion: str
    ended: bool
    label: bool


def read_pairs(path: Path) -> tuple[dict[str, list[PairRow]], bool]:
    """({split: rows}, whether the file has `completion_ended`). Rows with a missing value or an
    unknown split are errors naming the row: kto_pairs never writes them."""
    table = read_parquet(path, hint="run the kto_pairs stage first")
    missing = [c for c in REQUIRED_COLUMNS if c not in table.column_names]
    if missing:
        raise PairsDataError(f"{path}: missing column(s) {missing}; expected {list(REQUIRED_COLUMNS)} "
                             "(+ completion_ended)")
    has_ended = "completion_ended" in table.column_names
    data = table.to_pydict()
    out: dict[str, list[PairRow]] = {s: [] for s in SPLITS}
    for i in range(table.num_rows):
        split, label, completion = data["split"][i], data["label"][i], data["completion"][i]
        prompt = data["prompt"][i]
        if split not in out:
            raise PairsDataError(f"{path}: row {i}: split must be one of {list(SPLITS)}, got {split!r}")
        if label is None or completion is None or not prompt:
            raise PairsDataError(f"{path}: row {i}: empty prompt, completion or label")
        if any(not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant")
               or not isinstance(m.get("content"), str) for m in prompt):
            raise PairsDataError(f"{path}: row {i}: prompt must be a list of {{role, content}} messages")
        ended = bool(data["completion_ended"][i]) if has_ended and data["completion_ended"][i] is not None else True
        out[split].append(PairRow([{"role": m["role"], "content": m["content"]} for m in prompt],
                                  completion, ended, bool(label)))
    return out, has_ended


@dataclass
class EncodedPairs:
    prompts: list[list[int]] = field(default_factory=list)
    completions: list[list[int]] = field(default_factory=list)
    labels: list[bool] = field(default_factory=list)
    prompt_keys: list[Hashable] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def n_desirable(self) -> int:
        return sum(self.labels)

    @property
    def n_undesirable(self) -> int:
        return len(self.labels) - sum(self.labels)

    def mean_tokens(self) -> float:
        n = len(self)
        return sum(len(p) + len(c) for p, c in zip(self.prompts, self.completions, strict=True)) / n if n else 0.0


def encode_pairs(tokenizer: Any, rows: Sequence[PairRow], block_size: int, dropped: Counter) -> EncodedPairs:
    """Token ids of each row; rows that cannot be scored are counted in `dropped` by reason."""
    out = EncodedPairs()
    for row in rows:
        try:
            prompt, completion = encode_pair(tokenizer, row.prompt, row.completion, row.ended)
        except ValueError:  # special-token text in the reply (check_content)
            dropped["special_token_in_completion"] += 1
            continue
        if not completion:
            dropped["empty_completion"] += 1
            continue
        if len(completion) > block_size:
            dropped["completion_longer_than_context"] += 1
            continue
        out.prompts.append(prompt)
        out.completions.append(completion)
        out.labels.append(row.label)
        out.prompt_keys.append(tuple(prompt))
    return out


def interleave_prompts(keys: Sequence[Hashable], seed: int) -> list[int]:
    """A seeded order of row indices in which neighbours have different keys wherever possible:
    each next row comes from the prompt group with the most rows left other than the previous
    row's group (ties in a seeded random order)."""
    rng = np.random.default_rng(seed)
    groups: dict[Hashable, list[int]] = defaultdict(list)
    for i, key in enumerate(keys):
        groups[key].append(i)
    names = list(groups)
    tiebreak = rng.permutation(len(names))
    heap: list[tuple[int, int, int]] = []  # (-rows left, tie-break, group)
    for g, name in enumerate(names):
        rows = groups[name]
        rng.shuffle(rows)
        heapq.heappush(heap, (-len(rows), int(tiebreak[g]), g))
    order: list[int] = []
    previous = -1
    while heap:
        left, tie, g = heapq.heappop(heap)
        if g == previous and heap:
            left2, tie2, g2 = heapq.heappop(heap)
            heapq.heappush(heap, (left, tie, g))
            left, tie, g = left2, tie2, g2
        order.append(groups[names[g]].pop())
        previous = g
        if left + 1 < 0:
            heapq.heappush(heap, (left + 1, tie, g))
    return order


@dataclass
class Arrangement:
    """The run's micro-batches (row indices) and each row's mismatched partner for z0."""

    batches: list[list[int]]
    partner: list[int]  # row -> the row whose completion its prompt is paired with
    genuine: list[bool]  # row -> the partner's prompt differs from the row's

    @property
    def same_prompt_pairs(self) -> int:
        return len(self.genuine) - sum(self.genuine)


def arrange(pairs: EncodedPairs, micro_batch_size: int, seed: int, mismatched: bool = True) -> Arrangement:
    """Interleaved rows cut into micro-batches of `micro_batch_size`. With `mismatched` (loss_type
    kto) a last micro-batch of a single row joins the one before it, since a micro-batch of one has
    no mismatched pair; without it (apo_zero_unpaired) rows are their own partners, never used."""
    n = len(pairs)
    least = 2 if mismatched else 1
    if n < least or micro_batch_size < least:
        raise PairsDataError(f"{n} example(s) in micro-batches of {micro_batch_size}: KTO's reference point "
                             "needs at least 2 examples per micro-batch")
    order = interleave_prompts(pairs.prompt_keys, seed)
    batches = [order[i:i + micro_batch_size] for i in range(0, n, micro_batch_size)]
    if not mismatched:
        return Arrangement(batches, list(range(n)), [True] * n)
    if len(batches[-1]) == 1:
        batches[-2].extend(batches.pop())
    partner, genuine = [0] * n, [True] * n
    for rows in batches:
        keys = [pairs.prompt_keys[i] for i in rows]
        for i, j, ok in zip(rows, mismatched_pairs(len(rows)), genuine_mismatches(keys), strict=True):
            partner[i], genuine[i] = rows[j], ok
    return Arrangement(batches, partner, genuine)


class TrainMicroBatches(IterableDataset):
    """Row indices of micro-step start, start+1, ... on this rank (see the module docstring)."""

    def __init__(self, batches: list[list[int]], rank: int, world: int, start: int) -> None:
        self.batches, self.rank, self.world, self.start = batches, rank, world, start

    def __iter__(self) -> Iterator[torch.Tensor]:
        for m in count(self.start):
            yield torch.tensor(self.batches[(m * self.world + self.rank) % len(self.batches)], dtype=torch.long)


class KTODataModule(L.LightningDataModule):
    def __init__(self, arrangement: Arrangement, accum: int) -> None:
        super().__init__()
        self.arrangement, self.accum = arrangement, accum

    def train_dataloader(self) -> DataLoader:
        step = self.trainer.global_step if self.trainer is not None else 0
        rank, world = (self.trainer.global_rank, self.trainer.world_size) if self.trainer is not None else (0, 1)
        return DataLoader(TrainMicroBatches(self.arrangement.batches, rank, world, step * self.accum),
                          batch_size=None, num_workers=0)
