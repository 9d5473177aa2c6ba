from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TrackingConfig:
    """MLflow tracking. `uri: null` means the project's own `mlruns/` (sqlite + artifacts)."""

    enabled: bool = True
    # e.g. http://mlflow.example:5000 for a team server; null = sqlite in <checkout>/mlruns
    uri: str | None = None
    # Prefixed to the per-stage experiment name, so several pipelines can share one server.
    experiment_prefix: str = ""
    log_system_metrics: bool = False
