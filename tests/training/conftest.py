"""Tiny token files in the tokenize stage's format, and a small CPU config around them."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from omegaconf import DictConfig

from src.config import compose, load_config

VOCAB = 48
EOT = 0
# Data-stage groups, dropped from test configs (their schema defaults apply): training reads none of
# them, and their files interpolate one another (build_dialogues and tokenize read tokenizer.out_dir).
FOREIGN_GROUPS = ("normalize", "scrape_librus", "clean_librus", "scrape_opensubs", "clean_subs",
                  "tokenizer", "tokenize", "build_dialogues")


def write_tokens(directory: Path, n_train: int = 6000, n_val: int = 1500, seed: int = 0) -> Path:
    """A learnable stream: documents of short ascending runs, separated by the end-of-text id."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    splits = {}
    for name, n in (("train", n_train), ("val", n_val)):
        out, docs = [], 0
        while len(out) < n:
            start = int(rng.integers(1, VOCAB - 8))
            out.extend(range(start, start + int(rng.integers(3, 8))))
            if rng.random() < 0.1:
                out.append(EOT)
                docs += 1
        arr = np.asarray(out[:n], dtype=np.uint16)
        arr.tofile(directory / f"{name}.bin")
        splits[name] = {"file": f"{name}.bin", "n_tokens": n, "n_bytes": 2 * n, "n_docs": docs}
    meta = {"vocab_size": VOCAB, "dtype": "uint16", "eot_id": EOT, "splits": splits,
            "tokenizer": {"kind": "test", "dir": str(directory / "no-tokenizer"), "sha256": ""}}
    (directory / "meta.json").write_text(json.dumps(meta))
    return directory


@pytest.fixture
def token_dir(tmp_path: Path) -> Path:
    return write_tokens(tmp_path / "tokens")


@pytest.fixture
def make_config(tmp_path: Path, token_dir: Path) -> Callable[..., DictConfig]:
    """`make_config(*overrides)`: the small config below with extra Hydra overrides."""
    return lambda *overrides: small_config(tmp_path, token_dir, *overrides)


def small_config(tmp_path: Path, token_dir: Path, *overrides: str) -> DictConfig:
    """A ~20k-parameter model on the CPU, a few steps, everything written under tmp_path."""
    return load_config(compose([
        # Only the sections pretraining reads come from conf/; the rest keep their schema defaults.
        *(f"~{group}" for group in FOREIGN_GROUPS),
        "tracking.enabled=false",
        "model.n_layer=1", "model.n_head=2", "model.n_embd=32", "model.block_size=16",
        "trainer.enable_progress_bar=false", "trainer.num_threads=1",
        f"pretrain.data_dir={token_dir}", f"pretrain.ckpt_dir={tmp_path / 'ckpt'}",
        f"pretrain.report_dir={tmp_path / 'report'}",
        "pretrain.max_steps=6", "pretrain.warmup_steps=2", "pretrain.micro_batch_size=4",
        "pretrain.log_every=1", "pretrain.val_every=3", "pretrain.save_every=1",
        "pretrain.val_batches=2", "pretrain.sample_tokens=0",
        *overrides,
    ]))
