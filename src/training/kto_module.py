"""The KTO LightningModule: pretraining's module (optimizer, schedule, clipping, non-finite guard,
exact resume) with the KTO loss over scored (prompt, completion) pairs.

Each micro-batch is a tensor of row indices into the training pairs (kto_data.py). The policy's
summed completion log-probs come from `src.generation.scoring.completion_logprobs`, the one scoring
function the pair collection and evaluation use too; the mismatched pairs for z0 are scored without
gradient (z0 is detached anyway). The reference log-probs are either looked up (precomputed once
before training) or scored by a frozen copy of the SFT model held outside the module's parameters
(so it is neither optimized, nor saved in checkpoints, nor wrapped by DDP).

Under DDP, z0 is the mean over every rank's mismatched pairs (one all-reduce per micro-batch), as
TRL gathers it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from src.generation.scoring import completion_logprobs
from src.models.gpt import GPT
from src.training.kto import kto_loss
from src.training.kto_data import Arrangement, EncodedPairs
from src.training.module import PretrainModule

METRIC_NAMES = ("kl", "rewards/chosen", "rewards/rejected", "rewards/margins", "logps/chosen", "logps/rejected")


@dataclass(frozen=True)
class LossSettings:
    beta: float
    desirable_weight: float
    undesirable_weight: float
    loss_type: str
    clamp_z0: bool = True


@torch.no_grad()
def score(model: torch.nn.Module, prompts: Sequence[Sequence[int]], completions: Sequence[Sequence[int]],
          batch_size: int) -> Tensor:
    """Summed completion log-probs [N] (float32, on the CPU), no gradient, the model in eval mode."""
    was_training = model.training
    model.eval()
    try:
        logps, _ = completion_logprobs(model, prompts, completions, batch_size=batch_size)
    finally:
        model.train(was_training)
    return logps.float().cpu()


@dataclass
class ReferenceLogps:
    """The reference model's log-probs of each row's completion and of its mismatched pair."""

    completion: Tensor  # [N]
    mismatched: Tensor  # [N]: prompt of row i, completion of arrangement.partner[i]

    @classmethod
    def compute(cls, reference: torch.nn.Module, pairs: EncodedPairs, partner: Sequence[int],
                batch_size: int) -> ReferenceLogps:
        completion = score(reference, pairs.prompts, pairs.completions, batch_size)
        mismatched = score(reference, pairs.prompts, [pairs.completions[j] for j in partner], batch_size)
        return cls(completion, mismatched)


class KTOModule(PretrainModule):
    """Checkpoints are marked as chat models ("chat": True) and record the tokenizer's sha256."""

    def __init__(self, model: dict, recipe: dict, trainer: dict, tokenizer_dir: str, tokenizer_sha256: str,
                 loss: LossSettings, identity: dict | None = None, world_size: int = 1,
                 normalize: dict | None = None) -> None:
        super().__init__(model, recipe, trainer, tokenizer_dir, identity, normalize)
        self.hparams["chat"] = True
        self.hparams["tokenizer_sha256"] = tokenizer_sha256
        self.hparams["kto"] = asdict(loss)
        self.loss_settings = loss
        self.world = world_size
        self.pairs = EncodedPairs()
        self.arrangement: Arrangement | None = None
        self.reference_logps: ReferenceLogps | None = None
        self._frozen: list[GPT] = []  # a list keeps it out of the module's children
        self.step_metrics: dict[str, float] = {}
        self._metric_sums: dict[str, list[float]] = {}

    def attach(self, pairs: EncodedPairs, arrangement: Arrangement, reference_logps: ReferenceLogps | None,
               frozen_reference: GPT | None) -> None:
        """The training rows and where their reference log-probs come from (exactly one of the two)."""
        if (reference_logps is None) == (frozen_reference is None):
            raise ValueError("give either precomputed reference log-probs or a frozen reference model")
        self.pairs, self.arrangement, self.reference_logps = pairs, arrangement, reference_logps
        if frozen_reference is not None:
            frozen_reference.requires_grad_(False).eval()
            self._frozen = [frozen_reference]

    def on_fit_start(self) -> None:
        if self._frozen:
            self._frozen[0].to(self.device)

    def _reference(self, prompts: list[list[int]], completions: list[list[int]], rows: list[int],
                   which: str) -> Tensor:
        if self.reference_logps is not None:
            table = getattr(self.reference_logps, which)
            return table[torch.tensor(rows)].to(self.device)
        with torch.no_grad():
            return completion_logprobs(self._frozen[0], prompts, completions)[0]

    def _z0_inputs(self, rows: list[int]) -> tuple[Tensor, Tensor]:
        """Policy and reference log-probs of this micro-batch's genuine mismatched pairs, reduced to
        their (all-rank) mean difference as a one-element pair, which kto_loss then takes as z0."""
        assert self.arrangement is not None
        a, d = self.arrangement, self.pairs
        kl_rows = [i for i in rows if a.genuine[i]] or rows  # all rows of one prompt: nothing better
        prompts = [d.prompts[i] for i in kl_rows]
        completions = [d.completions[a.partner[i]] for i in kl_rows]
        with torch.no_grad():
            policy = completion_logprobs(self.model, prompts, completions)[0]
        reference = self._reference(prompts, completions, kl_rows, "mismatched")
        diff = torch.stack([(policy - reference).sum(), torch.tensor(float(len(kl_rows)), device=self.device)])
        if self.world > 1:
            diff = self.trainer.strategy.reduce(diff, reduce_op="sum")
        return (diff[0] / diff[1]).reshape(1), torch.zeros(1, device=self.device)

    def training_step(self, batch: Tensor, batch_idx: int) -> Tensor:
        rows = batch.tolist()
        d, s = self.pairs, self.loss_settings
        prompts = [d.prompts[i] for i in rows]
        completions = [d.completions[i] for i in rows]
        policy, _ = completion_logprobs(self.model, prompts, completions)
        reference = self._reference(prompts, completions, rows, "completion")
        labels = torch.tensor([d.labels[i] for i in rows], device=self.device)
        kl_policy, kl_reference = self._z0_inputs(rows) if s.loss_type == "kto" else (None, None)
        loss, metrics = kto_loss(policy, reference, labels, kl_policy, kl_reference, beta=s.beta,
                                 desirable_weight=s.desirable_weight, undesirable_weight=s.undesirable_weight,
                                 loss_type=s.loss_type, clamp_z0=s.clamp_z0)
        detached = loss.detach()
        self._loss_sum = detached if self._loss_sum is None else self._loss_sum + detached
        self._micro_batches += 1
        for name, value in metrics.items():
            self._metric_sums.setdefault(name, []).append(float(value))
        return loss

    def configure_gradient_clipping(self, optimizer: torch.optim.Optimizer, gradient_clip_val: float | None = None,
                                    gradient_clip_algorithm: str | None = None) -> None:
        super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)
        # The step's KTO metrics: means over its micro-batches, a class absent from all of them NaN.
        self.step_metrics = {}
        for name, values in self._metric_sums.items():
            finite = [v for v in values if not math.isnan(v)]
            self.step_metrics[name] = sum(finite) / len(finite) if finite else math.nan
        self._metric_sums = {}
