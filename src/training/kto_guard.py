"""KTO's evaluation callback and collapse guard.

Preference accuracy alone can look perfect while the model collapses: the policy learns to push
the undesirable replies far down and takes the desirable ones down with it, a little less, until it
writes fluent nonsense. Two signals catch that, measured every `val_every` steps and at step 0 (the
SFT model itself, the baseline):

- desirable drift: the mean over held-out desirable replies of (policy log-prob - reference
  log-prob), in nats per reply. Healthy KTO raises it; a collapse takes it down by tens of nats.
- generation check: replies sampled (fixed seed) to fixed prompts, with the rates of the failure
  detectors (src/eval/detectors.py `failure_rates`: loop, canned, markdown wall; end-of-turn rate
  = replies that did not trip no-end), mean length and distinct-2.

The run stops at the first evaluation where the drift is below `min_desirable_drift` or a
generation metric is worse than step 0's by more than its margin. best.ckpt is the evaluation with
the lowest val KTO loss among those that pass the guard (step 0 passes by definition), never a
collapsed one. A stop shows as the MLflow tag `kto.collapse`, the metric `guard/collapsed`
(0 at every healthy evaluation, 1 at the stop), in metrics.json and in the stage summary.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Any

import lightning as L
import torch

from src.atomic_io import write_json_atomic
from src.eval.detectors import distinct_n, failure_rates
from src.generation import chat_template
from src.generation.engine import Engine
from src.training.callbacks import (
    EvalPlan,
    Evaluator,
    TrainingMonitor,
    _sync,
    eager,
    last_train_loss,
)
from src.training.checkpoint import BEST, LAST
from src.training.kto import kto_loss
from src.training.kto_data import Arrangement, EncodedPairs
from src.training.kto_module import METRIC_NAMES, LossSettings, ReferenceLogps, score
from src.training.mlflow_logger import StageRunLogger
from src.training.sft_module import ChatSampleSettings

COLLAPSE_TAG = "kto.collapse"


@dataclass(frozen=True)
class GuardSettings:
    enabled: bool
    min_desirable_drift: float
    max_loop_rate_rise: float
    max_eot_rate_drop: float
    max_distinct2_drop: float
    max_length_ratio: float
    max_canned_rate_rise: float = 0.25
    max_markdown_wall_rate_rise: float = 0.25


# failure rates the guard compares with step 0's: (metric, GuardSettings field of the largest rise, name)
RISING_RATES = (("loop_rate", "max_loop_rate_rise", "loop rate"),
                ("canned_rate", "max_canned_rate_rise", "canned rate"),
                ("markdown_wall_rate", "max_markdown_wall_rate_rise", "markdown-wall rate"))


def guard_problems(now: dict[str, Any], baseline: dict[str, Any], g: GuardSettings) -> list[str]:
    """Why the evaluation `now` counts as a collapse against the step-0 `baseline` (empty: healthy).
    A metric missing on either side (no val desirable reply, no sample prompt) is not checked."""
    out = []

    def have(key: str) -> bool:
        return now.get(key) is not None and baseline.get(key) is not None

    drift = now.get("desirable_drift")
    if drift is not None and drift < g.min_desirable_drift:
        out.append(f"desirable drift {drift:.2f} nats < {g.min_desirable_drift:g}")
    for key, margin, name in RISING_RATES:
        if have(key) and now[key] - baseline[key] > getattr(g, margin):
            out.append(f"{name} {now[key]:.2f} vs {baseline[key]:.2f} at step 0")
    if have("eot_rate") and baseline["eot_rate"] - now["eot_rate"] > g.max_eot_rate_drop:
        out.append(f"end-of-turn rate {now['eot_rate']:.2f} vs {baseline['eot_rate']:.2f} at step 0")
    if have("distinct2") and baseline["distinct2"] - now["distinct2"] > g.max_distinct2_drop:
        out.append(f"distinct-2 {now['distinct2']:.2f} vs {baseline['distinct2']:.2f} at step 0")
    if have("mean_reply_tokens") and baseline["mean_reply_tokens"] > 0:
        ratio = now["mean_reply_tokens"] / baseline["mean_reply_tokens"]
        if not 1 / g.max_length_ratio <= ratio <= g.max_length_ratio:
            out.append(f"mean reply length {now['mean_reply_tokens']:.1f} tokens vs "
                       f"{baseline['mean_reply_tokens']:.1f} at step 0")
    return out


@dataclass
class ValidationPairs:
    pairs: EncodedPairs
    arrangement: Arrangement | None  # None when there are fewer than 2 val rows
    reference: ReferenceLogps | None


def validation_metrics(model: torch.nn.Module, val: ValidationPairs, loss: LossSettings,
                       batch_size: int) -> dict[str, float | None]:
    """Val KTO loss, reward accuracy (desirable rewards above z0, undesirable below), margins and
    the desirable drift (nats per reply, and per token)."""
    d = val.pairs
    if val.arrangement is None or val.reference is None:
        return {"val_loss": None, "reward_accuracy": None, "desirable_drift": None}
    a, ref = val.arrangement, val.reference
    policy = score(model, d.prompts, d.completions, batch_size)
    labels = torch.tensor(d.labels)
    kl_policy = kl_ref = None
    if loss.loss_type == "kto":
        kept = [i for i in range(len(d)) if a.genuine[i]] or list(range(len(d)))
        kl_policy = score(model, [d.prompts[i] for i in kept], [d.completions[a.partner[i]] for i in kept],
                          batch_size)
        kl_ref = ref.mismatched[kept]
    value, m = kto_loss(policy, ref.completion, labels, kl_policy, kl_ref, beta=loss.beta,
                        desirable_weight=loss.desirable_weight, undesirable_weight=loss.undesirable_weight,
                        loss_type=loss.loss_type, clamp_z0=loss.clamp_z0)
    ratio = policy - ref.completion
    z0 = float(m["kl"])
    correct = torch.where(labels, ratio > z0, ratio < z0).float().mean()
    out: dict[str, float | None] = {"val_loss": float(value), "reward_accuracy": float(correct),
                                    "rewards_margin": float(m["rewards/margins"])}
    if bool(labels.any()):
        tokens = sum(len(c) for c, keep in zip(d.completions, d.labels, strict=True) if keep)
        out["desirable_drift"] = float(ratio[labels].mean())
        out["desirable_drift_per_token"] = float(ratio[labels].sum()) / tokens
    else:
        out["desirable_drift"] = None
    return out


class KTOEvaluator(Evaluator):
    """Every val_every steps (and at step 0): validation, the generation check, the guard, best.ckpt."""

    def __init__(self, plan: EvalPlan, monitor: TrainingMonitor, val: ValidationPairs, loss: LossSettings,
                 guard: GuardSettings, chat: ChatSampleSettings | None, score_batch_size: int,
                 log_every: int, detectors: dict[str, Any] | None = None) -> None:
        super().__init__(None, plan, monitor, None)
        self.val, self.loss, self.guard, self.chat = val, loss, guard, chat
        self.detectors = dict(detectors or {})  # DetectorConfig's keys (thresholds)
        self.score_batch_size, self.log_every = score_batch_size, log_every
        self.baseline: dict[str, Any] | None = None
        self.collapse: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "baseline": self.baseline, "collapse": self.collapse}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.baseline, self.collapse = state.get("baseline"), state.get("collapse")

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        if self.collapse is not None:  # a resumed run that the guard had stopped stays stopped
            trainer.should_stop = True
        elif self.baseline is None:
            self.evaluate(trainer, pl_module, trainer.global_step)

    def on_step(self, trainer: L.Trainer, pl_module: L.LightningModule, step: int) -> None:
        if step % self.log_every == 0 or step >= self.plan.max_steps:
            metrics = {f"train/{k}": v for k, v in pl_module.step_metrics.items()
                       if k in METRIC_NAMES and not math.isnan(v)}
            for logger in trainer.loggers:
                logger.log_metrics(metrics, step=step)
        super().on_step(trainer, pl_module, step)

    def evaluate(self, trainer: L.Trainer, pl_module: L.LightningModule, step: int) -> None:
        with trainer.precision_plugin.forward_context(), eager():
            entry: dict[str, Any] = {"step": step, **validation_metrics(pl_module.model, self.val, self.loss,
                                                                        self.score_batch_size)}
        entry.update(self.generation_check(trainer, pl_module, step))
        if self.baseline is None:
            self.baseline = dict(entry)
        problems = guard_problems(entry, self.baseline, self.guard) if self.guard.enabled else []
        problems = trainer.strategy.broadcast(problems, src=0)  # generation runs on rank 0 only
        entry["collapsed"] = float(bool(problems))
        self.curve.append({"step": step, "train_loss": last_train_loss(pl_module),
                           **{k: v for k, v in entry.items() if k != "step"}})
        for logger in trainer.loggers:
            logger.log_metrics({f"val/{k}" if k not in {"collapsed", "desirable_drift"} else f"guard/{k}": v
                                for k, v in entry.items() if k != "step" and v is not None}, step=step)
        if trainer.is_global_zero:
            shown = ", ".join(f"{k} {v:.3f}" for k, v in entry.items() if k != "step" and v is not None)
            print(f"step {step}: {shown}", file=sys.stderr)
        if problems:
            self.stop(trainer, step, problems)
            return
        val_loss = entry.get("val_loss")
        criterion = val_loss if val_loss is not None and math.isfinite(val_loss) else -float(step)
        if criterion < self.best_loss or self.best_step < 0:
            self.best_loss, self.best_step = criterion, step
            trainer.save_checkpoint(self.plan.ckpt_dir / BEST, weights_only=False)

    def stop(self, trainer: L.Trainer, step: int, problems: list[str]) -> None:
        reason = "; ".join(problems)
        self.collapse = {"step": step, "reason": reason}
        if trainer.is_global_zero:
            print(f"step {step}: collapse guard stopped training: {reason}; best.ckpt stays at step "
                  f"{self.best_step}", file=sys.stderr)
        for logger in trainer.loggers:
            if isinstance(logger, StageRunLogger):
                logger.client.set_tag(logger.run_id, COLLAPSE_TAG, f"step {step}: {reason}")
        trainer.should_stop = True
        trainer.save_checkpoint(self.plan.ckpt_dir / LAST, weights_only=False)  # resumes as stopped

    @torch.no_grad()
    def generation_check(self, trainer: L.Trainer, pl_module: L.LightningModule, step: int) -> dict[str, float]:
        s = self.chat
        if s is None or not s.prompts or not trainer.is_global_zero:
            return {}
        tok = s.tokenizer
        specials = tok.special_tokens
        prompts = [chat_template.encode(tok, [{"role": "user", "content": tok.normalize(p)}]) for p in s.prompts]
        engine = Engine(pl_module.model, tok, precision=None, static_cache=False, cuda_graphs=False,
                        compile_model=False)
        stopped_by: dict[int, int] = {}

        def on_token(event: Any) -> None:
            if event.finish_reason == "stop_token":
                stopped_by[event.row] = event.token

        _sync(pl_module.device)
        with trainer.precision_plugin.forward_context(), eager():
            replies = engine.generate(prompts, s.params, stop_ids=sorted(specials.values()), seed=s.seed,
                                      on_token=on_token)
        tokens = [c.tokens for c in replies]
        end_id = specials[chat_template.END]
        ended = [c.finish_reason == "stop_token" and stopped_by.get(i) == end_id for i, c in enumerate(replies)]
        metrics = failure_rates([c.text for c in replies], list(s.prompts), ended=ended, tokens=tokens,
                                max_new_tokens=s.params.max_new_tokens, thresholds=self.detectors)
        metrics["mean_reply_tokens"] = sum(map(len, tokens)) / len(tokens) if tokens else 0.0
        metrics["distinct2"] = distinct_n(tokens, 2)
        text = "\n\n".join([f"# step {step}: " + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items())]
                           + [f"## user: {p}\n{c.text}" for p, c in zip(s.prompts, replies, strict=True)]) + "\n"
        self.record_samples(trainer, step, text)
        return metrics

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        last = self.curve[-1] if self.curve else {}
        report = {
            **self.plan.static_metrics, "steps": trainer.global_step,
            **{k: v for k, v in last.items() if k not in {"step", "train_loss"}},
            **{f"step0_{k}": v for k, v in (self.baseline or {}).items() if k not in {"step", "collapsed"}},
            "best_step": self.best_step,
            "collapsed": self.collapse is not None,
            "collapse_step": self.collapse["step"] if self.collapse else None,
            "collapse_reason": self.collapse["reason"] if self.collapse else None,
        }
        self.write_reports(report)
        write_json_atomic(self.plan.ckpt_dir / "val_curve.json", self.curve)
