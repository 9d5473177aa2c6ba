"""MLflow tracking for stage runs: one experiment per stage, one run per execution.

The local default is an sqlite database plus an artifact folder, both inside the checkout's `mlruns/`
(MLflow 3.17 refuses a plain file store). The URI is absolute and points at the user's checkout even
when DVC runs us in a temporary copy, so `dvc exp run --temp/--queue` runs land in the same place.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from src.paths import PROJECT_ROOT, main_checkout_root
from src.tracking_inputs import log_input_files, log_stage_inputs
from src.tracking_pipeline import (
    DVC_EXP_ENV,
    DVC_EXP_TAG,
    OVERRIDES_TAG,
    PARAMS_HASH_TAG,
    PIPELINE_TAG,
    PRESET_TAG,
    STAGE_TAG,
    current_pipeline_run_id,
    params_hash,
    run_name,
)

__all__ = ["current_pipeline_run_id", "log_input_files", "log_stage_inputs", "producing_runs"]

if TYPE_CHECKING:
    from omegaconf import DictConfig

MAX_PARAMS_PER_BATCH = 100
# Set by torchrun, SLURM and Lightning's own DDP launcher in every process but the first.
RANK_VARIABLES = ("RANK", "SLURM_PROCID", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK")
MAX_PARAM_VALUE_CHARS = 6000
# The experiment tag MLflow 3.x's UI reads to choose an experiment's landing page (its JS bundle
# compares the tag `mlflow.experimentKind` with "custom_model_development" and "genai_development").
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"


def is_global_zero() -> bool:
    """True in the process that logs for a (possibly multi-process) job."""
    return all(int(os.environ.get(name, "0") or 0) == 0 for name in RANK_VARIABLES)


def mlruns_dir() -> Path:
    return main_checkout_root() / "mlruns"


def default_tracking_uri() -> str:
    return f"sqlite:///{mlruns_dir() / 'mlflow.db'}"


def artifact_root(uri: str | None = None) -> str:
    """The artifact folder beside an sqlite store (`<dir>/mlflow.db` -> `<dir>/artifacts`), so a
    test's temporary store keeps its artifacts with it; the checkout's mlruns/artifacts otherwise."""
    if uri and uri.startswith("sqlite:///") and uri != "sqlite:///:memory:":
        return (Path(uri.removeprefix("sqlite:///")).resolve().parent / "artifacts").as_uri()
    return (mlruns_dir() / "artifacts").as_uri()


def tracking_uri(configured: str | None) -> str:
    """The configured URI, else MLFLOW_TRACKING_URI, else the checkout's sqlite database."""
    return configured or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()


def git_state(root: Path = PROJECT_ROOT) -> dict[str, str]:
    """Commit and dirty flag of the checkout, empty when git is unavailable."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root, capture_output=True, text=True, check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return {}
    return {"git.commit": commit, "git.dirty": str(bool(dirty)).lower()}


def _quiet_mlflow() -> None:
    # Alembic announces every migration of a fresh sqlite store; that is noise in a stage log.
    for name in ("alembic", "alembic.runtime.migration", "mlflow.store.db.utils"):
        logging.getLogger(name).setLevel(logging.WARNING)


def get_or_create_experiment(name: str) -> str:
    """The experiment's id, created if needed; either way marked as model development, so the
    MLflow UI (3.x) opens it on its runs table rather than on the GenAI traces overview."""
    import mlflow

    exp = mlflow.get_experiment_by_name(name)
    if exp is not None:
        # Experiments made before the tag existed; a kind a user set by hand is kept.
        if EXPERIMENT_KIND_TAG not in exp.tags:
            mlflow.MlflowClient().set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
        return exp.experiment_id
    uri = mlflow.get_tracking_uri()
    location = artifact_root(uri) if uri.startswith("sqlite:") else None
    return mlflow.create_experiment(name, artifact_location=location,
                                    tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})


def start_run(
    experiment: str,
    run_name: str | None,
    params: Mapping[str, Any],
    tags: Mapping[str, str],
    uri: str | None,
):
    """Start (and return) an active MLflow run with params and tags logged."""
    import mlflow

    _quiet_mlflow()
    resolved = tracking_uri(uri)
    if resolved.startswith("sqlite:"):
        mlruns_dir().mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(resolved)
    experiment_id = get_or_create_experiment(experiment)
    run = mlflow.start_run(experiment_id=experiment_id, run_name=run_name)
    log_params(params)
    mlflow.set_tags({**git_state(), **tags})
    return run


def log_params(params: Mapping[str, Any]) -> None:
    import mlflow

    items = [(k, str(v)[:MAX_PARAM_VALUE_CHARS]) for k, v in params.items()]
    for i in range(0, len(items), MAX_PARAMS_PER_BATCH):
        mlflow.log_params(dict(items[i : i + MAX_PARAMS_PER_BATCH]))


def stage_identity(stage: str, cfg: DictConfig, params: Mapping[str, Any], sections: Sequence[str],
                   overrides: Sequence[str] = ()) -> tuple[str, dict[str, str]]:
    """The run name and the tags that let the UI group, search and compare stage runs: the pipeline
    run they belong to, the stage, the model preset, the params hash, the DVC experiment name."""
    preset = str(cfg.model.name) if "model" in sections and "model" in cfg else None
    own = cfg.get(stage) if stage in cfg else None
    section_name = str(own.get("name")) if own is not None and hasattr(own, "get") and own.get("name") else None
    exp_name = os.environ.get(DVC_EXP_ENV) or None
    tags = {PIPELINE_TAG: current_pipeline_run_id(), STAGE_TAG: stage, PARAMS_HASH_TAG: params_hash(params)}
    if preset:
        tags[PRESET_TAG] = preset
    if exp_name:
        tags[DVC_EXP_TAG] = exp_name
    if overrides:
        tags[OVERRIDES_TAG] = " ".join(overrides)[:MAX_PARAM_VALUE_CHARS]
    return run_name(stage, preset, section_name, overrides, exp_name), tags


def flat_numbers(data: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a (nested) report as `a.b` keys; null, text and lists are not metrics."""
    out: dict[str, float] = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            out.update(flat_numbers(value, f"{prefix}{key}."))
        elif isinstance(value, (bool, int, float)) and value == value:  # NaN is no final number
            out[f"{prefix}{key}"] = float(value)
    return out


def key_metrics(report_files: Sequence[Path], timings: Mapping[str, float]) -> dict[str, float]:
    """The stage's headline numbers under stable names: every number of its metrics.json as
    `key.<name>` (e.g. key.val_loss, key.val_bpb, key.best_val_loss) plus `key.tokens_per_s` from the
    summary's timings, so the UI's runs table and charts compare any two runs of a stage by name."""
    out: dict[str, float] = {}
    for path in report_files:
        if path.is_file():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                # Said, not raised: the stage has finished and its run must still be ended.
                print(f"warning: {path}: not JSON ({exc}); no key.* metrics from it", file=sys.stderr)
                continue
            if isinstance(data, Mapping):
                out.update({f"key.{k}": v for k, v in flat_numbers(data).items()})
    if "tokens_per_s" in timings:
        out["key.tokens_per_s"] = float(timings["tokens_per_s"])
    return out


def _newest_finished(client, experiment_id: str, tag: str, value: str) -> str | None:  # noqa: ANN001
    found = client.search_runs(
        [experiment_id], filter_string=f"tags.`{tag}` = '{value}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"], max_results=1)
    return found[0].info.run_id if found else None


def producing_runs(stages: Sequence[str], pipeline_run_id: str | None = None, *,
                   cfg: DictConfig | None = None) -> dict[str, str | None]:
    """For each stage, the MLflow run that made its current outputs, or None when none can be told.

    The rule, per stage (in the experiment `<tracking.experiment_prefix><stage>`, FINISHED runs only,
    newest first):
    1. a run tagged with this pipeline run's `pipeline.run_id` (default: `current_pipeline_run_id()`):
       the stage ran in this same `dvc repro` / `dvc exp run`;
    2. else a run whose `params.hash` equals the hash of the stage's params in `cfg`: DVC skipped the
       stage because its params (and code and inputs) were unchanged, so its outputs came from the
       latest run with these params;
    3. else None (no run with these params is in the store: it was made elsewhere, or before runs
       were tagged), never a guess.
    `cfg` defaults to params.yaml (what `dvc repro` runs); it also names the store (`tracking.uri`).
    """
    from mlflow import MlflowClient

    from src.config import load_config
    from src.stage import stage_params

    cfg = load_config() if cfg is None else cfg
    client = MlflowClient(tracking_uri(cfg.tracking.uri))
    pipeline_run_id = pipeline_run_id or current_pipeline_run_id()
    found: dict[str, str | None] = {}
    for stage in stages:
        experiment = client.get_experiment_by_name(f"{cfg.tracking.experiment_prefix}{stage}")
        if experiment is None:
            found[stage] = None
            continue
        run_id = _newest_finished(client, experiment.experiment_id, PIPELINE_TAG, pipeline_run_id)
        if run_id is None:
            try:
                wanted = params_hash(stage_params(stage, cfg))
            except KeyError:  # not a pipeline stage, or its sections are absent from cfg
                wanted = None
            if wanted:
                run_id = _newest_finished(client, experiment.experiment_id, PARAMS_HASH_TAG, wanted)
        found[stage] = run_id
    return found
