"""The kto stage on a tiny chat model: outputs, the collapse guard, reference modes, resume, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from src.config import ConfigError
from src.generation.loading import load_for_generation
from src.stage import StageRun, execute_stage
from src.training.checkpoint import read_checkpoint
from src.training.kto_data import PairsDataError
from src.training.kto_stage import KTOInitError, kto
from tests.training.kto_fixtures import (
    kto_config,
    kto_setup,
    pair_rows,
    write_chat_checkpoint,
    write_pairs,
)

# A run pushed toward collapse: lr 1e4 x KTO's default, no clipping, undesirables weighted 100:1.
# The rewards margin grows by tens of nats while the held-out desirable replies lose log-probability.
COLLAPSE = ("kto.lr=3e-2", "kto.max_steps=60", "kto.val_every=5", "kto.warmup_steps=0", "kto.beta=1.0",
            "kto.grad_clip=0", "kto.desirable_weight=0.01")


def run_kto(cfg) -> StageRun:
    run = StageRun("kto", cfg, tracking_active=False)
    kto(cfg, run)
    return run


def report(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "report" / "metrics.json").read_text())


def test_kto_writes_chat_checkpoints_and_metrics(tmp_path: Path) -> None:
    tok = kto_setup(tmp_path)
    run = run_kto(kto_config(tmp_path))
    rep = report(tmp_path)
    assert rep["steps"] == 6 and rep["collapsed"] is False
    assert rep["val_loss"] is not None and rep["desirable_drift"] is not None and "distinct2" in rep
    assert rep["step0_desirable_drift"] == 0.0  # step 0 is the SFT model itself
    assert run.summary.read["train_pairs"] == 30 and run.summary.wrote["optimizer_steps"] == 6
    for name in ("best.ckpt", "last.ckpt"):
        ckpt = read_checkpoint(tmp_path / "kto" / name)
        hp = ckpt["hyper_parameters"]
        assert hp["chat"] is True and hp["tokenizer_sha256"] == tok.sha256
        assert hp["model"]["dropout"] == 0.0  # the SFT checkpoint had 0.1
        assert not any(k.startswith("reference") for k in ckpt["state_dict"])
    loaded = load_for_generation(tmp_path / "kto" / "last.ckpt")
    assert loaded.chat
    curve = json.loads((tmp_path / "kto" / "val_curve.json").read_text())
    assert [e["step"] for e in curve] == [0, 3, 6]
    # the training loss beside each check; none at step 0 (no training step yet), never in the report
    assert curve[0]["train_loss"] is None and all(e["train_loss"] > 0 for e in curve[1:])
    assert "train_loss" not in rep and "step0_train_loss" not in rep
    # the generation check's rates come from every failure detector (src/eval/detectors.py)
    for key in ("loop_rate", "canned_rate", "markdown_wall_rate", "eot_rate", "distinct2", "mean_reply_tokens"):
        assert key in rep and f"step0_{key}" in rep and all(key in e for e in curve)


def test_weights_move_and_frozen_reference_matches_precomputed(tmp_path: Path) -> None:
    kto_setup(tmp_path)
    run_kto(kto_config(tmp_path, "kto.lr=1e-3"))
    precomputed = report(tmp_path)
    start = read_checkpoint(tmp_path / "sft" / "best.ckpt")["state_dict"]
    end = read_checkpoint(tmp_path / "kto" / "last.ckpt")["state_dict"]
    assert not torch.equal(start["model.lm_head.weight"], end["model.lm_head.weight"])
    run_kto(kto_config(tmp_path, "kto.lr=1e-3", "kto.reference=frozen", f"kto.ckpt_dir={tmp_path / 'frozen'}"))
    frozen = report(tmp_path)
    for key in ("val_loss", "desirable_drift", "rewards_margin"):
        assert frozen[key] == pytest.approx(precomputed[key], rel=1e-4, abs=1e-6)


def test_guard_stops_a_collapsing_run_on_desirable_drift(tmp_path: Path, tmp_tracking_uri: str) -> None:
    import mlflow

    kto_setup(tmp_path)
    cfg = kto_config(tmp_path, *COLLAPSE, "kto.sample_tokens=0", "tracking.enabled=true",
                     f"tracking.uri={tmp_tracking_uri}")
    summary = execute_stage("kto", cfg)
    rep = report(tmp_path)
    assert rep["collapsed"] is True and rep["steps"] < 60
    assert "desirable drift" in rep["collapse_reason"] and rep["desirable_drift"] < -5
    assert rep["rewards_margin"] > 5  # preference accuracy alone would have called this a success
    assert rep["best_step"] < rep["collapse_step"]
    assert summary.wrote["stopped_by_collapse_guard_at_step"] == rep["collapse_step"]
    assert any("collapse guard stopped training" in n for n in summary.notes)
    (mlrun,) = mlflow.search_runs(experiment_names=["kto"], output_format="list")
    assert "desirable drift" in mlrun.data.tags["kto.collapse"]
    history = mlflow.MlflowClient(tmp_tracking_uri).get_metric_history(mlrun.info.run_id, "guard/collapsed")
    assert [m.value for m in history][-1] == 1.0 and all(m.value == 0.0 for m in history[:-1])
    # best.ckpt is from before the collapse: rerunning resumes the stopped run and trains nothing more
    best = read_checkpoint(tmp_path / "kto" / "best.ckpt")
    assert best["global_step"] == rep["best_step"]
    run_kto(kto_config(tmp_path, *COLLAPSE, "kto.sample_tokens=0"))
    assert report(tmp_path)["steps"] == rep["steps"]


def test_guard_stops_when_replies_get_worse_than_the_sft_models(tmp_path: Path) -> None:
    kto_setup(tmp_path)
    run = run_kto(kto_config(tmp_path, "kto.lr=1e-2", "kto.max_steps=60", "kto.val_every=5", "kto.warmup_steps=0",
                             "kto.sample_tokens=24", "kto.min_desirable_drift=-1e9"))
    rep = report(tmp_path)
    assert rep["collapsed"] is True and rep["steps"] < 60
    assert "step 0" in rep["collapse_reason"]  # a generation metric compared with the SFT model's
    assert run.summary.wrote["stopped_by_collapse_guard_at_step"] == rep["collapse_step"]


def test_exact_resume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from src.training.kto_guard import KTOEvaluator

    kto_setup(tmp_path)
    run_kto(kto_config(tmp_path, "kto.lr=1e-3", f"kto.ckpt_dir={tmp_path / 'whole'}"))
    whole = read_checkpoint(tmp_path / "whole" / "last.ckpt")["state_dict"]
    original = KTOEvaluator.on_step

    def killed_after_step_4(self, trainer, pl_module, step):
        original(self, trainer, pl_module, step)
        if step == 4:
            raise KeyboardInterrupt("simulated kill")

    monkeypatch.setattr(KTOEvaluator, "on_step", killed_after_step_4)
    with pytest.raises((KeyboardInterrupt, SystemExit)):  # Lightning turns the interrupt into an exit
        run_kto(kto_config(tmp_path, "kto.lr=1e-3"))
    monkeypatch.undo()
    run = run_kto(kto_config(tmp_path, "kto.lr=1e-3"))
    assert any("resumed from" in n for n in run.summary.notes)
    resumed = read_checkpoint(tmp_path / "kto" / "last.ckpt")["state_dict"]
    for key, value in whole.items():
        assert torch.equal(value, resumed[key]), key


def test_micro_batch_of_one_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="kto.micro_batch_size"):
        kto_config(tmp_path, "kto.micro_batch_size=1")
    # apo_zero_unpaired has no reference point, so it needs no mismatched pairs
    kto_setup(tmp_path)
    run_kto(kto_config(tmp_path, "kto.micro_batch_size=1", "kto.loss_type=apo_zero_unpaired", "kto.max_steps=2",
                       "kto.val_every=2", "kto.sample_tokens=0"))
    rep = report(tmp_path)
    assert rep["steps"] == 2 and rep["val_loss"] is not None


def test_bad_inputs_name_the_file(tmp_path: Path) -> None:
    tok = kto_setup(tmp_path)
    write_pairs(tmp_path / "pairs", [{k: v for k, v in r.items() if k != "label"} for r in pair_rows(4, 0, "train")])
    with pytest.raises(PairsDataError, match=r"pairs\.parquet: missing column\(s\) \['label'\]"):
        run_kto(kto_config(tmp_path))
    rows = pair_rows(4, 0, "train")
    rows[2]["split"] = "test"
    write_pairs(tmp_path / "pairs", rows)
    with pytest.raises(PairsDataError, match="row 2: split"):
        run_kto(kto_config(tmp_path))
    write_pairs(tmp_path / "pairs", pair_rows(6, 0, "train"))
    write_chat_checkpoint(tmp_path / "sft" / "best.ckpt", tok, tmp_path / "tokenizer", chat=False)
    with pytest.raises(KTOInitError, match="not a chat model"):
        run_kto(kto_config(tmp_path))
