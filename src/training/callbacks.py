"""Callbacks of the pretraining loop: per-step metrics, and evaluation with samples and checkpoints.

Both act once per optimizer step (Lightning calls `on_train_batch_end` per micro-batch; a change of
`global_step` marks a completed update) and read device values only at their own intervals, so a
step costs no host-device synchronization.
"""

from __future__ import annotations

import json
import math
import sys
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.strategies import FSDPStrategy

from src.atomic_io import write_json_atomic
from src.training.checkpoint import BEST, LAST
from src.training.data import TokenDataModule, bits_per_byte
from src.training.flops import mfu
from src.training.sample_generations import sample_tokens


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def eager() -> AbstractContextManager:
    """Run compiled modules eagerly inside the block (torch >= 2.6; older versions: no-op)."""
    set_stance = getattr(torch.compiler, "set_stance", None)
    return set_stance("force_eager") if set_stance else nullcontext()



def last_train_loss(pl_module: L.LightningModule) -> float | None:
    """The loss of the latest training step (None before the first, e.g. KTO's step-0 check): kept
    beside each validation in val_curve.json, so one file holds both curves for the eval stage."""
    loss = getattr(pl_module, "last_loss", None)
    return None if loss is None else float(loss)

class StepCallback(Callback):
    """Runs `on_step` once after each optimizer step."""

    _last_step = -1

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        if trainer.global_step != self._last_step:
            self._last_step = trainer.global_step
            self.on_step(trainer, pl_module, trainer.global_step)

    def on_step(self, trainer: L.Trainer, pl_module: L.LightningModule, step: int) -> None:
        raise NotImplementedError


THROUGHPUT_FILE = "throughput.json"  # beside metrics.json, not tracked by DVC


def read_throughput(report_file: Path) -> dict[str, float]:
    """Wall-clock figures of the training that just ended (the stage removes the file before it
    trains, so a rerun that had nothing left to train reports none)."""
    path = report_file.with_name(THROUGHPUT_FILE)
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    return {k: float(v) for k, v in data.items() if isinstance(v, (int, float))}


class TrainingMonitor(StepCallback):
    """Every `log_every` steps: loss, lr, grad norm, tokens/s (all ranks) and MFU."""

    def __init__(self, log_every: int, tokens_per_step: int, flops_per_token: int,
                 peak_flops: float | None, n_devices: int) -> None:
        self.log_every, self.tokens_per_step = log_every, tokens_per_step
        self.flops_per_token, self.peak_flops, self.n_devices = flops_per_token, peak_flops, n_devices
        self.latest: dict[str, float] = {}
        self.run_tokens = 0
        self.run_seconds = 0.0

    # No state in checkpoints: every figure here is wall-clock, and a checkpoint (a DVC output) must
    # be the same bytes for two identical runs. Throughput is therefore that of this session.

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        _sync(pl_module.device)
        self._t, self._step = time.perf_counter(), trainer.global_step
        self._last_step = trainer.global_step

    def on_step(self, trainer: L.Trainer, pl_module: L.LightningModule, step: int) -> None:
        pl_module.guard.poll()
        if step % self.log_every and step < trainer.max_steps:
            return
        _sync(pl_module.device)
        now = time.perf_counter()
        seconds, steps = now - self._t, step - self._step
        self._t, self._step = now, step
        tokens_per_s = steps * self.tokens_per_step / seconds
        self.run_tokens += steps * self.tokens_per_step
        self.run_seconds += seconds
        metrics = {
            "train/loss": float(pl_module.last_loss),
            "train/grad_norm": float(pl_module.last_grad_norm),
            "train/lr": trainer.optimizers[0].param_groups[0]["lr"],
            "train/tokens_per_s": tokens_per_s,
            "train/step_ms": 1000 * seconds / steps,
        }
        utilization = mfu(self.flops_per_token, tokens_per_s, self.peak_flops, self.n_devices)
        if utilization is not None:
            metrics["train/mfu"] = utilization
        self.latest = metrics
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=step)
        pl_module.log_dict({"loss": metrics["train/loss"], "tok/s": tokens_per_s}, prog_bar=True,
                           logger=False, on_step=True, on_epoch=False)

    def exclude(self, seconds: float) -> None:
        """Leave time spent outside training (evaluation, checkpoints) out of tokens/s."""
        self._t += seconds

    @property
    def mean_tokens_per_s(self) -> float:
        return self.run_tokens / self.run_seconds if self.run_seconds else float("nan")


@dataclass
class SampleSettings:
    prompts: list[str]
    n_tokens: int
    temperature: float
    top_k: int
    seed: int
    tokenizer: Any = field(repr=False)  # has normalize, encode, decode


@dataclass
class EvalPlan:
    val_every: int
    save_every: int
    max_steps: int
    ckpt_dir: Path
    report_file: Path
    tokens_per_byte: float
    static_metrics: dict[str, float]


class Evaluator(StepCallback):
    """Validation loss and bits per byte, samples, the best and last checkpoints, metrics.json."""

    def __init__(self, datamodule: TokenDataModule, plan: EvalPlan, monitor: TrainingMonitor,
                 samples: SampleSettings | None) -> None:
        self.dm, self.plan, self.monitor, self.samples = datamodule, plan, monitor, samples
        self.best_loss = math.inf
        self.best_step = -1
        self.curve: list[dict[str, float]] = []

    # Survives resume: the best score so far and the validation curve.
    def state_dict(self) -> dict[str, Any]:
        return {"best_loss": self.best_loss, "best_step": self.best_step, "curve": self.curve}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_loss, self.best_step = state["best_loss"], state["best_step"]
        self.curve = list(state["curve"])

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._last_step = trainer.global_step

    def on_step(self, trainer: L.Trainer, pl_module: L.LightningModule, step: int) -> None:
        final = step >= self.plan.max_steps
        validate = step % self.plan.val_every == 0 or final
        save = step % self.plan.save_every == 0 or final
        if not (validate or save):
            return
        _sync(pl_module.device)
        started = time.perf_counter()
        if validate:
            self.evaluate(trainer, pl_module, step)
        if save:
            trainer.save_checkpoint(self.plan.ckpt_dir / LAST, weights_only=False)
        _sync(pl_module.device)
        self.monitor.exclude(time.perf_counter() - started)

    def evaluate(self, trainer: L.Trainer, pl_module: L.LightningModule, step: int) -> None:
        val_loss = self.validation_loss(trainer, pl_module)
        val_bpb = bits_per_byte(val_loss, self.plan.tokens_per_byte)
        # The training loss of the step validated, beside the validation figures, so one file holds
        # both curves (the eval stage plots them; deterministic like the checkpoints).
        self.curve.append({"step": step, "train_loss": last_train_loss(pl_module), "val_loss": val_loss,
                           "val_bpb": val_bpb})
        for logger in trainer.loggers:
            logger.log_metrics({"val/loss": val_loss, "val/bpb": val_bpb}, step=step)
        if trainer.is_global_zero:
            print(f"step {step}: val loss {val_loss:.4f}, val bpb {val_bpb:.4f}", file=sys.stderr)
        if math.isfinite(val_loss) and val_loss < self.best_loss:
            self.best_loss, self.best_step = val_loss, step
            trainer.save_checkpoint(self.plan.ckpt_dir / BEST, weights_only=False)
        if self.samples and self.samples.n_tokens > 0:
            self.write_samples(trainer, pl_module, step)

    @torch.no_grad()
    def validation_loss(self, trainer: L.Trainer, pl_module: L.LightningModule) -> float:
        was_training = pl_module.training
        pl_module.eval()
        total = torch.zeros(2, device=pl_module.device, dtype=torch.float64)
        for i, batch in enumerate(self.dm.eval_dataloader()):
            batch = trainer.strategy.batch_to_device(batch)
            # Through the strategy, so DDP/FSDP wrappers and the precision context apply.
            total[0] += trainer.strategy.validation_step(batch, i).double()
            total[1] += 1
        total = trainer.strategy.reduce(total, reduce_op="sum")
        pl_module.train(was_training)
        return float(total[0] / total[1]) if float(total[1]) else float("nan")

    @torch.no_grad()
    def write_samples(self, trainer: L.Trainer, pl_module: L.LightningModule, step: int) -> None:
        if isinstance(trainer.strategy, FSDPStrategy) or not trainer.is_global_zero:
            return  # sharded weights cannot run a forward on one rank alone
        s = self.samples
        model = pl_module.model
        block_size = model.config_dict()["block_size"]
        generator = torch.Generator().manual_seed(s.seed)
        was_training = model.training
        model.eval()
        parts = [f"# step {step}"]
        # Eager for sampling: a compiled model would recompile for every new sequence length.
        with trainer.precision_plugin.forward_context(), eager():
            for prompt in s.prompts:
                ids = s.tokenizer.encode(s.tokenizer.normalize(prompt))
                new = sample_tokens(model, ids, s.n_tokens, block_size, s.temperature, s.top_k,
                                    generator, pl_module.device)
                parts.append(f"## {prompt}\n{prompt}{s.tokenizer.decode(new)}")
        model.train(was_training)
        self.record_samples(trainer, step, "\n\n".join(parts) + "\n")

    def record_samples(self, trainer: L.Trainer, step: int, text: str) -> None:
        """Sampled text of one evaluation: to MLflow and appended to samples.txt."""
        for logger in trainer.loggers:
            if hasattr(logger, "log_text"):
                logger.log_text(text, f"samples/step_{step:06d}.txt")
        path = self.plan.ckpt_dir / "samples.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as f:
            f.write(text + "\n")

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        last = self.curve[-1] if self.curve else {}
        report = {
            **self.plan.static_metrics,
            "steps": trainer.global_step,
            "val_loss": last.get("val_loss"),
            "val_bpb": last.get("val_bpb"),
            # whatever else a subclass records per evaluation (the SFT evaluator: reply metrics)
            **{k: v for k, v in last.items() if k not in {"step", "train_loss", "val_loss", "val_bpb"}},
            "best_val_loss": self.best_loss if self.best_step >= 0 else None,
            "best_step": self.best_step,
        }
        self.write_reports(report)

    def write_reports(self, report: dict[str, Any]) -> None:
        """metrics.json (and its copy beside the checkpoints, which DVC keeps: see
        pretrain.restore_finished_report) plus throughput.json. Throughput stays out of metrics.json:
        DVC tracks that file, and a wall-clock figure there would change dvc.lock on every rerun."""
        throughput = {
            "tokens_per_s": self.monitor.mean_tokens_per_s if self.monitor.run_seconds else None,
            "mfu": self.monitor.latest.get("train/mfu"),
            "train_seconds": self.monitor.run_seconds,
        }
        write_json_atomic(self.plan.report_file.with_name(THROUGHPUT_FILE), throughput)
        write_json_atomic(self.plan.report_file, report)
        write_json_atomic(self.plan.ckpt_dir / "metrics.json", report)
        write_json_atomic(self.plan.ckpt_dir / "val_curve.json", self.curve)
