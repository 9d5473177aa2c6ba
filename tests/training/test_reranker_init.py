"""reranker.init_from: the own encoder starts from a project LM checkpoint of the same tokenizer."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from src.config.sections.model import ModelConfig
from src.errors import InputError
from src.models.gpt import GPT
from src.stage import execute_stage
from src.tokenizers.char import CharTokenizer
from src.training.reranker import build_cross_encoder
from tests.training.test_reranker_stage import reranker_config, write_samples

CHARS = "abcdefghijklmnopqrstuvwxyz0123456789 |"


def lm_checkpoint(path: Path, tokenizer_sha: str, vocab: int, block_size: int = 64) -> GPT:
    """A pretrain-style Lightning checkpoint of a small GPT (3 layers, 48 wide)."""
    config = asdict(ModelConfig(name="lm", vocab_size=vocab, block_size=block_size, n_layer=3, n_head=2, n_embd=48))
    torch.manual_seed(1)
    lm = GPT.from_config_dict(config)
    torch.save({"state_dict": {f"model.{k}": v for k, v in lm.state_dict().items()},
                "hyper_parameters": {"model": config, "tokenizer_sha256": tokenizer_sha, "tokenizer_dir": "x"}}, path)
    return lm


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, GPT]:
    write_samples(tmp_path / "data")
    tok = CharTokenizer(CHARS)
    tok.save(tmp_path / "tok")
    return tmp_path, lm_checkpoint(tmp_path / "lm.ckpt", tok.sha256, tok.vocab_size)


def test_encoder_takes_the_checkpoint_architecture_and_weights(setup: tuple[Path, GPT]) -> None:
    tmp, lm = setup
    cfg = reranker_config(tmp, f"reranker.init_from={tmp / 'lm.ckpt'}")
    model, _, block = build_cross_encoder(cfg.reranker)
    enc = model.encoder
    # the checkpoint's layers and width; the reranker's block (48, cut from 64 positions)
    assert enc.cfg["n_layer"] == 3 and enc.cfg["n_embd"] == 48 and block == 48 == enc.block_size
    for name, value in lm.state_dict().items():
        if name == "transformer.wpe.weight":
            assert torch.equal(enc.state_dict()[name], value[:48])
        else:
            assert torch.equal(enc.state_dict()[name], value), name


def test_stage_trains_from_the_checkpoint_and_names_what_it_copied(setup: tuple[Path, GPT]) -> None:
    tmp, _ = setup
    summary = execute_stage("reranker", reranker_config(tmp, f"reranker.init_from={tmp / 'lm.ckpt'}",
                                                        "reranker.max_steps=2", "reranker.val_every=2"))
    note = next(n for n in summary.notes if n.startswith("encoder initialized from"))
    assert "(48 of 48 rows)" in note and "0 fresh" in note
    assert summary.read["init_tensors_copied"] > 10


def test_another_tokenizer_or_a_bad_file_is_named(setup: tuple[Path, GPT]) -> None:
    tmp, _ = setup
    lm_checkpoint(tmp / "other.ckpt", "0" * 64, len(CHARS) + 8)
    with pytest.raises(InputError, match="reranker.init_from"):
        build_cross_encoder(reranker_config(tmp, f"reranker.init_from={tmp / 'other.ckpt'}").reranker)
    (tmp / "bad.ckpt").write_bytes(b"garbage")
    with pytest.raises(InputError, match="bad.ckpt.*reranker.init_from"):
        build_cross_encoder(reranker_config(tmp, f"reranker.init_from={tmp / 'bad.ckpt'}").reranker)
    with pytest.raises(InputError, match="missing.ckpt: checkpoint not found"):
        build_cross_encoder(reranker_config(tmp, f"reranker.init_from={tmp / 'missing.ckpt'}").reranker)
