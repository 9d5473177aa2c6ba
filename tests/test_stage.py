"""The stage runner: summary, MLflow run with params/metrics/artifacts, failure status."""

from __future__ import annotations

import pytest

from src.config import compose, load_config
from src.paths import main_checkout_root
from src.stage import StageSummary, execute_stage


def _cfg(uri: str, enabled: bool = True):
    return load_config(compose([f"tracking.uri={uri}", f"tracking.enabled={str(enabled).lower()}"]))


def test_summary_renders_counts() -> None:
    s = StageSummary("x")
    s.add("read", "pages", 2)
    s.add("read", "pages", 3)
    s.add("dropped", "undecodable", 1)
    text = s.render()
    assert "pages" in text and "5" in text and "undecodable" in text
    assert s.metrics()["summary.read.pages"] == 5.0


def test_timings_are_shown_and_logged_apart_from_counts() -> None:
    s = StageSummary("x")
    s.add("wrote", "rows", 3)
    s.timings["tokens_per_s"] = 1234.5
    assert "timing  tokens_per_s" in s.render()
    assert s.metrics() == {"summary.wrote.rows": 3.0, "timing.tokens_per_s": 1234.5}
    assert s.to_dict()["timings"] == {"tokens_per_s": 1234.5}


def test_stage_run_is_tracked(tmp_tracking_uri: str) -> None:
    import mlflow

    def fn(cfg, run):
        run.summary.add("read", "items", 4)
        run.log_metrics({"quality": 0.5})

    execute_stage("clean_librus", _cfg(tmp_tracking_uri), fn)
    mlflow.set_tracking_uri(tmp_tracking_uri)
    runs = mlflow.search_runs(experiment_names=["clean_librus"], output_format="list")
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.metrics["quality"] == 0.5
    assert run.data.metrics["summary.read.items"] == 4.0
    assert any(k.startswith("clean_librus.") for k in run.data.params)
    assert run.data.tags["stage"] == "clean_librus"
    artifacts = [a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id)]
    assert "summary.json" in artifacts and "config.yaml" in artifacts


def test_failed_stage_is_marked_failed(tmp_tracking_uri: str) -> None:
    import mlflow

    def fn(cfg, run):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        execute_stage("clean_subs", _cfg(tmp_tracking_uri), fn)
    mlflow.set_tracking_uri(tmp_tracking_uri)
    runs = mlflow.search_runs(experiment_names=["clean_subs"], output_format="list")
    assert runs[0].info.status == "FAILED"


def test_disabled_tracking_still_summarizes() -> None:
    called = []
    summary = execute_stage("clean_subs", _cfg("sqlite:///unused.db", enabled=False),
                            lambda cfg, run: called.append(run.run_id))
    assert called == [None] and summary.stage == "clean_subs"


def test_temp_experiment_copy_tracks_into_main_checkout(tmp_path) -> None:
    copy = tmp_path / "repo" / ".dvc" / "tmp" / "exps" / "tmpabc"
    assert main_checkout_root(copy) == tmp_path / "repo"
    assert main_checkout_root(tmp_path / "repo") == tmp_path / "repo"
