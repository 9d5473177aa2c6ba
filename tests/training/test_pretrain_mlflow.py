"""A killed tracked run: its resume marks it KILLED and links the new MLflow run to it."""

from __future__ import annotations

from pathlib import Path

import pytest

from src.stage import execute_stage


def test_resume_marks_the_killed_run_and_links_to_it(tmp_path: Path, make_config, tmp_tracking_uri: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow

    from src.training.callbacks import Evaluator
    from src.training.checkpoint import read_checkpoint

    cfg = make_config("tracking.enabled=true", f"tracking.uri={tmp_tracking_uri}")
    original = Evaluator.on_step

    def killed_after_step_4(self, trainer, pl_module, step):
        original(self, trainer, pl_module, step)
        if step == 4:
            raise KeyboardInterrupt("simulated kill")

    monkeypatch.setattr(Evaluator, "on_step", killed_after_step_4)
    with pytest.raises((KeyboardInterrupt, SystemExit)):
        execute_stage("pretrain", cfg)
    monkeypatch.undo()
    client = mlflow.MlflowClient(tmp_tracking_uri)
    (first,) = mlflow.search_runs(experiment_names=["pretrain"], output_format="list")
    # A SIGKILL leaves no process to end the run: it stays RUNNING (here the runner could still end it).
    client.update_run(first.info.run_id, status="RUNNING")
    # no run id inside the checkpoint (a DVC output): the run carries the training identity's tag
    assert "mlflow_run_id" not in read_checkpoint(tmp_path / "ckpt" / "last.ckpt")
    assert client.get_run(first.info.run_id).data.tags["training_identity"]

    execute_stage("pretrain", cfg)
    runs = {r.info.run_id: r for r in mlflow.search_runs(experiment_names=["pretrain"], output_format="list")}
    assert len(runs) == 2
    killed = runs.pop(first.info.run_id)
    (resumed,) = runs.values()
    assert killed.info.status == "KILLED" and killed.info.end_time is not None
    assert resumed.info.status == "FINISHED"
    assert resumed.data.tags["resumed_from_run_id"] == killed.info.run_id
    assert killed.data.tags["resumed_by_run_id"] == resumed.info.run_id
    # The resumed run logged only the steps it trained.
    steps = [m.step for m in client.get_metric_history(resumed.info.run_id, "train/loss")]
    assert steps == [5, 6]
    assert resumed.data.tags["training_identity"] == killed.data.tags["training_identity"]


def test_a_finished_run_is_linked_but_keeps_its_status(tmp_path: Path, make_config,
                                                       tmp_tracking_uri: str) -> None:
    import mlflow

    cfg = make_config("tracking.enabled=true", f"tracking.uri={tmp_tracking_uri}",
                      "pretrain.max_steps=2", "pretrain.warmup_steps=1", "pretrain.val_every=2")
    execute_stage("pretrain", cfg)
    execute_stage("pretrain", cfg)  # `dvc repro` again: the finished run is picked up, nothing trains
    first, second = sorted(mlflow.search_runs(experiment_names=["pretrain"], output_format="list"),
                           key=lambda r: r.info.start_time)
    assert first.info.status == second.info.status == "FINISHED"
    assert second.data.tags["resumed_from_run_id"] == first.info.run_id
