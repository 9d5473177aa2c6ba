"""MLflow tracking for stage runs: one experiment per stage, one run per execution.

The local default is an sqlite database plus an artifact folder, both inside the checkout's `mlruns/`
(MLflow 3.17 refuses a plain file store). The URI is absolute and points at the user's checkout even
when DVC runs us in a temporary copy, so `dvc exp run --temp/--queue` runs land in the same place.
"""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from src.paths import PROJECT_ROOT, main_checkout_root

MAX_PARAMS_PER_BATCH = 100
# Set by torchrun, SLURM and Lightning's own DDP launcher in every process but the first.
RANK_VARIABLES = ("RANK", "SLURM_PROCID", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK")
MAX_PARAM_VALUE_CHARS = 6000


def is_global_zero() -> bool:
    """True in the process that logs for a (possibly multi-process) job."""
    return all(int(os.environ.get(name, "0") or 0) == 0 for name in RANK_VARIABLES)


def mlruns_dir() -> Path:
    return main_checkout_root() / "mlruns"


def default_tracking_uri() -> str:
    return f"sqlite:///{mlruns_dir() / 'mlflow.db'}"


def artifact_root() -> str:
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
    import mlflow

    exp = mlflow.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    uri = mlflow.get_tracking_uri()
    location = artifact_root() if uri.startswith("sqlite:") else None
    return mlflow.create_experiment(name, artifact_location=location)


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
