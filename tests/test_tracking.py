"""MLflow tracking: experiment kind, run names, the pipeline-run id, params hash, key metrics,
dataset inputs, and which runs produced a pipeline's outputs.

The MLflow tests share one sqlite store per module (creating one costs seconds of migrations)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import src.tracking_pipeline as tp
from src.config import compose, load_config
from src.stage import execute_stage
from src.tracking import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG, key_metrics, producing_runs
from src.tracking_inputs import digest_of, effective_paths, lock_entries, sha256_of
from src.tracking_pipeline import (
    ProcessInfo,
    current_pipeline_run_id,
    dvc_ancestor,
    params_hash,
    run_name,
)

# --- the pipeline-run id, from a fake process table ---------------------------------------------

SHELL = ("/bin/sh", "-c", "python -m stages.pretrain")


def table(*procs: ProcessInfo):
    by_pid = {p.pid: p for p in procs}
    return by_pid.get


def stage_under(dvc_pid: int, dvc_start: int, stage_pid: int, argv=("/venv/bin/python", "/venv/bin/dvc", "repro")):
    """A stage process under a shell under a DVC process, under an interactive shell."""
    return table(
        ProcessInfo(1, 0, 1, ("/sbin/init",)),
        ProcessInfo(50, 1, 10, ("bash",)),
        ProcessInfo(dvc_pid, 50, dvc_start, argv),
        ProcessInfo(stage_pid - 1, dvc_pid, dvc_start + 5, SHELL),
        ProcessInfo(stage_pid, stage_pid - 1, dvc_start + 6, ("python", "-m", "stages.pretrain")),
    )


def test_stages_of_one_dvc_invocation_share_the_id(monkeypatch) -> None:
    monkeypatch.setattr(tp.os, "getpid", lambda: 201)
    first = current_pipeline_run_id(env={}, read=stage_under(100, 5000, 201))
    monkeypatch.setattr(tp.os, "getpid", lambda: 301)
    second = current_pipeline_run_id(env={}, read=stage_under(100, 5000, 301))
    assert first == second and first.startswith("dvc-")
    # another invocation: a new pid, or the same pid reused later (a different start time)
    assert current_pipeline_run_id(env={}, read=stage_under(101, 5000, 301)) != first
    assert current_pipeline_run_id(env={}, read=stage_under(100, 9000, 301)) != first


def test_dvc_is_recognised_however_it_was_started(monkeypatch) -> None:
    monkeypatch.setattr(tp.os, "getpid", lambda: 201)
    for argv in (("/venv/bin/dvc", "exp", "run"), ("python3", "-m", "dvc", "repro"),
                 ("/usr/bin/python3.11", "/home/u/.venv/bin/dvc", "exp", "run", "-S", "x=1")):
        found = dvc_ancestor(read=stage_under(100, 5000, 201, argv))
        assert found is not None and found.pid == 100
    # `dvc` only as an argument of something else is not DVC
    assert dvc_ancestor(read=stage_under(100, 5000, 201, ("vim", "notes", "dvc"))) is None


def test_standalone_and_env_ids(monkeypatch) -> None:
    monkeypatch.setattr(tp.os, "getpid", lambda: 201)
    alone = table(ProcessInfo(1, 0, 1, ("/sbin/init",)), ProcessInfo(201, 1, 9, ("python", "-m", "src.run")))
    fresh = current_pipeline_run_id(env={}, read=alone)
    assert fresh.startswith("run-") and current_pipeline_run_id(env={}, read=alone) == fresh
    assert current_pipeline_run_id(env={tp.PIPELINE_ENV: "nightly-7"}, read=alone) == "nightly-7"


def test_read_process_parses_linux_proc(tmp_path: Path) -> None:
    proc = tmp_path / "42"
    proc.mkdir()
    # the command name may hold spaces and parentheses; fields after it are counted from its end
    rest = ["S", "7"] + ["0"] * 17 + ["123456"] + ["0"] * 10
    (proc / "stat").write_text(f"42 (dvc (x) y) {' '.join(rest)}\n")
    (proc / "cmdline").write_bytes(b"/venv/bin/python\0/venv/bin/dvc\0repro\0")
    info = tp.read_process(42, tmp_path)
    assert info == ProcessInfo(42, 7, 123456, ("/venv/bin/python", "/venv/bin/dvc", "repro"))
    assert tp.read_process(43, tmp_path) is None


# --- names and hashes ---------------------------------------------------------------------------

def test_params_hash_is_stable_and_sensitive() -> None:
    a = params_hash({"model.n_layer": 2, "seed": 1, "pretrain.lr": 0.001})
    assert a == params_hash({"seed": 1, "pretrain.lr": 0.001, "model.n_layer": 2})
    assert a != params_hash({"model.n_layer": 3, "seed": 1, "pretrain.lr": 0.001})
    assert len(a) == 64


def test_run_name_says_what_ran() -> None:
    assert run_name("pretrain", "tiny", "sample") == "pretrain · tiny · sample"
    assert run_name("sft", "dialog48m", "sample", exp_name="exp-3f2a1") == "sft · dialog48m · sample · exp-3f2a1"
    named = run_name("pretrain", "tiny", "sample", ["model.n_layer=2", "tracking.uri=x", "~markov", "pretrain.data_dir=/tmp/t",
                                                   "+experiment=cpu_smoke"])
    assert named == "pretrain · tiny · sample · model.n_layer=2,+experiment=cpu_smoke"
    assert run_name("clean_subs", None, None) == "clean_subs"
    assert run_name("scrape_librus", None, "???") == "scrape_librus"
    assert len(run_name("pretrain", "tiny", "sample", [f"a.b{i}=1" for i in range(200)])) == tp.MAX_RUN_NAME


# --- inputs: digests and paths ------------------------------------------------------------------

def test_digest_uses_dvc_lock_only_when_the_workspace_matches(tmp_path: Path) -> None:
    (tmp_path / "dvc.lock").write_text(
        "schema: '2.0'\nstages:\n  tokenize:\n    deps:\n    - path: data/tokens\n      md5: old.dir\n"
        "      size: 1\n      nfiles: 1\n    outs:\n    - path: data/tokens\n"
        "      md5: 0123456789abcdef0123456789abcdef.dir\n      size: 6\n      nfiles: 2\n")
    tokens = tmp_path / "data" / "tokens"
    tokens.mkdir(parents=True)
    (tokens / "a.bin").write_bytes(b"abc")
    (tokens / "b.bin").write_bytes(b"def")
    lock = lock_entries(tmp_path / "dvc.lock")
    assert lock["data/tokens"]["md5"].startswith("0123")  # the upstream out wins over a stale dep
    found = digest_of(tokens, lock["data/tokens"])
    assert (found.algorithm, found.digest, found.bytes, found.files) == ("md5", "0123456789abcdef0123456789abcdef", 6, 2)
    (tokens / "b.bin").write_bytes(b"defg")  # changed since dvc.lock: hashed here instead
    changed = digest_of(tokens, lock["data/tokens"])
    assert changed.algorithm == "sha256" and changed.digest == sha256_of(tokens)[:32]


def test_overridden_paths_move_their_deps() -> None:
    declared = {"sft.data_dir": "data/dialogues", "sft.tokenizer_dir": "data/tokenizer",
                "sft.init_checkpoint": "data/models/pretrain/best.ckpt", "sft.ckpt_dir": "data/models/sft"}
    params = {**declared, "sft.tokenizer_dir": "/tmp/tok", "sft.init_checkpoint": "/tmp/p/best.ckpt"}
    deps = ["data/dialogues", "data/models/pretrain/best.ckpt", "data/tokenizer/tokenizer.json"]
    assert list(effective_paths(deps, declared, params)) == [
        "data/dialogues", "/tmp/p/best.ckpt", "/tmp/tok/tokenizer.json"]


def test_key_metrics_flatten_the_report(tmp_path: Path) -> None:
    report = tmp_path / "metrics.json"
    report.write_text(json.dumps({"val_loss": 4.5, "best_val_loss": 4.25, "steps": 200, "val_bpb": None,
                                  "collapse_reason": "x", "lm": {"subtitles": {"bpb": 2.0}}}))
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    assert key_metrics([report, tmp_path / "absent.json", broken], {"tokens_per_s": 1000.0}) == {
        "key.val_loss": 4.5, "key.best_val_loss": 4.25, "key.steps": 200.0,
        "key.lm.subtitles.bpb": 2.0, "key.tokens_per_s": 1000.0}


# --- stage runs in one shared MLflow store ------------------------------------------------------

@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("mlflow")


def stage_config(store: Path, *overrides: str):
    uri = f"sqlite:///{store / 'mlflow.db'}"
    return load_config(compose([f"tracking.uri={uri}", "tracking.enabled=true",
                                f"pretrain.data_dir={store / 'tokens'}",
                                f"pretrain.report_dir={store / 'reports'}", *overrides]))


def fake_training(cfg, run) -> None:
    """Stands in for pretrain: writes the metrics.json a trained model would leave."""
    out = Path(cfg.pretrain.report_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps({"val_loss": 4.0 + cfg.pretrain.max_steps / 1000,
                                                  "val_bpb": 1.8, "best_val_loss": 3.9}))
    run.summary.timings["tokens_per_s"] = 1234.0


def run_pipeline(monkeypatch, store: Path, dvc_pid: int, *overrides: str) -> None:
    """pretrain and sft as two stage processes of one `dvc repro` (DVC process `dvc_pid`)."""
    monkeypatch.delenv(tp.PIPELINE_ENV, raising=False)
    monkeypatch.delenv(tp.DVC_EXP_ENV, raising=False)
    for stage, pid, fn in (("pretrain", 201, fake_training), ("sft", 301, lambda cfg, run: None)):
        monkeypatch.setattr(tp.os, "getpid", lambda pid=pid: pid)
        monkeypatch.setattr(tp, "read_process", stage_under(dvc_pid, 5000, pid))
        execute_stage(stage, stage_config(store, *overrides), fn)


def runs_of(store: Path, stage: str):
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{store / 'mlflow.db'}")
    return mlflow.search_runs(experiment_names=[stage], output_format="list", order_by=["attributes.start_time"])


def test_stage_runs_are_named_tagged_and_linked(monkeypatch, store: Path) -> None:
    import mlflow

    tokens = store / "tokens"
    tokens.mkdir()
    (tokens / "train.bin").write_bytes(b"\x01\x02" * 100)
    run_pipeline(monkeypatch, store, 100)
    run_pipeline(monkeypatch, store, 111, "pretrain.max_steps=70")

    first, second = runs_of(store, "pretrain")
    sft_first, sft_second = runs_of(store, "sft")
    assert first.info.run_name == "pretrain · tiny · sample"
    assert first.data.tags["pipeline.run_id"] == sft_first.data.tags["pipeline.run_id"]
    assert first.data.tags["pipeline.run_id"] != second.data.tags["pipeline.run_id"]
    assert first.data.tags["params.hash"] != second.data.tags["params.hash"]
    assert first.data.tags["stage"] == "pretrain" and first.data.tags["model.preset"] == "tiny"
    assert "git.commit" in first.data.tags
    assert first.data.metrics["key.val_loss"] == pytest.approx(4.0 + 200 / 1000)
    assert second.data.metrics["key.val_loss"] == pytest.approx(4.07)
    assert first.data.metrics["key.tokens_per_s"] == 1234.0
    inputs = {d.dataset.name: d for d in first.inputs.dataset_inputs}
    logged = inputs[str(tokens)]
    assert logged.dataset.digest == sha256_of(tokens)[:32]
    assert json.loads(logged.dataset.profile) == {"bytes": 200, "files": 1, "digest": "sha256"}
    assert {t.key: t.value for t in logged.tags}["mlflow.data.context"] == "training"

    for name in ("pretrain", "sft"):
        experiment = mlflow.get_experiment_by_name(name)
        assert experiment.tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND
        assert experiment.artifact_location == (store / "artifacts").as_uri()  # beside the store

    cfg_first, cfg_second = stage_config(store), stage_config(store, "pretrain.max_steps=70")
    pid = first.data.tags["pipeline.run_id"]
    assert producing_runs(["pretrain", "sft", "kto"], pid, cfg=cfg_second) == {
        "pretrain": first.info.run_id, "sft": sft_first.info.run_id, "kto": None}
    # no run of this pipeline run: the newest run with the same params made the outputs
    assert producing_runs(["pretrain"], "elsewhere", cfg=cfg_first) == {"pretrain": first.info.run_id}
    assert producing_runs(["pretrain", "sft"], "elsewhere", cfg=cfg_second) == {
        "pretrain": second.info.run_id, "sft": sft_second.info.run_id}
    assert producing_runs(["pretrain"], "elsewhere", cfg=stage_config(store, "pretrain.max_steps=90")) == {
        "pretrain": None}


def test_old_experiments_get_the_kind_tag(store: Path) -> None:
    import mlflow

    from src.tracking import get_or_create_experiment

    mlflow.set_tracking_uri(f"sqlite:///{store / 'mlflow.db'}")
    old = mlflow.create_experiment("made_before_the_tag")
    assert EXPERIMENT_KIND_TAG not in mlflow.get_experiment(old).tags
    assert get_or_create_experiment("made_before_the_tag") == old
    assert mlflow.get_experiment(old).tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND
