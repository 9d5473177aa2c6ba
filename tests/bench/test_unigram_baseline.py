"""The unigram baseline on token files whose answer is known by hand."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from src.bench.unigram_baseline import main, unigram_score
from src.training.data import read_meta


def write_split_files(directory: Path, train: list[int], val: list[int], val_bytes: int,
                      vocab: int = 4) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    splits = {}
    for name, ids, n_bytes in (("train", train, len(train)), ("val", val, val_bytes)):
        np.asarray(ids, dtype=np.uint16).tofile(directory / f"{name}.bin")
        splits[name] = {"file": f"{name}.bin", "n_tokens": len(ids), "n_bytes": n_bytes, "n_docs": 1}
    (directory / "meta.json").write_text(json.dumps(
        {"vocab_size": vocab, "dtype": "uint16", "eot_id": 0, "splits": splits}))
    return directory


def test_two_equally_likely_tokens_cost_one_bit_each(tmp_path: Path) -> None:
    # Train: ids 1 and 2 equally often; val: 8 tokens of those ids, one byte each. Unsmoothed, each
    # token has probability 1/2: 1 bit per token = 1 bit per byte.
    data = write_split_files(tmp_path / "tokens", [1, 2] * 50, [1, 2, 2, 1, 1, 1, 2, 2], val_bytes=8)
    score = unigram_score(read_meta(data), alpha=0)
    assert score.val_loss == pytest.approx(math.log(2))
    assert score.val_bpb == pytest.approx(1.0)
    # Two bytes per token (Cyrillic characters in UTF-8, say): half a bit per byte.
    data = write_split_files(tmp_path / "cyr", [1, 2] * 50, [1, 2, 2, 1], val_bytes=8)
    assert unigram_score(read_meta(data), alpha=0).val_bpb == pytest.approx(0.5)


def test_smoothing_gives_unseen_tokens_a_finite_cost(tmp_path: Path) -> None:
    # Train: 6 x id 1, 2 x id 2; val: one id 3 (never seen). Add-one over 4 ids: p(3) = 1 / 12.
    data = write_split_files(tmp_path / "tokens", [1] * 6 + [2] * 2, [3], val_bytes=1)
    meta = read_meta(data)
    assert unigram_score(meta, alpha=1).val_bpb == pytest.approx(math.log2(12))
    unsmoothed = unigram_score(meta, alpha=0)
    assert math.isinf(unsmoothed.val_bpb) and unsmoothed.unseen_val_tokens == 1


def test_command_prints_the_baseline_and_names_bad_input(tmp_path: Path, capsys) -> None:
    data = write_split_files(tmp_path / "tokens", [1, 2] * 50, [1, 2] * 4, val_bytes=8)
    assert main(["--data", str(data), "--alpha", "0"]) == 0
    assert "val bpb 1.000" in capsys.readouterr().out
    (data / "meta.json").write_text("{")
    assert main(["--data", str(data)]) == 1
    assert f"error: unigram_baseline: {data / 'meta.json'}: not valid JSON" in capsys.readouterr().err
