"""The SFT LightningModule and evaluation callback: the pretraining ones with a masked, step-normalized
loss over packed conversations, and chat replies sampled through the generation engine.

Loss normalization. With a loss mask, micro-batches carry very different numbers of loss tokens, so
a mean of per-micro-batch means weights a token in a sparse micro-batch more than one in a dense
one. Here every micro-batch returns (sum of its token losses) / (loss tokens of the whole optimizer
step, summed over micro-batches and devices): the accumulated gradient is that of the mean over
every loss token of the step. Lightning divides each micro-batch's loss by the accumulation count
and DDP/FSDP average gradients over devices, so the returned value is scaled by both to undo that.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.strategies import FSDPStrategy
from torch import Tensor

from src.eval.detectors import loop_rate
from src.generation import chat_template
from src.generation.engine import Engine
from src.generation.sampling import SamplingParams
from src.models.gpt import IGNORE_INDEX
from src.training.callbacks import Evaluator, _sync, eager, last_train_loss
from src.training.checkpoint import BEST
from src.training.module import PretrainModule

SFTBatch = tuple[Tensor, Tensor, Tensor, Tensor]


def token_loss_sum(logits: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """Sum of cross-entropy (float32) over positions whose target is not -100, and their count."""
    flat = targets.reshape(-1)
    total = F.cross_entropy(logits.float().view(-1, logits.shape[-1]), flat, ignore_index=IGNORE_INDEX,
                            reduction="sum")
    return total, (flat != IGNORE_INDEX).sum()


class SFTModule(PretrainModule):
    """PretrainModule (optimizer, schedule, clipping, non-finite guard, exact resume) with the SFT
    loss. Checkpoints are marked as chat models ("chat": True) and record the tokenizer's sha256."""

    def __init__(self, model: dict, recipe: dict, trainer: dict, tokenizer_dir: str,
                 tokenizer_sha256: str, identity: dict | None = None, world_size: int = 1) -> None:
        super().__init__(model, recipe, trainer, tokenizer_dir, identity)
        self.hparams["chat"] = True
        self.hparams["tokenizer_sha256"] = tokenizer_sha256
        self.world = world_size

    def step_loss_tokens(self, local: Tensor) -> Tensor:
        """The optimizer step's loss-token count over every device (an all-reduce when there are several)."""
        if self.world > 1:
            return self.trainer.strategy.reduce(local, reduce_op="sum")
        return local

    def training_step(self, batch: SFTBatch, batch_idx: int) -> Tensor:
        x, y, doc, step_tokens = batch
        logits, _ = self.model(x, doc_ids=doc)
        total, _ = token_loss_sum(logits, y)
        n_global = self.step_loss_tokens(step_tokens.to(total.device)).clamp_min(1)
        # This rank's share of the step's mean loss, for logging and the non-finite guard; the base
        # class divides the sum by _micro_batches, which stays 0 here (max(1, 0) = 1).
        share = total.detach() / step_tokens.to(total.device).clamp_min(1)
        self._loss_sum = share if self._loss_sum is None else self._loss_sum + share
        accum = self.trainer.accumulate_grad_batches if self._trainer is not None else 1
        return total * (accum * self.world) / n_global

    def validation_step(self, batch: SFTBatch, batch_idx: int) -> Tensor:
        return masked_loss_sums(self.model, batch)


def masked_loss_sums(model: torch.nn.Module, batch: SFTBatch) -> Tensor:
    """[sum of token losses, loss tokens, loss bytes] of one validation micro-batch (x, y, doc, bytes)."""
    x, y, doc, n_bytes = batch
    logits, _ = model(x, doc_ids=doc)
    total, n = token_loss_sum(logits, y)
    return torch.stack([total.double(), n.double(), n_bytes.to(total.device).double()])


def loss_and_bpb(nats: float, tokens: float, n_bytes: float) -> tuple[float | None, float | None]:
    """Mean loss per loss token and bits per byte of the text under loss; None without tokens."""
    return (nats / tokens if tokens else None, nats / math.log(2) / n_bytes if n_bytes else None)


@dataclass
class ChatSampleSettings:
    prompts: list[str]  # user messages
    params: SamplingParams
    seed: int
    tokenizer: Any = field(repr=False)
    loop_thresholds: dict[str, int] = field(default_factory=dict)


def reply_metrics(finish: list[str], stop_tokens: list[int | None], replies: list[list[int]],
                  end_id: int, loop_thresholds: dict[str, int]) -> dict[str, float]:
    """End-of-turn rate (replies closed by <|end|> before the token limit), mean reply length in
    tokens, and loop rate (src/eval/detectors.py)."""
    n = len(replies)
    ended = sum(1 for f, t in zip(finish, stop_tokens, strict=True) if f == "stop_token" and t == end_id)
    return {"eot_rate": ended / n if n else 0.0,
            "mean_reply_tokens": sum(map(len, replies)) / n if n else 0.0,
            "loop_rate": loop_rate(replies, **loop_thresholds)}


class SFTEvaluator(Evaluator):
    """Every val_every steps: loss and bits per byte over the assistant tokens of held-out
    conversations, replies to fixed prompts with their end-of-turn, length and loop metrics."""

    def __init__(self, *args: Any, chat: ChatSampleSettings | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.chat = chat

    @torch.no_grad()
    def validation_sums(self, trainer: L.Trainer, pl_module: L.LightningModule) -> tuple[float, float, float]:
        was_training = pl_module.training
        pl_module.eval()
        total = torch.zeros(3, device=pl_module.device, dtype=torch.float64)
        for i, batch in enumerate(self.dm.eval_dataloader()):
            batch = trainer.strategy.batch_to_device(batch)
            total += trainer.strategy.validation_step(batch, i).double()
        total = trainer.strategy.reduce(total, reduce_op="sum")
        pl_module.train(was_training)
        return float(total[0]), float(total[1]), float(total[2])

    def evaluate(self, trainer: L.Trainer, pl_module: L.LightningModule, step: int) -> None:
        nats, tokens, n_bytes = self.validation_sums(trainer, pl_module)
        # No val tokens (no val conversation fits): None, written as null in metrics.json rather
        # than a NaN that reads like a diverged run; the stage summary says why.
        val_loss, val_bpb = loss_and_bpb(nats, tokens, n_bytes)
        entry: dict[str, float | None] = {"step": step, "val_loss": val_loss, "val_bpb": val_bpb}
        entry.update(self.sample_replies(trainer, pl_module, step))
        self.curve.append({"step": step, "train_loss": last_train_loss(pl_module),
                           **{k: v for k, v in entry.items() if k != "step"}})
        for logger in trainer.loggers:
            logger.log_metrics({f"val/{k}": v for k, v in entry.items() if k != "step" and v is not None},
                               step=step)
        if trainer.is_global_zero:
            extra = "".join(f", {k} {v:.3f}" for k, v in entry.items() if k not in {"step", "val_loss", "val_bpb"})
            measured = ("no val tokens" if val_loss is None or val_bpb is None
                        else f"val loss {val_loss:.4f}, val bpb {val_bpb:.4f}")
            print(f"step {step}: {measured}{extra}", file=sys.stderr)
        if val_loss is not None and math.isfinite(val_loss) and val_loss < self.best_loss:
            self.best_loss, self.best_step = val_loss, step
            trainer.save_checkpoint(self.plan.ckpt_dir / BEST, weights_only=False)

    @torch.no_grad()
    def sample_replies(self, trainer: L.Trainer, pl_module: L.LightningModule, step: int) -> dict[str, float]:
        s = self.chat
        if s is None or not s.prompts or isinstance(trainer.strategy, FSDPStrategy) or not trainer.is_global_zero:
            return {}  # sharded weights cannot run a forward on one rank alone
        _sync(pl_module.device)
        with trainer.precision_plugin.forward_context():
            metrics, text = chat_replies(pl_module.model, s, f"step {step}")
        self.record_samples(trainer, step, text)
        return metrics


@torch.no_grad()
def chat_replies(model: torch.nn.Module, s: ChatSampleSettings, title: str) -> tuple[dict[str, float], str]:
    """Replies of `model` to the fixed prompts, each the first user message of a chat, through the
    generation engine (eager; every special token stops a reply): their metrics and a readable text."""
    tok = s.tokenizer
    specials = tok.special_tokens
    prompts = [chat_template.encode(tok, [{"role": "user", "content": tok.normalize(p)}]) for p in s.prompts]
    engine = Engine(model, tok, precision=None, static_cache=False, cuda_graphs=False, compile_model=False)
    stopped_by: dict[int, int] = {}

    def on_token(event: Any) -> None:
        if event.finish_reason == "stop_token":
            stopped_by[event.row] = event.token

    with eager():
        completions = engine.generate(prompts, s.params, stop_ids=sorted(specials.values()), seed=s.seed,
                                      on_token=on_token)
    metrics = reply_metrics([c.finish_reason for c in completions],
                            [stopped_by.get(i) for i in range(len(completions))],
                            [c.tokens for c in completions], specials[chat_template.END], s.loop_thresholds)
    parts = [f"# {title}: " + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items())]
    for prompt, c in zip(s.prompts, completions, strict=True):
        ending = (tok.id_to_piece(stopped_by[c.prompt_index]) if c.finish_reason == "stop_token"
                  else f"[{c.finish_reason}]")
        parts.append(f"## user: {prompt}\n{c.text}{ending}")
    return metrics, "\n\n".join(parts) + "\n"
