"""Random windows over token memmaps: deterministic per step, resumable, checked against meta.json."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from src.training.data import (
    TokenDataError,
    TrainWindows,
    ValWindows,
    bits_per_byte,
    open_tokens,
    read_meta,
)


def _stream(token_dir: Path, start: int, n: int, rank: int = 0, seed: int = 7, workers: int = 0):
    meta = read_meta(token_dir)
    ds = TrainWindows(meta.split("train"), meta.dtype, block_size=16, batch_size=4, seed=seed,
                      rank=rank, start=start)
    loader = DataLoader(ds, batch_size=None, num_workers=workers)
    out = []
    for x, y in loader:
        out.append((x, y))
        if len(out) == n:
            return out
    return out


def test_windows_are_a_pure_function_of_the_step(token_dir: Path) -> None:
    full = _stream(token_dir, 0, 6)
    resumed = _stream(token_dir, 3, 3)
    for (x1, y1), (x2, y2) in zip(full[3:], resumed, strict=True):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert not torch.equal(full[0][0], full[1][0])
    assert not torch.equal(full[0][0], _stream(token_dir, 0, 1, rank=1)[0][0])
    assert not torch.equal(full[0][0], _stream(token_dir, 0, 1, seed=8)[0][0])


def test_workers_keep_the_step_order(token_dir: Path) -> None:
    single = _stream(token_dir, 5, 4)
    parallel = _stream(token_dir, 5, 4, workers=2)
    for (x1, _), (x2, _) in zip(single, parallel, strict=True):
        assert torch.equal(x1, x2)


def test_targets_are_inputs_shifted_by_one(token_dir: Path) -> None:
    meta = read_meta(token_dir)
    x, y = _stream(token_dir, 0, 1)[0]
    assert x.shape == y.shape == (4, 16) and x.dtype == torch.int64
    assert torch.equal(x[:, 1:], y[:, :-1])
    tokens = np.asarray(open_tokens(meta.split("train"), meta.dtype))
    row = x[0].numpy()
    starts = [i for i in range(len(tokens) - 16) if np.array_equal(tokens[i:i + 16], row)]
    assert starts, "a window must be a contiguous slice of the token file"


def test_validation_batches_are_fixed_and_split_over_ranks(token_dir: Path) -> None:
    meta = read_meta(token_dir)
    args = (meta.split("val"), meta.dtype, 16, 4, 7, 6)
    whole = ValWindows(*args)
    rank0, rank1 = ValWindows(*args, rank=0, world_size=2), ValWindows(*args, rank=1, world_size=2)
    assert len(whole) == 6 and len(rank0) == len(rank1) == 3
    assert torch.equal(whole[1][0], rank1[0][0]) and torch.equal(whole[4][0], rank0[2][0])
    assert torch.equal(whole[2][0], ValWindows(*args)[2][0])


def test_uneven_validation_split_is_refused(token_dir: Path) -> None:
    """Ranks with different numbers of forwards hang FSDP (each forward is a collective)."""
    meta = read_meta(token_dir)
    with pytest.raises(ValueError, match="5 validation batches do not split evenly over 2 ranks"):
        ValWindows(meta.split("val"), meta.dtype, 16, 4, 7, 5, rank=0, world_size=2)


def test_meta_mismatch_names_the_file(token_dir: Path) -> None:
    meta = json.loads((token_dir / "meta.json").read_text())
    meta["splits"]["val"]["n_tokens"] += 1
    (token_dir / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(TokenDataError, match=r"val\.bin: expected"):
        read_meta(token_dir)


def test_missing_meta_says_which_stage_to_run(tmp_path: Path) -> None:
    with pytest.raises(TokenDataError, match="tokenize"):
        read_meta(tmp_path)


def test_window_longer_than_split_is_a_clear_error(token_dir: Path) -> None:
    meta = read_meta(token_dir)
    ds = TrainWindows(meta.split("val"), meta.dtype, block_size=5000, batch_size=1, seed=0, rank=0, start=0)
    with pytest.raises(TokenDataError, match="block_size"):
        next(iter(ds))


def test_bits_per_byte_of_a_uniform_guess_on_known_text() -> None:
    # "привет, мир": 11 characters, 9 of them Cyrillic (2 bytes each in UTF-8) plus ", " = 20 bytes.
    # A character model guessing uniformly among 32 symbols spends 5 bits on each of the 11
    # characters: 55 bits over 20 bytes = 2.75 bits per byte.
    text = "привет, мир"
    assert len(text) == 11 and len(text.encode("utf-8")) == 20
    assert bits_per_byte(math.log(32), tokens_per_byte=11 / 20) == pytest.approx(2.75)
    # The same text as one byte-level token per byte, uniform over 256: exactly 8 bits per byte.
    assert bits_per_byte(math.log(256), tokens_per_byte=1.0) == pytest.approx(8.0)
