"""The KTO loss (Kahneman–Tversky optimization) on unpaired desirable/undesirable replies.

Defined as TRL 1.16's `KTOTrainer` defines it, so results can be checked against it:

    r_i  = policy_logps_i - reference_logps_i          (implied reward / beta)
    z0   = max(0, mean_j(policy_kl_logps_j - reference_kl_logps_j)), no gradient (clamp_z0=False:
           without the max, for demonstrations only)
    loss_i = w_d * (1 - sigmoid(beta * (r_i - z0)))    desirable ("kto")
           = w_u * (1 - sigmoid(beta * (z0 - r_i)))    undesirable ("kto")
           = w_d * (1 - sigmoid(beta * r_i))           desirable ("apo_zero_unpaired", no z0)
           = w_u * sigmoid(beta * r_i)                 undesirable ("apo_zero_unpaired")
    loss = nanmean_i(loss_i)

The reference point z0 estimates the KL divergence between the policy and the reference on
prompts paired with completions that do not answer them (`mismatched_pairs`): a completion's
log-prob moves there only through what the model says regardless of the prompt, which is what a
reference point must capture. It is detached: the model is never rewarded for moving it.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

LOSS_TYPES = ("kto", "apo_zero_unpaired")
# The desirable/undesirable weight balance the KTO paper recommends: (w_d * n_d) / (w_u * n_u) in [1, 4/3].
BALANCE_RANGE = (1.0, 4.0 / 3.0)


def _masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of values[mask]; NaN when the mask selects nothing (a metric that has no examples)."""
    if not bool(mask.any()):
        return torch.tensor(float("nan"), device=values.device)
    return values[mask].mean()


def kto_loss(policy_logps: Tensor, reference_logps: Tensor, labels: Tensor, policy_kl_logps: Tensor | None,
             reference_kl_logps: Tensor | None, *, beta: float, desirable_weight: float = 1.0,
             undesirable_weight: float = 1.0, loss_type: str = "kto",
             clamp_z0: bool = True) -> tuple[Tensor, dict[str, Tensor]]:
    """(scalar loss, detached metrics) for one batch; see the module docstring.

    `*_logps` are summed completion log-probs [B]; `labels` is bool [B] (True = desirable);
    the `*_kl_logps` are for mismatched prompt/completion pairs ([K], K >= 1) with loss_type "kto",
    and None (ignored) with "apo_zero_unpaired". Metrics: `kl` (z0, 0 for apo_zero_unpaired),
    `rewards/chosen`, `rewards/rejected` (mean beta * r per class), `rewards/margins` (their
    difference), `logps/chosen`, `logps/rejected` (mean policy log-prob per class); a class absent
    from the batch gives NaN for its metrics and the margin. `clamp_z0=False` lets z0 go negative
    (not TRL's loss: only to show what the clamp prevents, as the collapse demonstrations do).
    """
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"loss_type must be one of {list(LOSS_TYPES)}, got {loss_type!r}")
    labels = labels.to(dtype=torch.bool, device=policy_logps.device)
    if not (policy_logps.shape == reference_logps.shape == labels.shape) or policy_logps.dim() != 1:
        raise ValueError(f"policy_logps {tuple(policy_logps.shape)}, reference_logps "
                         f"{tuple(reference_logps.shape)} and labels {tuple(labels.shape)} must be the same [B]")
    ratio = policy_logps - reference_logps.detach()
    if loss_type == "kto":
        if policy_kl_logps is None or reference_kl_logps is None or policy_kl_logps.numel() == 0:
            raise ValueError("loss_type 'kto' needs the log-probs of mismatched pairs (policy_kl_logps, "
                             "reference_kl_logps) for its reference point")
        z0 = (policy_kl_logps.detach() - reference_kl_logps.detach()).mean()
        if clamp_z0:
            z0 = z0.clamp(min=0)
        desirable = 1 - F.sigmoid(beta * (ratio - z0))
        undesirable = 1 - F.sigmoid(beta * (z0 - ratio))
    else:
        z0 = torch.zeros((), device=policy_logps.device)
        desirable = 1 - F.sigmoid(beta * ratio)
        undesirable = F.sigmoid(beta * ratio)
    losses = torch.where(labels, desirable_weight * desirable, undesirable_weight * undesirable)
    loss = losses.nanmean()
    rewards = beta * ratio.detach()
    chosen, rejected = _masked_mean(rewards, labels), _masked_mean(rewards, ~labels)
    metrics = {
        "kl": z0.detach(),
        "rewards/chosen": chosen,
        "rewards/rejected": rejected,
        "rewards/margins": chosen - rejected,
        "logps/chosen": _masked_mean(policy_logps.detach(), labels),
        "logps/rejected": _masked_mean(policy_logps.detach(), ~labels),
    }
    return loss, metrics


def mismatched_pairs(n: int) -> list[int]:
    """For a micro-batch of n examples, the completion each prompt is paired with for z0: the next
    example's (rotation by one, the last prompt takes the first completion). A micro-batch of one
    has no other completion, so it is refused."""
    if n < 2:
        raise ValueError(f"a micro-batch of {n} example(s) has no mismatched pair for KTO's reference "
                         "point; the micro-batch size must be at least 2")
    return [(i + 1) % n for i in range(n)]


def genuine_mismatches(prompt_keys: Sequence[Hashable]) -> list[bool]:
    """Per example of a micro-batch: whether the completion `mismatched_pairs` gives its prompt
    belongs to another prompt (False when the rotation happens to pair two rows of one prompt,
    whose completion then answers it and would bias z0)."""
    partner = mismatched_pairs(len(prompt_keys))
    return [prompt_keys[i] != prompt_keys[j] for i, j in enumerate(partner)]


def weight_balance(n_desirable: int, n_undesirable: int, desirable_weight: float,
                   undesirable_weight: float) -> float:
    """(w_d * n_d) / (w_u * n_u): inf when there is no undesirable example, NaN when there is neither."""
    num, den = desirable_weight * n_desirable, undesirable_weight * n_undesirable
    if den == 0:
        return math.nan if num == 0 else math.inf
    return num / den


def balance_warning(n_desirable: int, n_undesirable: int, desirable_weight: float,
                    undesirable_weight: float) -> str | None:
    """A warning when the weighted class balance leaves KTO's recommended range [1, 4/3], with the
    weight that would bring it to 1; None when it is inside."""
    ratio = weight_balance(n_desirable, n_undesirable, desirable_weight, undesirable_weight)
    lo, hi = BALANCE_RANGE
    if lo <= ratio <= hi:
        return None
    hint = ""
    if n_desirable and n_undesirable:
        hint = (f"; kto.desirable_weight={undesirable_weight * n_undesirable / n_desirable:.3g} "
                "would make it 1")
    return (f"(desirable_weight {desirable_weight:g} x {n_desirable} desirable) / (undesirable_weight "
            f"{undesirable_weight:g} x {n_undesirable} undesirable) = {ratio:.3g}, outside the recommended "
            f"[{lo:g}, {hi:.3g}]{hint}")
