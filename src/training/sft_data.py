"""Conversations for supervised fine-tuning: encoded with the chat template, fitted to the context,
packed into windows, and served as micro-batches.

- Encoding: `chat_template.encode_for_training` marks the tokens under loss (assistant content and
  its closing <|end|>). A conversation of L tokens is L - 1 (input, target) pairs: the target of
  input position j is token j + 1, and it carries loss when token j + 1 is marked (the one-position
  shift between the template's mask and the targets is applied here, once).
- Over-long conversations follow `too_long`: "truncate" keeps the longest prefix that ends with a
  whole assistant turn and fits; "drop" drops them. Both are counted.
- Packing: conversations go into windows of block_size positions by best-fit decreasing; each
  position records which conversation it belongs to (`doc`), so the model's packed attention keeps
  them apart and restarts positions. The rest of a window is padding (target -100, a run of its own).
- Batches: the windows of micro-step m are a pure function of (seed, rank, m), as in pretraining,
  so a resumed run sees exactly the batches an uninterrupted one would. Each micro-batch carries
  the number of loss tokens of its whole optimizer step on its rank, so the loss can be normalized
  by the step's token count rather than averaged per micro-batch.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, get_worker_info

from src.data.readers import read_parquet
from src.errors import InputError
from src.generation import chat_template
from src.models.gpt import IGNORE_INDEX

DIALOGUES_FILE = "dialogues.parquet"
REQUIRED_COLUMNS = ("conversation", "split")
TRAIN_STREAM = 0
PAD_ID = 0  # input id at padded positions; never attended to by real tokens, never a target


class DialogueDataError(InputError, ValueError):
    """A dialogues file that cannot be trained on; the message names the file."""


@dataclass
class Encoded:
    """One conversation as next-token pairs: inputs ids[:-1], targets ids[1:] where marked."""

    ids: np.ndarray  # int64 [L]
    loss: np.ndarray  # bool [L], the template's mask (token carries loss)
    loss_bytes: int  # UTF-8 bytes of the assistant text under loss (for bits per byte)

    @property
    def positions(self) -> int:
        return len(self.ids) - 1

    @property
    def loss_tokens(self) -> int:
        return int(self.loss[1:].sum())


@dataclass
class EncodeReport:
    conversations: int = 0
    kept: int = 0
    truncated: int = 0
    dropped: Counter = field(default_factory=Counter)
    tokens: int = 0
    loss_tokens: int = 0


def encode_turns(tokenizer: Any, messages: Sequence[Mapping[str, Any]]
                 ) -> tuple[list[int], list[bool], list[tuple[int, int]]]:
    """`encode_for_training` of the whole conversation, plus a cut point after each assistant turn:
    (tokens so far, loss bytes so far). Messages are encoded one at a time, which gives the same ids
    because every message boundary is a special token or newline (atomic)."""
    chat_template.validate(messages)
    ids: list[int] = []
    mask: list[bool] = []
    cuts: list[tuple[int, int]] = []
    loss_bytes = 0
    for m in messages:
        piece_ids, piece_mask = chat_template.encode_for_training(tokenizer, [m])
        ids += piece_ids
        mask += piece_mask
        if m["role"] == "assistant":
            loss_bytes += len(m["content"].encode("utf-8"))
            cuts.append((len(ids), loss_bytes))
    return ids, mask, cuts


def check_turns(messages: Sequence[Mapping[str, Any]]) -> str | None:
    """Why a conversation cannot be trained on (None when it can): the data contract is an optional
    system message, then user/assistant turns alternating, ending with the assistant."""
    roles = [m.get("role") for m in messages]
    if roles and roles[0] == "system":
        roles = roles[1:]
    if not roles:
        return "no_turns"
    if any(r != ("user" if i % 2 == 0 else "assistant") for i, r in enumerate(roles)):
        return "turns_not_alternating"
    if roles[-1] != "assistant":
        return "not_ending_with_assistant"
    return None


def encode_conversation(tokenizer: Any, messages: Sequence[Mapping[str, Any]], max_positions: int,
                        too_long: str, report: EncodeReport) -> Encoded | None:
    """The conversation fitted to `max_positions` (block_size) under the `too_long` policy, or None
    (counted in `report.dropped` with the reason)."""
    report.conversations += 1
    reason = check_turns(messages)
    if reason is None:
        try:
            ids, mask, cuts = encode_turns(tokenizer, messages)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            reason = "invalid_message"
            if "special token" in str(exc):
                reason = "special_token_in_content"
    if reason is not None:
        report.dropped[reason] += 1
        return None
    n_tokens, n_bytes = len(ids), cuts[-1][1]
    if n_tokens - 1 > max_positions:
        fitting = [c for c in cuts if c[0] - 1 <= max_positions]
        if too_long == "drop" or not fitting:
            report.dropped["too_long" if too_long == "drop" else "too_long_first_reply"] += 1
            return None
        n_tokens, n_bytes = fitting[-1]
        report.truncated += 1
    enc = Encoded(np.asarray(ids[:n_tokens], dtype=np.int64), np.asarray(mask[:n_tokens], dtype=bool),
                  n_bytes)
    report.kept += 1
    report.tokens += enc.positions
    report.loss_tokens += enc.loss_tokens
    return enc


def pack(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Best-fit decreasing: indices of `lengths` grouped into bins of at most `capacity`. Each item
    goes into the fullest bin it fits in; deterministic for a given input."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    bins: list[list[int]] = []
    free: list[int] = []  # sorted free space of the open bins
    owner: list[int] = []  # bin index for each entry of `free`
    for i in order:
        size = lengths[i]
        if size > capacity:
            raise ValueError(f"item {i} of length {size} exceeds the capacity {capacity}")
        at = bisect.bisect_left(free, size)
        if at < len(free):
            b = owner.pop(at)
            left = free.pop(at) - size
        else:
            b = len(bins)
            bins.append([])
            left = capacity - size
        bins[b].append(i)
        if left > 0:
            at = bisect.bisect_left(free, left)
            free.insert(at, left)
            owner.insert(at, b)
    return bins


@dataclass
class PackedWindows:
    """Windows of `block_size` positions: inputs, targets (-100 = no loss) and conversation ids."""

    x: np.ndarray  # int64 [N, T]
    y: np.ndarray  # int64 [N, T]
    doc: np.ndarray  # int32 [N, T]
    loss_tokens: np.ndarray  # int64 [N]
    loss_bytes: np.ndarray  # int64 [N]
    conversations: int
    used: int  # positions holding a conversation (the rest is padding)

    def __len__(self) -> int:
        return len(self.x)

    @property
    def positions(self) -> int:
        return self.x.size

    @property
    def padding_share(self) -> float:
        """Share of positions that hold no conversation."""
        return 1 - self.used / self.positions if self.positions else 0.0


def pack_windows(items: Sequence[Encoded], block_size: int) -> PackedWindows:
    bins = pack([e.positions for e in items], block_size)
    n = len(bins)
    x = np.full((n, block_size), PAD_ID, dtype=np.int64)
    y = np.full((n, block_size), IGNORE_INDEX, dtype=np.int64)
    doc = np.zeros((n, block_size), dtype=np.int32)
    loss_tokens = np.zeros(n, dtype=np.int64)
    loss_bytes = np.zeros(n, dtype=np.int64)
    used = 0
    for w, members in enumerate(bins):
        at = 0
        for k, i in enumerate(members):
            e = items[i]
            end = at + e.positions
            x[w, at:end] = e.ids[:-1]
            y[w, at:end] = np.where(e.loss[1:], e.ids[1:], IGNORE_INDEX)
            doc[w, at:end] = k
            loss_tokens[w] += e.loss_tokens
            loss_bytes[w] += e.loss_bytes
            at = end
        doc[w, at:] = len(members)  # the padding: a run of its own, attending only to itself
        used += at
    return PackedWindows(x, y, doc, loss_tokens, loss_bytes, len(items), used)


def read_dialogues(path: Path) -> dict[str, list[list[dict[str, Any]]]]:
    """Conversations of `path` by split ("train", "val"); other split values are an error."""
    if not path.exists():
        raise DialogueDataError(f"{path}: not found; run the build_dialogues stage first "
                                "(dvc repro build_dialogues)")
    table = read_parquet(path, hint="rebuild it with the build_dialogues stage")
    missing = [c for c in REQUIRED_COLUMNS if c not in table.column_names]
    if missing:
        raise DialogueDataError(f"{path}: missing column(s) {missing}; have {table.column_names}")
    out: dict[str, list[list[dict[str, Any]]]] = {"train": [], "val": []}
    for row, (conversation, split) in enumerate(zip(table.column("conversation").to_pylist(),
                                                    table.column("split").to_pylist(), strict=True)):
        if split not in out:
            raise DialogueDataError(f"{path}: row {row}: split {split!r}, expected 'train' or 'val'")
        out[split].append(list(conversation or []))
    return out


class TrainPacks(IterableDataset):
    """An endless stream of micro-batches from micro-step `start` on: (x, y, doc, step_loss_tokens).

    Window k of the run's sequence is window perm_e[k mod N] with perm_e a seeded permutation per
    epoch e = k div N; micro-step m on rank r takes k = ((s * world + r) * accum + a) * B + row for
    step s = m div accum, a = m mod accum."""

    def __init__(self, windows: PackedWindows, batch_size: int, accum: int, seed: int, rank: int,
                 world: int, start: int) -> None:
        self.w, self.batch_size, self.accum = windows, batch_size, accum
        self.seed, self.rank, self.world, self.start = seed, rank, world, start
        self._perm: tuple[int, np.ndarray] | None = None

    def _permutation(self, epoch: int) -> np.ndarray:
        if self._perm is None or self._perm[0] != epoch:
            rng = np.random.default_rng([self.seed, TRAIN_STREAM, epoch])
            self._perm = (epoch, rng.permutation(len(self.w)))
        return self._perm[1]

    def window_ids(self, micro_step: int) -> np.ndarray:
        step, a = divmod(micro_step, self.accum)
        first = ((step * self.world + self.rank) * self.accum + a) * self.batch_size
        ks = np.arange(first, first + self.batch_size)
        n = len(self.w)
        return np.array([self._permutation(int(k // n))[k % n] for k in ks])

    def batch(self, micro_step: int) -> tuple[torch.Tensor, ...]:
        ids = self.window_ids(micro_step)
        step = micro_step // self.accum
        step_tokens = sum(int(self.w.loss_tokens[self.window_ids(step * self.accum + a)].sum())
                          for a in range(self.accum))
        return (torch.from_numpy(self.w.x[ids]), torch.from_numpy(self.w.y[ids]),
                torch.from_numpy(self.w.doc[ids]), torch.tensor(step_tokens, dtype=torch.float32))

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        worker = get_worker_info()
        first, stride = (0, 1) if worker is None else (worker.id, worker.num_workers)
        for micro_step in count(self.start + first, stride):
            yield self.batch(micro_step)


class ValPacks(Dataset):
    """Validation micro-batches of this rank (batch j goes to rank j mod world): (x, y, doc, bytes)."""

    def __init__(self, windows: PackedWindows, batch_size: int, max_batches: int, rank: int = 0,
                 world: int = 1) -> None:
        self.w, self.batch_size = windows, batch_size
        n_batches = min(max_batches, -(-len(windows) // batch_size))
        # The same number of batches on every rank (a rank alone in a sharded forward would wait
        # forever): the remainder is left out, and counted by the caller as `val_batches_left_out`.
        self.left_out = n_batches % world
        if n_batches and n_batches < world:
            raise DialogueDataError(f"{n_batches} validation batch(es) for {world} processes; every process "
                                    "needs one: add val conversations or lower sft.val_batch_size")
        self.indices = list(range(rank, n_batches - self.left_out, world))

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:
        j = self.indices[i]
        rows = slice(j * self.batch_size, (j + 1) * self.batch_size)
        return (torch.from_numpy(self.w.x[rows]), torch.from_numpy(self.w.y[rows]),
                torch.from_numpy(self.w.doc[rows]),
                torch.tensor(int(self.w.loss_bytes[rows].sum()), dtype=torch.float64))


class SFTDataModule(L.LightningDataModule):
    """Packed train windows for the Lightning loop; validation batches for the evaluation callback."""

    def __init__(self, train: PackedWindows, val: PackedWindows, micro_batch_size: int,
                 val_batch_size: int, val_batches: int, accum: int, seed: int, pin_memory: bool) -> None:
        super().__init__()
        self.train, self.val = train, val
        self.micro_batch_size, self.val_batch_size = micro_batch_size, val_batch_size
        self.val_batches, self.accum, self.seed, self.pin_memory = val_batches, accum, seed, pin_memory

    def _loader(self, dataset: Dataset | IterableDataset) -> DataLoader:
        pin = self.pin_memory and self.trainer is not None and self.trainer.strategy.root_device.type == "cuda"
        # Batches are cut in the main process: a step's loss-token count needs all its micro-batches,
        # and round-robin workers would interleave steps. Cutting is a few array lookups.
        return DataLoader(dataset, batch_size=None, num_workers=0, pin_memory=pin,
                          generator=torch.Generator().manual_seed(self.seed))

    def _rank_world(self) -> tuple[int, int]:
        if self.trainer is None:
            return 0, 1
        return self.trainer.global_rank, self.trainer.world_size

    def train_dataloader(self) -> DataLoader:
        step = self.trainer.global_step if self.trainer is not None else 0
        rank, world = self._rank_world()
        return self._loader(TrainPacks(self.train, self.micro_batch_size, self.accum, self.seed, rank,
                                       world, start=step * self.accum))

    def eval_dataloader(self) -> DataLoader:
        rank, world = self._rank_world()
        return self._loader(ValPacks(self.val, self.val_batch_size, self.val_batches, rank, world))
