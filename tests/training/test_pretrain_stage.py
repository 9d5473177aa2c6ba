"""The pretrain stage end to end on tiny token files: outputs, checkpoints, resume, failures."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from src.stage import StageRun
from src.training.pretrain import pretrain


def run_pretrain(cfg) -> StageRun:
    run = StageRun("pretrain", cfg, tracking_active=False)
    pretrain(cfg, run)
    return run


def test_pretrain_writes_checkpoints_and_metrics(tmp_path: Path, make_config) -> None:
    cfg = make_config()
    run = run_pretrain(cfg)
    report = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert report["steps"] == 6
    assert report["params"] > 0
    # wall-clock figures live beside the DVC-tracked report and in the summary, never inside it
    assert not {"tokens_per_s", "mfu"} & set(report)
    assert run.summary.timings["tokens_per_s"] > 0 and run.summary.timings["train_seconds"] > 0
    assert math.isfinite(report["val_loss"]) and report["val_bpb"] == pytest.approx(
        report["val_loss"] * 0.5 / math.log(2))
    for name in ("best.ckpt", "last.ckpt"):
        ckpt = torch.load(tmp_path / "ckpt" / name, weights_only=True)
        hp = ckpt["hyper_parameters"]
        assert type(hp) is dict and hp["model"]["vocab_size"] == 48 and isinstance(hp["tokenizer_dir"], str)
        assert all(k.startswith("model.") for k in ckpt["state_dict"])
    assert run.summary.wrote["optimizer_steps"] == 6


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["state_dict"]


@pytest.mark.parametrize("recipe", [("pretrain.optimizer=adamw", "pretrain.schedule=cosine"),
                                    ("pretrain.optimizer=muon", "pretrain.schedule=wsd")])
def test_killed_and_resumed_run_matches_uninterrupted(tmp_path: Path, token_dir: Path, recipe: tuple,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from src.training.callbacks import Evaluator
    from tests.training.conftest import small_config

    # Dropout makes the global RNG matter; save_every=2 and a kill after step 3 means the resumed
    # run must redo step 3 from the step-2 checkpoint and land on the same weights anyway.
    overrides = ("model.dropout=0.1", "pretrain.save_every=2", "pretrain.grad_accum_steps=2", *recipe)
    whole = small_config(tmp_path / "whole", token_dir, *overrides)
    run_pretrain(whole)

    original = Evaluator.on_step

    def killed_after_step_3(self, trainer, pl_module, step):
        original(self, trainer, pl_module, step)
        if step == 3:
            raise KeyboardInterrupt("simulated kill")

    broken = small_config(tmp_path / "broken", token_dir, *overrides)
    monkeypatch.setattr(Evaluator, "on_step", killed_after_step_3)
    with pytest.raises((KeyboardInterrupt, SystemExit)):
        run_pretrain(broken)
    assert torch.load(tmp_path / "broken" / "ckpt" / "last.ckpt", weights_only=True)["global_step"] == 2
    monkeypatch.setattr(Evaluator, "on_step", original)
    run = run_pretrain(broken)
    assert any("resumed from" in note for note in run.summary.notes)

    a = _weights(tmp_path / "whole" / "ckpt" / "last.ckpt")
    b = _weights(tmp_path / "broken" / "ckpt" / "last.ckpt")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    curve_a = json.loads((tmp_path / "whole" / "ckpt" / "val_curve.json").read_text())
    curve_b = json.loads((tmp_path / "broken" / "ckpt" / "val_curve.json").read_text())
    assert curve_a == curve_b


def test_non_finite_loss_stops_at_once_and_keeps_last_checkpoint(
        tmp_path: Path, make_config, monkeypatch: pytest.MonkeyPatch) -> None:
    from src.training.module import NonFiniteError, PretrainModule

    original = PretrainModule.training_step

    def poisoned_at_step_4(self, batch, batch_idx):
        loss = original(self, batch, batch_idx)
        return loss * float("nan") if self.global_step == 3 else loss

    monkeypatch.setattr(PretrainModule, "training_step", poisoned_at_step_4)
    with pytest.raises(NonFiniteError, match="optimizer step 4"):
        run_pretrain(make_config())
    ckpt = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 3
    assert all(torch.isfinite(t).all() for t in ckpt["state_dict"].values())


def test_tokens_per_step_must_divide(make_config) -> None:
    from src.training.pretrain import PretrainConfigError

    with pytest.raises(PretrainConfigError, match="tokens_per_step=100 is not a multiple"):
        run_pretrain(make_config("pretrain.tokens_per_step=100"))


def test_tokens_per_step_sets_accumulation(tmp_path: Path, make_config) -> None:
    run_pretrain(make_config("pretrain.tokens_per_step=192", "pretrain.max_steps=3"))
    report = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert report["tokens_per_step"] == 192  # 4 sequences x 16 tokens x 3 micro-batches


def _char_tokenizer_with_48_ids(directory: Path) -> Path:
    """A char tokenizer whose vocabulary is exactly the test data's 48 ids, so samples decode."""
    from collections import Counter

    from src.tokenizers.char import train_char

    chars = "абвгдеёжзийклмнопрстуфхцчшщъыьэюя 01234567"
    tokenizer = train_char(Counter(chars), vocab_size=0, min_count=1, normalize_cfg=None)
    assert tokenizer.vocab_size == 48
    tokenizer.save(directory)
    return directory


def test_tracked_run_logs_metrics_samples_and_finishes(tmp_path: Path, make_config,
                                                       tmp_tracking_uri: str) -> None:
    import mlflow

    from src.stage import execute_stage

    tok_dir = _char_tokenizer_with_48_ids(tmp_path / "tokenizer")
    cfg = make_config("tracking.enabled=true", f"tracking.uri={tmp_tracking_uri}",
                      f"pretrain.tokenizer_dir={tok_dir}", "pretrain.sample_tokens=5",
                      "pretrain.sample_prompts=['два','три']", "trainer.peak_tflops=1.0")
    execute_stage("pretrain", cfg)
    mlflow.set_tracking_uri(tmp_tracking_uri)
    (run,) = mlflow.search_runs(experiment_names=["pretrain"], output_format="list")
    assert run.info.status == "FINISHED"
    client = mlflow.MlflowClient()
    for key in ("train/loss", "train/lr", "train/grad_norm", "train/tokens_per_s", "train/mfu"):
        history = client.get_metric_history(run.info.run_id, key)
        assert sorted(m.step for m in history) == [1, 2, 3, 4, 5, 6], key
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val/bpb")] == [3, 6]
    assert run.data.metrics["model.params"] > 0 and "final.val_bpb" in run.data.metrics
    samples = [a.path for a in client.list_artifacts(run.info.run_id, "samples")]
    assert samples == ["samples/step_000003.txt", "samples/step_000006.txt"]
    text = mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/samples/step_000006.txt")
    assert "## два\nдва" in text and "## три\nтри" in text
    assert "metrics.json" in [a.path for a in client.list_artifacts(run.info.run_id)]


def test_rerun_resumes_only_the_same_config(tmp_path: Path, make_config) -> None:
    run_pretrain(make_config("pretrain.max_steps=3", "pretrain.warmup_steps=1"))
    first = _weights(tmp_path / "ckpt" / "last.ckpt")
    # The same command again: the finished run is picked up and not retrained.
    again = run_pretrain(make_config("pretrain.max_steps=3", "pretrain.warmup_steps=1"))
    assert any("resumed from" in n for n in again.summary.notes)
    assert all(torch.equal(first[k], v) for k, v in _weights(tmp_path / "ckpt" / "last.ckpt").items())
    # Another learning rate is another run: it starts over instead of mixing the two.
    other = run_pretrain(make_config("pretrain.max_steps=3", "pretrain.warmup_steps=1", "pretrain.lr=0.01"))
    assert any("starting over" in n and "pretrain.lr" in n for n in other.summary.notes)
    assert not torch.equal(first["model.transformer.wte.weight"],
                           _weights(tmp_path / "ckpt" / "last.ckpt")["model.transformer.wte.weight"])


def test_bf16_autocast_path_runs_on_cpu(tmp_path: Path, make_config) -> None:
    # The GPU configs' precision; on the CPU it exercises the same autocast contexts in training,
    # validation and sampling.
    tok_dir = _char_tokenizer_with_48_ids(tmp_path / "tokenizer")
    run_pretrain(make_config("trainer.precision=bf16-mixed", "pretrain.max_steps=3",
                             "pretrain.warmup_steps=1", f"pretrain.tokenizer_dir={tok_dir}",
                             "pretrain.sample_tokens=3"))
    report = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert math.isfinite(report["val_loss"])
    assert (tmp_path / "ckpt" / "samples.txt").read_text().count("# step 3") == 1


def test_fsdp_strategy_wraps_blocks_and_refuses_muon(make_config) -> None:
    from lightning.pytorch.strategies import FSDPStrategy

    from src.models.gpt import GPT
    from src.training.pretrain import PretrainConfigError, make_strategy

    cfg = make_config("trainer=fsdp")
    model = GPT.from_config_dict({**cfg.model, "vocab_size": 48})
    strategy = make_strategy(cfg.trainer, model, "adamw")
    assert isinstance(strategy, FSDPStrategy)
    policy = strategy.kwargs["auto_wrap_policy"]
    assert {c.__name__ for c in policy._module_classes} == {"Block"}
    assert strategy.kwargs["use_orig_params"]  # per-parameter weight decay survives sharding
    with pytest.raises(PretrainConfigError, match="muon"):
        make_strategy(cfg.trainer, model, "muon")


def test_identical_runs_write_identical_checkpoint_bytes(tmp_path: Path, make_config) -> None:
    """The checkpoint folder is a DVC output: no temp-file names, run ids or timings inside, or a
    fresh clone's `dvc repro` rewrites dvc.lock."""
    import shutil

    cfg = make_config()
    run_pretrain(cfg)
    first = {p.name: p.read_bytes() for p in (tmp_path / "ckpt").iterdir()}
    shutil.rmtree(tmp_path / "ckpt")
    shutil.rmtree(tmp_path / "report")
    run_pretrain(cfg)
    second = {p.name: p.read_bytes() for p in (tmp_path / "ckpt").iterdir()}
    assert first.keys() == second.keys()
    assert [name for name in first if first[name] != second[name]] == []
