"""`python -m src.train`: Hydra sweeps over the pretrain stage, one MLflow run per point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from src.paths import PROJECT_ROOT

FOREIGN_GROUPS = ("normalize", "scrape_librus", "clean_librus", "scrape_opensubs", "clean_subs")


@pytest.mark.slow  # two training jobs in a fresh interpreter: ~20 s idle, more on a busy machine
def test_sweep_gives_one_tracked_run_per_point(tmp_path: Path, tmp_tracking_uri: str) -> None:
    import mlflow

    from tests.training.conftest import write_tokens

    tokens = write_tokens(tmp_path / "tokens")
    cmd = [
        sys.executable, "-m", "src.train", "-m", "+experiment=cpu_smoke", "model.n_layer=1,2",
        # Keep the run small and independent of the data-stage sections other work may be editing.
        *(f"~{group}" for group in FOREIGN_GROUPS),
        "model.n_embd=32", "model.n_head=2", "model.block_size=16", "pretrain.max_steps=4",
        "pretrain.warmup_steps=1", "pretrain.val_every=2", "pretrain.save_every=2",
        "pretrain.sample_tokens=0",
        "trainer.enable_progress_bar=false", f"pretrain.data_dir={tokens}",
        f"tracking.uri={tmp_tracking_uri}", f"hydra.sweep.dir={tmp_path / 'sweep'}",
    ]
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    done = subprocess.run(cmd, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    mlflow.set_tracking_uri(tmp_tracking_uri)
    runs = mlflow.search_runs(experiment_names=["pretrain"], output_format="list")
    assert sorted(r.data.params["model.n_layer"] for r in runs) == ["1", "2"]
    assert all(r.info.status == "FINISHED" for r in runs)
    assert all(r.data.params["pretrain.name"] == "cpu_smoke" for r in runs)
    # One report per job directory (a copy also sits beside each job's checkpoints).
    reports = sorted(p for p in (tmp_path / "sweep").rglob("metrics.json") if p.parent.name != "checkpoints")
    assert len(reports) == 2
    params = sorted(json.loads(p.read_text())["params"] for p in reports)
    assert params[0] < params[1]
    assert all((p.parent / "checkpoints" / "last.ckpt").exists() for p in reports)


def test_only_the_first_process_tracks(monkeypatch: pytest.MonkeyPatch) -> None:
    from src.tracking import RANK_VARIABLES, is_global_zero

    for name in RANK_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert is_global_zero()
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert is_global_zero()
    monkeypatch.setenv("RANK", "3")  # torchrun's worker 3
    assert not is_global_zero()
