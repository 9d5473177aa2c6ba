"""python -m src.training.sft_eval: the stage's evaluation of any checkpoint."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from src.stage import StageRun
from src.training.sft import sft
from src.training.sft_eval import evaluate_checkpoint, main
from tests.training.sft_fixtures import sft_config, sft_setup


def test_matches_the_stage_on_its_own_checkpoint(tmp_path: Path) -> None:
    """On the stage's last.ckpt it reproduces the final validation the stage wrote to metrics.json."""
    sft_setup(tmp_path)
    cfg = sft_config(tmp_path)
    sft(cfg, StageRun("sft", cfg, tracking_active=False))
    report = json.loads((tmp_path / "report" / "metrics.json").read_text())
    got = evaluate_checkpoint(tmp_path / "sft" / "last.ckpt", cfg)["metrics"]
    assert got["val_loss"] == pytest.approx(report["val_loss"], rel=1e-5)
    assert got["val_bpb"] == pytest.approx(report["val_bpb"], rel=1e-5)
    for key in ("eot_rate", "loop_rate", "mean_reply_tokens"):
        assert got[key] == pytest.approx(report[key]), key


def test_cli_on_the_pretrained_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sft_setup(tmp_path)
    cfg = sft_config(tmp_path)
    overrides = [f"sft.{k}={v}" for k, v in cfg.sft.items() if k in {"data_dir", "tokenizer_dir"}]
    out = tmp_path / "before.json"
    assert main([str(tmp_path / "pretrain" / "best.ckpt"), "tracking.enabled=false", *overrides,
                 "sft.sample_tokens=8", "sft.sample_prompts=[hi cat?]", "--out", str(out)]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert math.isfinite(metrics["val_loss"]) and metrics["val_conversations"] == 8
    assert 0 <= metrics["eot_rate"] <= 1 and "## user: hi cat?" in json.loads(out.read_text())["replies"]


def test_missing_checkpoint_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path / "nope.ckpt"), "tracking.enabled=false"]) == 1
    assert capsys.readouterr().err.startswith("error: sft_eval: ")
