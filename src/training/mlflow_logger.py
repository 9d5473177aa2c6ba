"""A Lightning logger that writes into the stage's existing MLflow run.

It addresses the run by id through MlflowClient, so it works from any process (DDP ranks, spawned
workers) and never ends the run: `execute_stage` opened it and closes it with the stage's status.

Each run is tagged with a hash of its training identity (`IDENTITY_TAG`: seed, model, recipe, data;
the same identity a resume must match). The checkpoint itself carries no run id, since it is a DVC
output that two identical runs must write byte for byte. A resumed training finds the latest other
run of its experiment with the same identity tag: a new MLflow run linked to that one (tags `resumed_from_run_id` / `resumed_by_run_id`), and a run that was
killed (still RUNNING, since no process is left to end it) is marked KILLED at that moment. A new run
rather than reopening the old one: params are immutable in MLflow, and a resume may legitimately
change the keys that are not part of the run's identity (log/val/save cadence, paths), and each
execution keeps its own git commit, config and summary.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Mapping
from typing import Any

from lightning.pytorch.loggers.logger import Logger
from lightning.pytorch.utilities import rank_zero_only

IDENTITY_TAG = "training_identity"
RESUMED_FROM = "resumed_from_run_id"
RESUMED_BY = "resumed_by_run_id"


class StageRunLogger(Logger):
    def __init__(self, tracking_uri: str, run_id: str) -> None:
        super().__init__()
        self.tracking_uri, self.run_id = tracking_uri, run_id
        self._client = None

    @property
    def client(self):  # noqa: ANN201 - mlflow is imported lazily
        if self._client is None:
            from mlflow import MlflowClient

            self._client = MlflowClient(self.tracking_uri)
        return self._client

    def __getstate__(self) -> dict[str, Any]:
        # The client holds a database connection; spawned processes make their own.
        return {**self.__dict__, "_client": None}

    @property
    def name(self) -> str:
        return "mlflow-stage-run"

    @property
    def version(self) -> str:
        return self.run_id

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step or 0) for k, v in metrics.items()]
        # Queued and written by MLflow's background thread: a database round trip per logging
        # interval would otherwise stall the training loop. `finalize` waits for the queue.
        self.client.log_batch(self.run_id, metrics=batch, synchronous=False)

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        """The stage runner already logged the flattened config as params."""

    @rank_zero_only
    def finalize(self, status: str) -> None:
        import mlflow

        mlflow.flush_async_logging()

    @rank_zero_only
    def log_text(self, text: str, artifact_file: str) -> None:
        self.client.log_text(self.run_id, text, artifact_file)

    @staticmethod
    def identity_hash(identity: Mapping[str, Any]) -> str:
        text = json.dumps(identity, sort_keys=True, default=str)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]

    @rank_zero_only
    def tag_identity(self, identity: Mapping[str, Any]) -> None:
        if identity:
            self.client.set_tag(self.run_id, IDENTITY_TAG, self.identity_hash(identity))

    @rank_zero_only
    def previous_run(self, identity: Mapping[str, Any]) -> str | None:
        """The newest other run of this experiment that trained the same identity (the one that
        wrote the checkpoint being resumed), or None."""
        if not identity:
            return None
        experiment = self.client.get_run(self.run_id).info.experiment_id
        found = self.client.search_runs(
            [experiment], filter_string=f"tags.{IDENTITY_TAG} = '{self.identity_hash(identity)}'",
            order_by=["attributes.start_time DESC"], max_results=5)
        return next((r.info.run_id for r in found if r.info.run_id != self.run_id), None)

    @rank_zero_only
    def continue_from(self, previous_run_id: str | None) -> None:
        """Link this run to the run that wrote the checkpoint being resumed; mark that run KILLED
        when it never ended (its process died)."""
        if not previous_run_id or previous_run_id == self.run_id:
            return
        from mlflow.exceptions import MlflowException

        self.client.set_tag(self.run_id, RESUMED_FROM, previous_run_id)
        try:
            previous = self.client.get_run(previous_run_id)
        except MlflowException:
            return  # tracked elsewhere, or deleted: the tag above is all there is to say
        self.client.set_tag(previous_run_id, RESUMED_BY, self.run_id)
        if previous.info.status == "RUNNING":
            self.client.set_terminated(previous_run_id, status="KILLED")
            print(f"MLflow run {previous_run_id} was left RUNNING by a killed process: marked KILLED; "
                  f"run {self.run_id} continues it", file=sys.stderr)
