"""Running a pipeline stage: typed config, an MLflow run, and a summary of what was read, written, dropped.

A stage is one function `fn(cfg, run) -> None` in `src/`, where `cfg` is the validated root config and
`run` is the `StageRun` below. `stages/<name>.py` calls it through `run_stage(name)` with params.yaml;
`python -m src.run NAME [overrides]` calls the same function with a Hydra-composed config.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from src.config import flatten, load_config
from src.errors import InputError
from src.pipeline import STAGES


@dataclass
class StageSummary:
    """Counts of what a stage read, wrote and dropped (with reasons); printed and logged at the end."""

    stage: str
    read: dict[str, float] = field(default_factory=dict)
    wrote: dict[str, float] = field(default_factory=dict)
    dropped: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # Wall-clock figures (throughput, phase times). They live here (printed, logged to MLflow, in
    # summary.json) and never in a DVC-tracked output, whose hash must depend on content alone:
    # a fresh clone's `dvc repro` then reproduces the committed dvc.lock exactly.
    timings: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    def add(self, bucket: str, key: str, n: float = 1) -> None:
        counts = getattr(self, bucket)
        counts[key] = counts.get(key, 0) + n

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage, "seconds": round(self.seconds, 3), "read": self.read,
            "wrote": self.wrote, "dropped": self.dropped, "notes": self.notes,
            "timings": self.timings,
        }

    def metrics(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for bucket in ("read", "wrote", "dropped"):
            for key, value in getattr(self, bucket).items():
                out[f"summary.{bucket}.{key}"] = float(value)
        out.update({f"timing.{key}": float(value) for key, value in self.timings.items()})
        return out

    def render(self) -> str:
        lines = [f"== {self.stage}: done in {self.seconds:.1f}s"]
        for bucket in ("read", "wrote", "dropped"):
            counts = getattr(self, bucket)
            if not counts:
                lines.append(f"  {bucket:<8}nothing")
                continue
            for i, (key, value) in enumerate(counts.items()):
                label = bucket if i == 0 else ""
                shown = f"{value:,.0f}" if float(value).is_integer() else f"{value:,.3f}"
                lines.append(f"  {label:<8}{key:<40}{shown:>16}")
        for i, (key, value) in enumerate(self.timings.items()):
            lines.append(f"  {'timing' if i == 0 else '':<8}{key:<40}{value:>16,.3f}")
        lines.extend(f"  note    {note}" for note in self.notes)
        return "\n".join(lines)


class StageRun:
    """What a stage function gets besides its config: the summary and (optional) MLflow logging."""

    def __init__(self, stage: str, cfg: DictConfig, tracking_active: bool) -> None:
        self.stage = stage
        self.cfg = cfg
        self.summary = StageSummary(stage)
        self.tracking_active = tracking_active

    @property
    def run_id(self) -> str | None:
        if not self.tracking_active:
            return None
        import mlflow

        active = mlflow.active_run()
        return active.info.run_id if active else None

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        if self.tracking_active:
            import mlflow

            mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        if self.tracking_active and Path(path).exists():
            import mlflow

            if Path(path).is_dir():
                mlflow.log_artifacts(str(path), artifact_path=artifact_path)
            else:
                mlflow.log_artifact(str(path), artifact_path=artifact_path)

    def log_text(self, text: str, name: str) -> None:
        if self.tracking_active:
            import mlflow

            mlflow.log_text(text, name)

    def log_dict(self, data: Mapping[str, Any], name: str) -> None:
        if self.tracking_active:
            import mlflow

            mlflow.log_dict(dict(data), name)


def stage_params(name: str, cfg: DictConfig) -> dict[str, Any]:
    """The flattened config sections a stage depends on (what MLflow records as params)."""
    params: dict[str, Any] = {"seed": cfg.seed}
    for section in STAGES[name].sections:
        value = cfg[section]
        if isinstance(value, DictConfig):
            params.update(flatten(value, f"{section}."))
        else:  # a top-level scalar such as `seed`
            params[section] = value
    return params


def report_files(name: str, cfg: DictConfig) -> list[Path]:
    """Where the stage writes its headline numbers: `<section>.report_dir/metrics.json` of its own
    config sections (which `python -m src.train` redirects per job), else dvc.yaml's `metrics:`."""
    from src.paths import resolve
    from src.tracking_inputs import stage_metric_files

    found = [resolve(cfg[s].report_dir) / "metrics.json" for s in STAGES[name].sections
             if isinstance(cfg[s], DictConfig) and cfg[s].get("report_dir")]
    return found or [resolve(p) for p in stage_metric_files(name)]


def declared_params(name: str) -> dict[str, Any]:
    """The stage's params as params.yaml has them (what dvc.yaml's dep paths go with), {} without it."""
    try:
        return stage_params(name, load_config())
    except (InputError, KeyError, OSError):
        return {}


def execute_stage(
    name: str,
    cfg: DictConfig,
    fn: Callable[[DictConfig, StageRun], None] | None = None,
    run_name: str | None = None,
    overrides: Sequence[str] = (),
) -> StageSummary:
    """Run stage `name` on a validated config inside an MLflow run; return its summary.

    The run is named after what ran (`stage · model preset · recipe · overrides or DVC experiment`,
    unless `run_name` is given), tagged with the pipeline run it belongs to and its params hash
    (src/tracking_pipeline.py), given the stage's data deps as dataset inputs, and ends with the
    stage's metrics.json as `key.*` metrics."""
    from src.tracking import (
        is_global_zero,
        key_metrics,
        log_stage_inputs,
        stage_identity,
        start_run,
    )

    cfg = load_config(cfg)
    fn = fn or STAGES[name].load()
    tracking = cfg.tracking
    # One MLflow run per job: under torchrun/SLURM/DDP the other ranks work but do not log.
    tracking_on = bool(tracking.enabled) and is_global_zero()
    run = StageRun(name, cfg, tracking_active=tracking_on)
    started = time.perf_counter()
    if tracking_on:
        params = stage_params(name, cfg)
        sections = STAGES[name].sections
        named, tags = stage_identity(name, cfg, params, sections, overrides)
        start_run(
            experiment=f"{tracking.experiment_prefix}{name}",
            run_name=run_name or named,
            params=params,
            tags=tags,
            uri=tracking.uri,
        )
        # The whole composed config, so any run (a sweep point, say) can be rerun exactly.
        run.log_text(OmegaConf.to_yaml(cfg), "config.yaml")
        log_stage_inputs(name, declared_params(name), params,
                         context="training" if "trainer" in sections else "source")
    status = "FAILED"
    try:
        fn(cfg, run)
        status = "FINISHED"
    finally:
        run.summary.seconds = time.perf_counter() - started
        print(run.summary.render(), file=sys.stderr, flush=True)
        if tracking_on:
            import mlflow

            run.log_metrics(run.summary.metrics())
            if status == "FINISHED":
                run.log_metrics(key_metrics(report_files(name, cfg), run.summary.timings))
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "summary.json"
                path.write_text(json.dumps(run.summary.to_dict(), indent=2, ensure_ascii=False))
                run.log_artifact(path)
            mlflow.end_run(status=status)
    return run.summary


def exit_status(stage: str, exc: InputError) -> int:
    """Report a user-fixable failure as one line; 2 for a bad config, 1 for bad input."""
    from src.config import ConfigError

    print(f"error: {stage}: {exc}", file=sys.stderr)
    return 2 if isinstance(exc, ConfigError) else 1


def run_stage(name: str) -> None:
    """Entry point for `python -m stages.<name>`: params.yaml, validated, then the stage function."""
    try:
        execute_stage(name, load_config())
    except InputError as exc:
        sys.exit(exit_status(name, exc))
