"""reply_check on a tiny chat checkpoint and KTO pairs: figures per checkpoint, drift, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from src.eval.reply_check import main
from tests.training.kto_fixtures import kto_setup, write_chat_checkpoint


def perturbed_copy(src: Path, dst: Path) -> Path:
    ckpt = torch.load(src, weights_only=True)
    key = next(k for k in ckpt["state_dict"] if k.endswith("weight"))
    ckpt["state_dict"][key] = ckpt["state_dict"][key] * 3.0
    torch.save(ckpt, dst)
    return dst


def test_figures_per_checkpoint_and_drift_from_the_first(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    kto_setup(tmp_path, n_train=2, n_val=4)
    sft = tmp_path / "sft" / "best.ckpt"
    other = perturbed_copy(sft, tmp_path / "sft" / "other.ckpt")
    out = tmp_path / "check.json"
    assert main([str(sft), str(other), str(sft), "--pairs", str(tmp_path / "pairs" / "pairs.parquet"),
                 "--max-new-tokens", "12", "--show", "2", "--json", str(out)]) == 0
    results = json.loads(out.read_text(encoding="utf-8"))
    first, second, again = (r["figures"] for r in results)
    assert first["prompts"] == 4 and first["desirable"] == 4  # the val split's prompts, each once
    for key in ("loop_rate", "canned_rate", "markdown_wall_rate", "no_end_rate", "eot_rate"):
        assert 0.0 <= first[key] <= 1.0
    assert first["eot_rate"] == pytest.approx(1 - first["no_end_rate"])
    assert first["drift"] == 0.0 and again == first  # same weights, same seed: same figures
    assert second["drift"] == pytest.approx(second["desirable_logp"] - first["desirable_logp"])
    assert second["drift"] != 0.0
    assert [r["reply"] for r in results[0]["replies"]] == [r["reply"] for r in results[2]["replies"]]
    shown = capsys.readouterr().out
    assert "| checkpoint | loop_rate |" in shown and shown.count("\n> ") == 2


def test_bad_inputs_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    tok = kto_setup(tmp_path, n_train=2, n_val=2)
    pairs = str(tmp_path / "pairs" / "pairs.parquet")
    base = write_chat_checkpoint(tmp_path / "base.ckpt", tok, tmp_path / "tokenizer", chat=False)
    assert main([str(base), "--pairs", pairs]) == 1
    assert main([str(tmp_path / "sft" / "best.ckpt"), "--pairs", str(tmp_path / "missing.parquet")]) == 1
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and all(e.startswith("error: reply_check: ") for e in errors)
    assert "not a chat model" in errors[0] and "missing.parquet" in errors[1]
