"""Token windows for pretraining, cut at random positions from the `tokenize` stage's memmaps.

The positions of micro-batch `i` come from a generator seeded with (seed, rank, i), so what a step sees
is a pure function of its index: a resumed run continues with exactly the batches an uninterrupted one
would have drawn, and there is no iterator state to checkpoint. Validation uses one fixed set of
windows, so every evaluation of a run (and runs with the same data) are comparable.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import count
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, get_worker_info

from src.data.readers import open_memmap, read_json
from src.errors import InputError

TRAIN_STREAM = 0
VAL_STREAM = 1
DTYPES = {"uint16": np.uint16, "uint32": np.uint32}


class TokenDataError(InputError, ValueError):
    """Token files that are missing or do not match their meta.json; the message names the file."""


@dataclass(frozen=True)
class TokenSplit:
    path: Path
    n_tokens: int
    n_bytes: int
    n_docs: int

    @property
    def tokens_per_byte(self) -> float:
        return self.n_tokens / self.n_bytes if self.n_bytes else float("nan")


@dataclass(frozen=True)
class TokenMeta:
    vocab_size: int
    dtype: str
    eot_id: int
    splits: dict[str, TokenSplit]
    tokenizer_dir: str
    tokenizer_sha256: str

    def split(self, name: str) -> TokenSplit:
        if name not in self.splits:
            raise TokenDataError(f"meta.json: no split '{name}' (have: {', '.join(self.splits)})")
        return self.splits[name]


def read_meta(data_dir: Path) -> TokenMeta:
    """Read and check `data_dir/meta.json` against the token files it describes."""
    path = data_dir / "meta.json"
    if not path.exists():
        raise TokenDataError(f"{path}: not found; run the tokenize stage first (dvc repro tokenize)")
    raw = read_json(path, hint="rebuild it with the tokenize stage")
    try:
        dtype = str(raw["dtype"])
        if dtype not in DTYPES:
            raise TokenDataError(f"{path}: key 'dtype' is {dtype!r}, expected one of {sorted(DTYPES)}")
        splits = {}
        for name, info in raw["splits"].items():
            file = data_dir / info["file"]
            split = TokenSplit(file, int(info["n_tokens"]), int(info["n_bytes"]), int(info["n_docs"]))
            expected = split.n_tokens * np.dtype(DTYPES[dtype]).itemsize
            if not file.exists() or file.stat().st_size != expected:
                size = file.stat().st_size if file.exists() else "missing"
                raise TokenDataError(
                    f"{file}: expected {expected} bytes ({split.n_tokens} {dtype} tokens per "
                    f"{path.name} key 'splits.{name}.n_tokens'), found {size}"
                )
            splits[name] = split
        tokenizer = raw.get("tokenizer") or {}
        return TokenMeta(int(raw["vocab_size"]), dtype, int(raw["eot_id"]), splits,
                         str(tokenizer.get("dir", "")), str(tokenizer.get("sha256", "")))
    except TokenDataError:
        raise
    except KeyError as exc:
        raise TokenDataError(f"{path}: missing key {exc}") from None
    except (TypeError, ValueError, AttributeError) as exc:
        raise TokenDataError(f"{path}: unexpected layout ({type(exc).__name__}: {exc})") from None


def open_tokens(split: TokenSplit, dtype: str) -> np.ndarray:
    return open_memmap(split.path, DTYPES[dtype], hint="rebuild it with the tokenize stage")


# Tokens checked per read when scanning a split for out-of-vocabulary ids (bounded memory).
SCAN_CHUNK = 1 << 24


def check_token_range(meta: TokenMeta) -> None:
    """Every id in every split is below the vocabulary size: a file of garbage with the right length
    would otherwise train on it, or fail deep inside the embedding lookup without naming the file."""
    for split in meta.splits.values():
        tokens = open_tokens(split, meta.dtype)
        for start in range(0, len(tokens), SCAN_CHUNK):
            chunk = tokens[start:start + SCAN_CHUNK]
            top = int(chunk.max()) if len(chunk) else 0
            if top >= meta.vocab_size:
                where = start + int(np.argmax(chunk >= meta.vocab_size))
                raise TokenDataError(
                    f"{split.path}: token id {int(tokens[where])} at position {where} is outside the "
                    f"vocabulary (vocab_size={meta.vocab_size} in meta.json); the file is corrupt or "
                    "from another tokenizer: rebuild it with the tokenize stage")


def cut_windows(tokens: np.ndarray, rng: np.random.Generator, batch: int, length: int) -> torch.Tensor:
    """`batch` windows of `length` consecutive tokens at uniform random starts, as int64."""
    if len(tokens) < length:
        raise TokenDataError(
            f"only {len(tokens)} tokens in the split, fewer than one window of {length} "
            "(block_size + 1); use a smaller model.block_size or more data"
        )
    starts = rng.integers(0, len(tokens) - length + 1, size=batch)
    index = starts[:, None] + np.arange(length)[None, :]
    return torch.from_numpy(tokens[index].astype(np.int64))


def split_window(window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and next-token targets of a [B, T+1] window batch."""
    return window[:, :-1], window[:, 1:]


class TrainWindows(IterableDataset):
    """An endless stream of micro-batches starting at micro-step `start`; one item = one micro-batch."""

    def __init__(self, split: TokenSplit, dtype: str, block_size: int, batch_size: int, seed: int,
                 rank: int, start: int) -> None:
        self.split, self.dtype = split, dtype
        self.block_size, self.batch_size = block_size, batch_size
        self.seed, self.rank, self.start = seed, rank, start

    def batch(self, tokens: np.ndarray, micro_step: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, TRAIN_STREAM, self.rank, micro_step])
        return split_window(cut_windows(tokens, rng, self.batch_size, self.block_size + 1))

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        # Opened here, not in __init__, so each DataLoader worker maps the file itself.
        tokens = open_tokens(self.split, self.dtype)
        worker = get_worker_info()
        # Workers take micro-steps round-robin, the order in which the DataLoader collects them.
        first, stride = (0, 1) if worker is None else (worker.id, worker.num_workers)
        for micro_step in count(self.start + first, stride):
            yield self.batch(tokens, micro_step)


def even_val_batches(n_batches: int, world_size: int) -> int:
    """The most validation batches <= `n_batches` that split evenly over `world_size` ranks.

    Every rank must run the same number of forwards: under FSDP each forward is a collective, so a
    rank with one batch more waits forever for the others. The remainder is dropped (the caller says
    so), and fewer batches than ranks is refused.
    """
    if n_batches < world_size:
        raise ValueError(f"pretrain.val_batches={n_batches} is fewer than the {world_size} processes; "
                         f"every rank needs at least one batch: set it to a multiple of {world_size}")
    return n_batches - n_batches % world_size


class ValWindows(Dataset):
    """The fixed validation batches assigned to one rank (batch j goes to rank j mod world); the
    number of batches must divide evenly over the ranks (see `even_val_batches`)."""

    def __init__(self, split: TokenSplit, dtype: str, block_size: int, batch_size: int, seed: int,
                 n_batches: int, rank: int = 0, world_size: int = 1) -> None:
        if n_batches % world_size:
            raise ValueError(f"{n_batches} validation batches do not split evenly over {world_size} ranks")
        self.split, self.dtype = split, dtype
        self.block_size, self.batch_size, self.seed = block_size, batch_size, seed
        self.indices = list(range(rank, n_batches, world_size))
        self._tokens: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self._tokens is None:
            self._tokens = open_tokens(self.split, self.dtype)
        rng = np.random.default_rng([self.seed, VAL_STREAM, self.indices[i]])
        return split_window(cut_windows(self._tokens, rng, self.batch_size, self.block_size + 1))


class TokenDataModule(L.LightningDataModule):
    """Train windows for the Lightning loop; validation batches for the evaluation callback."""

    def __init__(self, meta: TokenMeta, block_size: int, micro_batch_size: int, val_batch_size: int,
                 val_batches: int, accum: int, seed: int, num_workers: int, pin_memory: bool) -> None:
        super().__init__()
        self.meta, self.block_size = meta, block_size
        self.micro_batch_size, self.val_batch_size = micro_batch_size, val_batch_size
        self.val_batches, self.accum, self.seed = val_batches, accum, seed
        self.num_workers, self.pin_memory = num_workers, pin_memory

    def _pin(self) -> bool:
        return self.pin_memory and self.trainer is not None and self.trainer.strategy.root_device.type == "cuda"

    def _loader(self, dataset: Dataset | IterableDataset, workers: int) -> DataLoader:
        # A private generator: DataLoader draws its base seed from it, not from the global RNG that
        # dropout uses, so building a loader on resume does not shift the model's random stream.
        return DataLoader(dataset, batch_size=None, num_workers=workers, pin_memory=self._pin(),
                          generator=torch.Generator().manual_seed(self.seed))

    def train_dataloader(self) -> DataLoader:
        # Called after a checkpoint is restored, so global_step is the step to continue from.
        step = self.trainer.global_step if self.trainer is not None else 0
        rank = self.trainer.global_rank if self.trainer is not None else 0
        windows = TrainWindows(self.meta.split("train"), self.meta.dtype, self.block_size,
                               self.micro_batch_size, self.seed, rank, start=step * self.accum)
        return self._loader(windows, self.num_workers)

    @property
    def val_block_size(self) -> int:
        """The validation context: block_size, or shorter when the whole val split is smaller (a
        tiny sample corpus) so that validation still runs, on windows as long as the split allows."""
        return max(1, min(self.block_size, self.meta.split("val").n_tokens - 1))

    def eval_dataloader(self) -> DataLoader:
        rank = self.trainer.global_rank if self.trainer is not None else 0
        world = self.trainer.world_size if self.trainer is not None else 1
        windows = ValWindows(self.meta.split("val"), self.meta.dtype, self.val_block_size,
                             self.val_batch_size, self.seed, self.val_batches, rank, world)
        return self._loader(windows, 0)


def bits_per_byte(loss_nats: float, tokens_per_byte: float) -> float:
    """Validation loss per token in nats -> bits per UTF-8 byte of the source text."""
    return loss_nats * tokens_per_byte / math.log(2)
