"""Damaged checkpoints: named in one line, moved aside, and the run resumes from the other good
checkpoint or starts over; the next run is never stuck on them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from src.stage import StageRun
from src.training.checkpoint import CheckpointError, read_resumable
from src.training.pretrain import pretrain


def run_pretrain(cfg) -> StageRun:
    run = StageRun("pretrain", cfg, tracking_active=False)
    pretrain(cfg, run)
    return run


def killed_after(step_to_kill: int, monkeypatch: pytest.MonkeyPatch) -> None:
    from src.training.callbacks import Evaluator

    original = Evaluator.on_step

    def on_step(self, trainer, pl_module, step):
        original(self, trainer, pl_module, step)
        if step == step_to_kill:
            raise KeyboardInterrupt("simulated kill")

    monkeypatch.setattr(Evaluator, "on_step", on_step)


def damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "random":
        path.write_bytes(bytes(range(256)) * 8)
    elif how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    else:  # a readable file that is not a training checkpoint
        torch.save({"state_dict": {}}, path)


@pytest.mark.parametrize("how", ["random", "truncated", "empty", "weights-only"])
def test_read_resumable_names_the_file(tmp_path: Path, how: str) -> None:
    path = tmp_path / "last.ckpt"
    torch.save({"state_dict": {}, "global_step": 1}, path)
    damage(path, how)
    with pytest.raises(CheckpointError, match=rf"^{path}: (unreadable checkpoint|not a resumable)"):
        read_resumable(path)


def test_corrupt_last_resumes_from_best(tmp_path: Path, make_config, monkeypatch) -> None:
    cfg = make_config()  # 6 steps, validation (and best.ckpt) at 3 and 6, last.ckpt every step
    killed_after(4, monkeypatch)
    with pytest.raises((KeyboardInterrupt, SystemExit)):  # Lightning turns it into an exit
        run_pretrain(cfg)
    monkeypatch.undo()
    ckpt_dir = tmp_path / "ckpt"
    damage(ckpt_dir / "last.ckpt", "truncated")

    run = run_pretrain(cfg)
    notes = "\n".join(run.summary.notes)
    assert f"{ckpt_dir / 'last.ckpt'}: unreadable checkpoint" in notes
    assert f"resumed from {ckpt_dir / 'best.ckpt'} at step 3 (last.ckpt was unreadable)" in notes
    aside = list(ckpt_dir.glob("last.ckpt.corrupt-*"))
    assert len(aside) == 1 and f"moved aside to {aside[0].name}" in notes
    assert json.loads((tmp_path / "report" / "metrics.json").read_text())["steps"] == 6
    assert read_resumable(ckpt_dir / "last.ckpt")["global_step"] == 6
    # The next run finds the finished run and is not disturbed by the file moved aside.
    again = run_pretrain(cfg)
    assert any(n.startswith(f"resumed from {ckpt_dir / 'last.ckpt'} at step 6") for n in again.summary.notes)


def test_every_checkpoint_corrupt_starts_over(tmp_path: Path, make_config, monkeypatch) -> None:
    cfg = make_config("pretrain.max_steps=4", "pretrain.warmup_steps=1", "pretrain.val_every=2")
    killed_after(3, monkeypatch)
    with pytest.raises((KeyboardInterrupt, SystemExit)):  # Lightning turns it into an exit
        run_pretrain(cfg)
    monkeypatch.undo()
    ckpt_dir = tmp_path / "ckpt"
    damage(ckpt_dir / "last.ckpt", "random")
    damage(ckpt_dir / "best.ckpt", "empty")

    run = run_pretrain(cfg)
    notes = "\n".join(run.summary.notes)
    assert f"{ckpt_dir / 'last.ckpt'}: unreadable checkpoint" in notes
    assert f"{ckpt_dir / 'best.ckpt'}: unreadable checkpoint" in notes
    assert "no readable checkpoint of this run is left; starting over" in notes
    assert len(list(ckpt_dir.glob("*.corrupt-*"))) == 2
    assert read_resumable(ckpt_dir / "last.ckpt")["global_step"] == 4
    assert read_resumable(ckpt_dir / "best.ckpt")["global_step"] in (2, 4)


def test_corrupt_checkpoint_through_the_entry_point(tmp_path: Path, token_dir: Path, capsys) -> None:
    """Before: a torch traceback not naming the file, on this and every later run."""
    from src.run import main

    ckpt_dir = tmp_path / "ckpt"
    ckpt_dir.mkdir()
    (ckpt_dir / "last.ckpt").write_bytes(b"\x00garbage" * 100)
    args = ["pretrain", "tracking.enabled=false", "model.n_layer=1", "model.n_head=2", "model.n_embd=32",
            "model.block_size=16", "trainer.enable_progress_bar=false", f"pretrain.data_dir={token_dir}",
            f"pretrain.ckpt_dir={ckpt_dir}", f"pretrain.report_dir={tmp_path / 'report'}",
            "pretrain.max_steps=2", "pretrain.warmup_steps=1", "pretrain.micro_batch_size=2",
            "pretrain.val_every=2", "pretrain.save_every=2", "pretrain.val_batches=1",
            "pretrain.sample_tokens=0"]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err and f"{ckpt_dir / 'last.ckpt'}: unreadable checkpoint" in err


def test_a_finished_run_of_other_training_code_starts_over(tmp_path: Path, make_config, monkeypatch) -> None:
    """DVC reruns pretrain when its code changes; the persisted finished run must not be "resumed"."""
    cfg = make_config("pretrain.max_steps=2", "pretrain.warmup_steps=1", "pretrain.val_every=2")
    run_pretrain(cfg)
    again = run_pretrain(cfg)  # same code: the finished run is kept
    assert any(n.startswith("resumed from") for n in again.summary.notes)
    monkeypatch.setattr("src.training.pretrain.training_code_sha256", lambda: "other-code")
    changed = run_pretrain(cfg)
    notes = "\n".join(changed.summary.notes)
    assert "is from another run (code_sha256:" in notes and "starting over" in notes
    assert read_resumable(tmp_path / "ckpt" / "last.ckpt")["hyper_parameters"]["identity"]["code_sha256"] == "other-code"
