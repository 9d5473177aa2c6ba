"""Optimizers and learning-rate schedules for pretraining.

- AdamW (fused kernels on CUDA) with weight decay on weight matrices only.
- Muon for the hidden weight matrices: momentum, then the update is replaced by the nearest
  semi-orthogonal matrix (computed with a Newton-Schulz iteration), so every direction of the matrix
  moves by a similar amount. Embeddings, the output head, norms and biases keep AdamW.
- Schedules: linear warmup then cosine to a floor, or warmup-stable-decay (WSD).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

# Quintic Newton-Schulz coefficients from the Muon write-up: chosen so the iteration drives singular
# values into a band around 1 in about five steps (exact convergence is not needed, speed is).
NS_COEFFS = (3.4445, -4.7750, 2.0315)
NS_EPS = 1e-7


def orthogonalize(grad: Tensor, steps: int) -> Tensor:
    """Approximately U V^T for grad = U S V^T (a 2-D matrix), via `steps` Newton-Schulz iterations."""
    a, b, c = NS_COEFFS
    # bf16 is accurate enough for this iteration and much faster on GPUs; the CPU stays in fp32.
    x = grad.to(torch.bfloat16 if grad.is_cuda else torch.float32)
    wide = x.size(0) <= x.size(1)
    if not wide:
        x = x.T  # iterate on the smaller Gram matrix
    x = x / (x.norm() + NS_EPS)  # spectral norm <= Frobenius norm <= 1: inside the convergence region
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return (x if wide else x.T).to(grad.dtype)


class Muon(torch.optim.Optimizer):
    """Muon on groups with `use_muon=True`, AdamW on the others, in one optimizer (one LR schedule).

    Muon groups: lr, momentum, weight_decay, ns_steps. AdamW groups: lr, betas, eps, weight_decay.
    """

    def __init__(self, groups: list[dict]) -> None:
        super().__init__(groups, defaults={})

    @torch.no_grad()
    def step(self, closure=None):  # noqa: ANN001 - torch's signature
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if group["use_muon"]:
                    self._muon_update(p, group)
                else:
                    self._adamw_update(p, group)
        return loss

    def _muon_update(self, p: Tensor, group: dict) -> None:
        state = self.state[p]
        if "momentum" not in state:
            state["momentum"] = torch.zeros_like(p)
        buf, mom = state["momentum"], group["momentum"]
        buf.lerp_(p.grad, 1 - mom)
        nesterov = p.grad.lerp(buf, mom)
        update = orthogonalize(nesterov.reshape(p.size(0), -1), group["ns_steps"]).view_as(p)
        # An orthogonal update has unit singular values; scale so tall matrices get RMS-comparable steps.
        scale = max(1.0, p.size(0) / p[0].numel()) ** 0.5
        p.mul_(1 - group["lr"] * group["weight_decay"])
        p.add_(update, alpha=-group["lr"] * scale)

    def _adamw_update(self, p: Tensor, group: dict) -> None:
        state = self.state[p]
        if "step" not in state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(p)
            state["exp_avg_sq"] = torch.zeros_like(p)
        state["step"] += 1
        beta1, beta2 = group["betas"]
        state["exp_avg"].lerp_(p.grad, 1 - beta1)
        state["exp_avg_sq"].mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
        bias1 = 1 - beta1 ** state["step"]
        bias2 = 1 - beta2 ** state["step"]
        denom = (state["exp_avg_sq"] / bias2).sqrt_().add_(group["eps"])
        p.mul_(1 - group["lr"] * group["weight_decay"])
        p.addcdiv_(state["exp_avg"], denom, value=-group["lr"] / bias1)


MUON_KINDS = frozenset({"matrix"})


def split_muon_params(groups: list[dict]) -> tuple[list[Tensor], list[dict]]:
    """Pull the hidden matrices (groups of kind "matrix", see GPT.optim_groups) out for Muon.

    Muon is meant for hidden layers: embedding tables, the output head and vectors stay on AdamW.
    The choice is by what a parameter is, never by its shape (a hidden matrix may well have a
    vocabulary-sized dimension). A group without a kind is not guessed at: it stays on AdamW.
    """
    muon: list[Tensor] = []
    rest: list[dict] = []
    for group in groups:
        if group.get("kind") in MUON_KINDS:
            muon.extend(group["params"])
        else:
            rest.append(group)
    return muon, rest


@dataclass(frozen=True)
class OptimizerSettings:
    kind: str  # adamw | muon
    lr: float
    weight_decay: float
    betas: tuple[float, float]
    eps: float
    muon_lr: float
    muon_momentum: float
    muon_ns_steps: int


def build_optimizer(groups: list[dict], settings: OptimizerSettings,
                    params_on_cuda: bool) -> torch.optim.Optimizer:
    """AdamW (fused on CUDA) or Muon+AdamW over the model's parameter groups."""
    if settings.kind == "adamw":
        return torch.optim.AdamW(groups, lr=settings.lr, betas=settings.betas, eps=settings.eps,
                                 fused=params_on_cuda)
    if settings.kind == "muon":
        muon, rest = split_muon_params(groups)
        adam_groups = [{**g, "use_muon": False, "lr": settings.lr, "betas": settings.betas,
                        "eps": settings.eps} for g in rest]
        muon_group = {"params": muon, "use_muon": True, "lr": settings.muon_lr,
                      "momentum": settings.muon_momentum, "ns_steps": settings.muon_ns_steps,
                      "weight_decay": settings.weight_decay}
        return Muon(adam_groups + ([muon_group] if muon else []))
    raise ValueError(f"pretrain.optimizer: unknown optimizer {settings.kind!r} (adamw | muon)")


class LrSchedule:
    """The learning-rate multiplier at an optimizer step (a LambdaLR function; picklable, plain state)."""

    def __init__(self, kind: str, max_steps: int, warmup_steps: int, decay_steps: int,
                 wsd_decay_frac: float, min_ratio: float) -> None:
        if kind not in {"cosine", "wsd"}:
            raise ValueError(f"pretrain.schedule: unknown schedule {kind!r} (cosine | wsd)")
        self.kind, self.max_steps, self.warmup = kind, max_steps, warmup_steps
        self.decay_end = decay_steps or max_steps
        self.decay_start = int(round(max_steps * (1 - wsd_decay_frac)))
        self.min_ratio = min_ratio

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        if self.kind == "cosine":
            span = max(1, self.decay_end - self.warmup)
            progress = min(1.0, (step - self.warmup) / span)
            return self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
        if step < self.decay_start:
            return 1.0
        progress = min(1.0, (step - self.decay_start) / max(1, self.max_steps - self.decay_start))
        return 1.0 - (1.0 - self.min_ratio) * progress
