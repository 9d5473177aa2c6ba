"""The LightningModule that pretrains a GPT: loss, clipping, optimizer and schedule, guarded steps.

The GPT is held as `self.model`, so checkpoint keys read "model.<name>", and the checkpoint's
hyper-parameters are plain dicts ("model" = GPT.config_dict(), "tokenizer_dir", "pretrain",
"trainer"): `torch.load(path, weights_only=True)` opens it without this code.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import Tensor

from src.config.sections.pretrain import PretrainConfig
from src.errors import InputError
from src.models.gpt import GPT
from src.training.mlflow_logger import StageRunLogger
from src.training.optim import LrSchedule, OptimizerSettings, build_optimizer


class NonFiniteError(InputError, RuntimeError):
    """Training produced a NaN/inf loss or gradient; the message names the optimizer step."""


class NonFiniteGuard:
    """Stops training on the first non-finite loss or gradient norm.

    On the CPU the check is immediate (before the update is applied). On CUDA a per-step `.item()`
    would stall the GPU queue, so the flag is copied to pinned host memory without blocking and read
    one step later; `flush()` checks everything pending and runs before every checkpoint save, so no
    checkpoint ever holds weights from a bad step.
    """

    def __init__(self) -> None:
        self._pending: list[tuple[int, Tensor, Any]] = []

    def record(self, step: int, loss: Tensor, grad_norm: Tensor) -> None:
        bad = ~(torch.isfinite(loss) & torch.isfinite(grad_norm))
        if bad.device.type != "cuda":
            self._raise_if(step, bool(bad), loss, grad_norm)
            return
        host = torch.empty((), dtype=torch.bool, pin_memory=True)
        host.copy_(bad, non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        self._pending.append((step, host, event))
        self.poll()

    def poll(self, block: bool = False) -> None:
        while self._pending and (block or self._pending[0][2].query()):
            step, host, event = self._pending.pop(0)
            event.synchronize()
            self._raise_if(step, bool(host), None, None)

    def flush(self) -> None:
        self.poll(block=True)

    @staticmethod
    def _raise_if(step: int, bad: bool, loss: Tensor | None, grad_norm: Tensor | None) -> None:
        if not bad:
            return
        detail = "" if loss is None else f" (loss {float(loss):.4g}, grad norm {float(grad_norm):.4g})"
        raise NonFiniteError(
            f"non-finite loss or gradient at optimizer step {step}{detail}; training stopped, "
            "the last checkpoint was written before this step and is intact"
        )


class PretrainModule(L.LightningModule):
    def __init__(self, model: dict | torch.nn.Module, pretrain: dict, trainer: dict, tokenizer_dir: str,
                 identity: dict | None = None, normalize: dict | None = None) -> None:
        super().__init__()
        # A config dict builds a GPT; a module (the reranker's cross-encoder) is trained as given: it
        # has the GPT's config_dict and optim_groups.
        self.model = model if isinstance(model, torch.nn.Module) else GPT.from_config_dict(model)
        # `identity` says what is being trained (seed, model, recipe, data): resume only if it matches.
        # tokenizer_sha256: every load checks the tokenizer at tokenizer_dir against it (the path is
        # the same for every tokenizer preset); normalize: the corpus normalization, which chat
        # applies to user input (src/generation/loading.py).
        self.save_hyperparameters({"model": self.model.config_dict(), "tokenizer_dir": tokenizer_dir,
                                   "tokenizer_sha256": ((identity or {}).get("data") or {}).get(
                                       "tokenizer_sha256", ""),
                                   "normalize": normalize,
                                   "pretrain": pretrain, "trainer": trainer,
                                   "identity": identity or {}})
        self.recipe = PretrainConfig(**pretrain)
        self.compile_model = bool(trainer.get("compile", False))
        self.compile_mode = str(trainer.get("compile_mode", "default"))
        self.guard = NonFiniteGuard()
        self._loss_sum: Tensor | None = None
        self._micro_batches = 0
        self.last_loss: Tensor | None = None
        self.last_grad_norm: Tensor | None = None
        self._rng_to_restore: dict | None = None

    # --- model
    def setup(self, stage: str) -> None:
        if self.compile_model and stage == "fit" and not getattr(self, "_compiled", False):
            # In-place compile keeps parameter names (no "_orig_mod." in checkpoint keys).
            self.model.compile(mode=self.compile_mode)
            self._compiled = True

    def forward(self, idx: Tensor, targets: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        return self.model(idx, targets)

    # --- steps
    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        _, loss = self.model(x, y)
        detached = loss.detach()
        self._loss_sum = detached if self._loss_sum is None else self._loss_sum + detached
        self._micro_batches += 1
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        _, loss = self.model(x, y)
        return loss.detach().float()

    def configure_gradient_clipping(self, optimizer: torch.optim.Optimizer,
                                    gradient_clip_val: float | None = None,
                                    gradient_clip_algorithm: str | None = None) -> None:
        # Called once per optimizer step after the last micro-batch's backward: the place to measure
        # the gradient, clip it, and refuse to apply a non-finite update.
        max_norm = self.recipe.grad_clip if self.recipe.grad_clip > 0 else float("inf")
        wrapped = self.trainer.strategy.model
        if hasattr(wrapped, "clip_grad_norm_") and wrapped is not self:  # FSDP: sharded gradients
            norm = wrapped.clip_grad_norm_(max_norm)
        else:
            norm = torch.nn.utils.clip_grad_norm_(self.parameters(), max_norm, foreach=True)
        loss = self._loss_sum / max(1, self._micro_batches)
        self._loss_sum, self._micro_batches = None, 0
        self.last_loss, self.last_grad_norm = loss, norm.detach()
        self.guard.record(self.global_step + 1, loss, self.last_grad_norm)

    def configure_optimizers(self) -> dict:
        r = self.recipe
        settings = OptimizerSettings(r.optimizer, r.lr, r.weight_decay, (r.beta1, r.beta2), r.eps,
                                     r.muon_lr, r.muon_momentum, r.muon_ns_steps)
        groups = self.model.optim_groups(r.weight_decay, r.decay_embeddings)
        on_cuda = all(p.is_cuda for g in groups for p in g["params"])
        optimizer = build_optimizer(groups, settings, on_cuda)
        schedule = LrSchedule(r.schedule, r.max_steps, r.warmup_steps, r.decay_steps,
                              r.wsd_decay_frac, r.min_lr_ratio)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # --- exact resume: the global RNG (dropout) travels with the checkpoint
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.guard.flush()
        rng = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        checkpoint["rng"] = rng
        # No MLflow run id in the checkpoint: it is a DVC output and must not differ between two
        # identical runs. The run is tagged with the training's identity instead (see mlflow_logger).
        for logger in self.stage_loggers():
            logger.tag_identity(self.hparams.get("identity") or {})

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Applied when training starts, after Lightning's own set-up has finished touching the RNG.
        self._rng_to_restore = checkpoint.get("rng")
        identity = (checkpoint.get("hyper_parameters") or {}).get("identity") or {}
        for logger in self.stage_loggers():
            logger.tag_identity(identity)
            logger.continue_from(logger.previous_run(identity))

    def stage_loggers(self) -> list[StageRunLogger]:
        loggers = self.trainer.loggers if self._trainer is not None else []
        return [logger for logger in loggers if isinstance(logger, StageRunLogger)]

    def on_train_start(self) -> None:
        if self._rng_to_restore:
            torch.set_rng_state(self._rng_to_restore["torch"])
            if "cuda" in self._rng_to_restore and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(self._rng_to_restore["cuda"])
            self._rng_to_restore = None
