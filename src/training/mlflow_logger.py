"""A Lightning logger that writes into the stage's existing MLflow run.

It addresses the run by id through MlflowClient, so it works from any process (DDP ranks, spawned
workers) and never ends the run: `execute_stage` opened it and closes it with the stage's status.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from lightning.pytorch.loggers.logger import Logger
from lightning.pytorch.utilities import rank_zero_only


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
