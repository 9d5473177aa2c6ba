"""`python -m src.train +experiment=sft_cpu`: SFT experiments and sweeps run like pretraining's."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from src.paths import PROJECT_ROOT
from tests.training.sft_fixtures import sft_setup

# Sections of the data stages, left out so the job does not depend on what other work edits there.
FOREIGN_GROUPS = ("scrape_librus", "clean_librus", "scrape_opensubs", "clean_subs")


@pytest.mark.slow  # two SFT jobs in a fresh interpreter: ~20 s idle, more on a busy machine
def test_sft_sweep_gives_one_tracked_chat_run_per_point(tmp_path: Path, tmp_tracking_uri: str) -> None:
    import mlflow

    sft_setup(tmp_path)
    cmd = [
        sys.executable, "-m", "src.train", "-m", "+experiment=sft_cpu", "sft.lr=1e-3,2e-3",
        *(f"~{group}" for group in FOREIGN_GROUPS),
        f"sft.data_dir={tmp_path / 'dialogues'}", f"sft.tokenizer_dir={tmp_path / 'tokenizer'}",
        f"sft.init_checkpoint={tmp_path / 'pretrain' / 'best.ckpt'}", "sft.max_steps=3",
        "sft.warmup_steps=1", "sft.val_every=3", "sft.save_every=3", "sft.micro_batch_size=4",
        "sft.sample_tokens=4", "trainer.enable_progress_bar=false",
        f"tracking.uri={tmp_tracking_uri}", f"hydra.sweep.dir={tmp_path / 'sweep'}",
    ]
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    done = subprocess.run(cmd, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    mlflow.set_tracking_uri(tmp_tracking_uri)
    runs = mlflow.search_runs(experiment_names=["sft"], output_format="list")
    assert sorted(r.data.params["sft.lr"] for r in runs) == ["0.001", "0.002"]
    assert all(r.info.status == "FINISHED" for r in runs)
    checkpoints = sorted((tmp_path / "sweep").rglob("last.ckpt"))
    assert len(checkpoints) == 2
    assert all(torch.load(c, weights_only=True)["hyper_parameters"]["chat"] is True for c in checkpoints)


def test_unknown_task_is_a_config_error(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    done = subprocess.run([sys.executable, "-m", "src.train", "task=finetune", "tracking.enabled=false",
                           f"hydra.run.dir={tmp_path}"], cwd=PROJECT_ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and "'task'" in done.stderr and "finetune" in done.stderr, done.stderr[-2000:]
