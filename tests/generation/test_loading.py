"""Loading checks the tokenizer a checkpoint or export was trained with (its sha256), because the
tokenizer is found by a path that every tokenizer preset shares."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from src.export import export
from src.generation.loading import (
    LoadError,
    load_checkpoint,
    load_for_generation,
    recorded_tokenizer_sha256,
    verify_tokenizer,
)
from src.models.gpt import GPT
from src.tokenizers.char import CharTokenizer

ALPHABET = "abcdefghijklmnopqrstuvwxyz .,?!\n"
OTHER_ALPHABET = "абвгдежзийклмнопрстуфхцчшщъыьэюя .,?!\n"


def write_checkpoint(tmp_path: Path, hparams_extra: dict | None = None, record_hash: bool = True) -> Path:
    tok = CharTokenizer(ALPHABET)
    tok.save(tmp_path / "tokenizer")
    torch.manual_seed(0)
    model = GPT({"vocab_size": 64, "block_size": 16, "n_layer": 1, "n_head": 2, "n_embd": 16})
    hparams = {"model": model.config_dict(), "tokenizer_dir": str(tmp_path / "tokenizer"),
               **({"tokenizer_sha256": tok.sha256} if record_hash else {}), **(hparams_extra or {})}
    path = tmp_path / "last.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
                "hyper_parameters": hparams}, path)
    return path


def retrain_tokenizer(directory: Path) -> str:
    """Another tokenizer (as after switching presets) written over the same path; its sha256."""
    other = CharTokenizer(OTHER_ALPHABET)
    other.save(directory)
    return other.sha256


def test_a_checkpoint_with_its_own_tokenizer_loads_and_reports_the_hash(tmp_path):
    ckpt = write_checkpoint(tmp_path)
    loaded = load_checkpoint(ckpt)
    assert loaded.tokenizer_sha256 == CharTokenizer(ALPHABET).sha256 == loaded.tokenizer.sha256


def test_a_retrained_tokenizer_at_the_same_path_is_refused_naming_both_hashes_and_paths(tmp_path):
    ckpt = write_checkpoint(tmp_path)
    ours = CharTokenizer(ALPHABET).sha256
    theirs = retrain_tokenizer(tmp_path / "tokenizer")
    with pytest.raises(LoadError) as info:
        load_for_generation(ckpt)
    message = str(info.value)
    assert ours in message and theirs in message
    assert str(ckpt) in message and str(tmp_path / "tokenizer") in message


def test_pretrain_checkpoints_recording_the_hash_only_in_their_identity_are_checked(tmp_path):
    ckpt = write_checkpoint(tmp_path, record_hash=False, hparams_extra={
        "identity": {"data": {"tokenizer_sha256": CharTokenizer(ALPHABET).sha256}}})
    load_checkpoint(ckpt)
    retrain_tokenizer(tmp_path / "tokenizer")
    with pytest.raises(LoadError, match="trained with the tokenizer of sha256"):
        load_checkpoint(ckpt)


def test_a_checkpoint_without_a_recorded_hash_loads_with_a_warning(tmp_path, capsys):
    ckpt = write_checkpoint(tmp_path, record_hash=False)
    loaded = load_checkpoint(ckpt)
    assert loaded.tokenizer is not None
    err = capsys.readouterr().err
    assert "warning:" in err and str(ckpt) in err and "records no tokenizer sha256" in err


def test_recorded_hash_prefers_the_top_level_key():
    assert recorded_tokenizer_sha256({"tokenizer_sha256": "a", "identity": {"data": {"tokenizer_sha256": "b"}}}) == "a"
    assert recorded_tokenizer_sha256({"identity": {"data": {"tokenizer_sha256": "b"}}}) == "b"
    assert recorded_tokenizer_sha256({"identity": None}) == ""


def test_verify_tokenizer_is_usable_on_its_own(tmp_path, capsys):
    tok = CharTokenizer(ALPHABET)
    tok.save(tmp_path / "tok")
    assert verify_tokenizer(tok.sha256, tmp_path / "tok", "init.ckpt") is True
    assert verify_tokenizer("", tmp_path / "tok", "init.ckpt") is False
    assert "init.ckpt records no tokenizer sha256" in capsys.readouterr().err
    with pytest.raises(LoadError, match="init.ckpt was trained with the tokenizer of sha256 0+, but"):
        verify_tokenizer("0" * 64, tmp_path / "tok", "init.ckpt")
    with pytest.raises(LoadError, match="absent"):
        verify_tokenizer(tok.sha256, tmp_path / "absent", "init.ckpt")


def test_export_records_the_hash_and_the_normalization_and_refuses_a_swapped_tokenizer(tmp_path):
    settings = {"enabled": True, "yo_to_e": True}
    ckpt = write_checkpoint(tmp_path, hparams_extra={"normalize": settings})
    out = export(ckpt, tmp_path / "export")
    config = json.loads((out / "config.json").read_text())
    assert config["tokenizer_sha256"] == CharTokenizer(ALPHABET).sha256
    assert config["normalize"] == settings
    loaded = load_for_generation(out)
    assert loaded.normalize == settings and loaded.tokenizer_sha256 == config["tokenizer_sha256"]
    retrain_tokenizer(out / "tokenizer")
    with pytest.raises(LoadError, match="config.json was trained with the tokenizer of sha256"):
        load_for_generation(out)


def test_export_of_a_checkpoint_whose_tokenizer_changed_is_refused(tmp_path):
    ckpt = write_checkpoint(tmp_path)
    retrain_tokenizer(tmp_path / "tokenizer")
    with pytest.raises(LoadError, match="trained with the tokenizer of sha256"):
        export(ckpt, tmp_path / "export")
    assert not (tmp_path / "export").exists()


def test_pretrain_checkpoints_record_the_tokenizer_hash_and_normalization():
    from src.config.sections.pretrain import PretrainConfig
    from src.config.sections.trainer import TrainerConfig
    from src.training.module import PretrainModule

    model = {"vocab_size": 64, "block_size": 16, "n_layer": 1, "n_head": 2, "n_embd": 16}
    identity = {"data": {"vocab_size": 64, "tokenizer_sha256": "f" * 64}}
    module = PretrainModule(model, asdict(PretrainConfig()), asdict(TrainerConfig()), "data/tokenizer",
                            identity, normalize={"enabled": True})
    assert module.hparams["tokenizer_sha256"] == "f" * 64
    assert module.hparams["normalize"] == {"enabled": True}
