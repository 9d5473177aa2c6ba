"""The sft stage end to end on tiny dialogues: outputs, chat marking, refusals, resume."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from src.generation.loading import load_for_generation
from src.stage import StageRun
from src.training.sft import SFTInitError, sft
from tests.training.sft_fixtures import sft_config, sft_setup, write_pretrained, write_tokenizer


def run_sft(cfg) -> StageRun:
    run = StageRun("sft", cfg, tracking_active=False)
    sft(cfg, run)
    return run


def test_sft_writes_chat_checkpoints_metrics_and_samples(tmp_path: Path) -> None:
    tok = sft_setup(tmp_path)
    run = run_sft(sft_config(tmp_path))
    report = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert report["steps"] == 6 and math.isfinite(report["val_loss"]) and math.isfinite(report["val_bpb"])
    for key in ("eot_rate", "loop_rate", "mean_reply_tokens", "train_padding_share", "train_loss_token_share"):
        assert key in report, key
    assert 0 <= report["eot_rate"] <= 1 and 0 < report["train_loss_token_share"] < 1
    for name in ("best.ckpt", "last.ckpt"):
        hp = torch.load(tmp_path / "sft" / name, weights_only=True)["hyper_parameters"]
        assert hp["chat"] is True and hp["tokenizer_sha256"] == tok.sha256
    loaded = load_for_generation(tmp_path / "sft" / "last.ckpt")
    assert loaded.chat is True  # what `python -m src.chat` and the export read
    samples = (tmp_path / "sft" / "samples.txt").read_text()
    assert "## user: hi cat?" in samples and "eot_rate" in samples
    assert run.summary.read["train_conversations"] == 40 and run.summary.wrote["optimizer_steps"] == 6
    # val_curve.json holds the training loss beside each validation (the eval stage's loss plots)
    curve = json.loads((tmp_path / "sft" / "val_curve.json").read_text())
    assert curve and all(math.isfinite(e["train_loss"]) for e in curve) and "train_loss" not in report


def test_sft_starts_from_the_pretrained_weights(tmp_path: Path) -> None:
    sft_setup(tmp_path)
    run_sft(sft_config(tmp_path, "sft.max_steps=1", "sft.warmup_steps=0", "sft.lr=1e-12", "sft.val_every=1",
                       "sft.sample_tokens=0"))
    start = torch.load(tmp_path / "pretrain" / "best.ckpt", weights_only=True)["state_dict"]
    after = torch.load(tmp_path / "sft" / "last.ckpt", weights_only=True)
    for key, value in start.items():
        torch.testing.assert_close(after["state_dict"][key], value, rtol=0, atol=1e-6)
    assert after["global_step"] == 1  # a fresh schedule, not the pretraining run's step 10


def test_mismatched_tokenizer_is_refused_naming_both(tmp_path: Path) -> None:
    sft_setup(tmp_path)
    write_pretrained(tmp_path / "pretrain" / "best.ckpt", write_tokenizer(tmp_path / "other", "xyz \n"),
                     tmp_path / "other", sha256="f" * 64)
    with pytest.raises(SFTInitError) as err:
        run_sft(sft_config(tmp_path))
    message = str(err.value)
    assert "best.ckpt" in message and "ffffffffffff" in message and str(tmp_path / "tokenizer") in message


def test_checkpoint_without_room_for_chat_tokens_is_refused(tmp_path: Path) -> None:
    tok = sft_setup(tmp_path)
    write_pretrained(tmp_path / "pretrain" / "best.ckpt", tok, tmp_path / "tokenizer", vocab_size=3)
    with pytest.raises(SFTInitError, match="lacks the chat token"):
        run_sft(sft_config(tmp_path))


def test_from_scratch_needs_no_checkpoint(tmp_path: Path) -> None:
    sft_setup(tmp_path)
    (tmp_path / "pretrain" / "best.ckpt").unlink()
    run_sft(sft_config(tmp_path, "sft.init=scratch", "sft.max_steps=2", "sft.warmup_steps=0", "sft.sample_tokens=0"))
    assert torch.load(tmp_path / "sft" / "last.ckpt", weights_only=True)["hyper_parameters"]["chat"] is True


def test_killed_sft_run_resumes_to_the_same_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from src.training.callbacks import Evaluator

    overrides = ("model.dropout=0.1", "sft.save_every=2", "sft.grad_accum_steps=2", "sft.sample_tokens=0",
                 "trainer.deterministic=true")
    whole_dir, broken_dir = tmp_path / "whole", tmp_path / "broken"
    for d in (whole_dir, broken_dir):
        sft_setup(d)
    run_sft(sft_config(whole_dir, *overrides))

    original = Evaluator.on_step

    def killed_after_step_3(self, trainer, pl_module, step):
        original(self, trainer, pl_module, step)
        if step == 3:
            raise KeyboardInterrupt("simulated kill")

    monkeypatch.setattr(Evaluator, "on_step", killed_after_step_3)
    with pytest.raises((KeyboardInterrupt, SystemExit)):
        run_sft(sft_config(broken_dir, *overrides))
    monkeypatch.setattr(Evaluator, "on_step", original)
    run = run_sft(sft_config(broken_dir, *overrides))
    assert any("resumed from" in note for note in run.summary.notes)
    a = torch.load(whole_dir / "sft" / "last.ckpt", weights_only=True)["state_dict"]
    b = torch.load(broken_dir / "sft" / "last.ckpt", weights_only=True)["state_dict"]
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_missing_dialogues_file_is_one_clear_error(tmp_path: Path) -> None:
    from src.errors import InputError

    sft_setup(tmp_path)
    (tmp_path / "dialogues" / "dialogues.parquet").unlink()
    with pytest.raises(InputError, match="dialogues.parquet: not found"):
        run_sft(sft_config(tmp_path))


def test_val_conversations_follow_the_too_long_policy_and_an_empty_val_is_said(tmp_path: Path) -> None:
    """Val conversations are truncated at a turn boundary like train ones (counted); when none fits,
    metrics.json holds null (not NaN), no best.ckpt is written and the summary says why."""
    from tests.training.sft_fixtures import conv, sample_conversations, write_dialogues

    sft_setup(tmp_path)
    long_reply = "cat " * 30  # 120 characters: more than the 64-token context with its question
    fits_once = conv("hi?", "hi.", "sun?", long_reply)
    write_dialogues(tmp_path / "dialogues", sample_conversations(40, 0), [fits_once] * 3)
    run = run_sft(sft_config(tmp_path, "sft.max_steps=2", "sft.warmup_steps=0", "sft.val_every=2",
                         "sft.sample_tokens=0"))
    assert run.summary.dropped["val_truncated_at_turn"] == 3
    report = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert math.isfinite(report["val_loss"]) and (tmp_path / "sft" / "best.ckpt").is_file()

    for d in ("sft", "report"):
        for f in (tmp_path / d).iterdir():
            f.unlink()
    write_dialogues(tmp_path / "dialogues", sample_conversations(40, 0), [conv("hi?", long_reply)] * 2)
    run = run_sft(sft_config(tmp_path, "sft.max_steps=2", "sft.warmup_steps=0", "sft.val_every=2",
                         "sft.sample_tokens=0"))
    assert run.summary.dropped["val_too_long_first_reply"] == 2
    text = (tmp_path / "report" / "metrics.json").read_text()
    assert "NaN" not in text and json.loads(text)["val_loss"] is None
    assert not (tmp_path / "sft" / "best.ckpt").exists() and (tmp_path / "sft" / "last.ckpt").is_file()
    assert any("2 val conversation(s), none fits the context of 64" in n for n in run.summary.notes)
