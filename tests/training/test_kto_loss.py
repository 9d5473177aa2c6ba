"""kto_loss against values computed by hand, the rotation of mismatched pairs, the weight balance."""

from __future__ import annotations

import math

import pytest
import torch

from src.training.kto import (
    balance_warning,
    genuine_mismatches,
    kto_loss,
    mismatched_pairs,
    weight_balance,
)


def sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


POLICY = t(-10.0, -20.0, -5.0)
REFERENCE = t(-12.0, -18.0, -5.0)  # r = 2, -2, 0
LABELS = torch.tensor([True, False, True])


def test_kto_matches_hand_computed_values():
    # z0 = mean((-3 - -4), (-7 - -6.5)) = mean(1, -0.5) = 0.25
    loss, m = kto_loss(POLICY, REFERENCE, LABELS, t(-3.0, -7.0), t(-4.0, -6.5), beta=0.1)
    z0 = 0.25
    want = [1 - sig(0.1 * (2 - z0)), 1 - sig(0.1 * (z0 - -2)), 1 - sig(0.1 * (0 - z0))]
    assert loss.item() == pytest.approx(sum(want) / 3, rel=1e-6)
    assert m["kl"].item() == pytest.approx(z0)
    assert m["rewards/chosen"].item() == pytest.approx(0.1 * (2 + 0) / 2)
    assert m["rewards/rejected"].item() == pytest.approx(0.1 * -2)
    assert m["rewards/margins"].item() == pytest.approx(0.1 + 0.2)
    assert m["logps/chosen"].item() == pytest.approx(-7.5)
    assert m["logps/rejected"].item() == pytest.approx(-20.0)


def test_reference_point_is_clamped_at_zero():
    # mean(policy_kl - reference_kl) = -3 < 0, so z0 = 0
    loss, m = kto_loss(POLICY, REFERENCE, LABELS, t(-9.0, -9.0), t(-6.0, -6.0), beta=0.5)
    want = [1 - sig(0.5 * 2), 1 - sig(0.5 * 2), 1 - sig(0)]
    assert m["kl"].item() == 0.0
    assert loss.item() == pytest.approx(sum(want) / 3, rel=1e-6)


def test_reference_point_unclamped_goes_negative():
    # the same batch with clamp_z0=False: z0 = -3, so the desirable rewards are measured from -3
    loss, m = kto_loss(POLICY, REFERENCE, LABELS, t(-9.0, -9.0), t(-6.0, -6.0), beta=0.5, clamp_z0=False)
    want = [1 - sig(0.5 * (2 + 3)), 1 - sig(0.5 * (-3 + 2)), 1 - sig(0.5 * 3)]
    assert m["kl"].item() == -3.0
    assert loss.item() == pytest.approx(sum(want) / 3, rel=1e-6)
    # a positive z0 is the same either way
    clamped, _ = kto_loss(POLICY, REFERENCE, LABELS, t(-3.0, -7.0), t(-4.0, -6.5), beta=0.1)
    free, _ = kto_loss(POLICY, REFERENCE, LABELS, t(-3.0, -7.0), t(-4.0, -6.5), beta=0.1, clamp_z0=False)
    assert clamped.item() == free.item()


def test_weights_scale_each_class():
    _, m = kto_loss(POLICY, REFERENCE, LABELS, t(-3.0), t(-3.0), beta=0.1)
    loss, _ = kto_loss(POLICY, REFERENCE, LABELS, t(-3.0), t(-3.0), beta=0.1, desirable_weight=2.0,
                       undesirable_weight=0.5)
    want = [2.0 * (1 - sig(0.2)), 0.5 * (1 - sig(0.2)), 2.0 * (1 - sig(0))]
    assert loss.item() == pytest.approx(sum(want) / 3, rel=1e-6)


def test_apo_zero_unpaired_needs_no_reference_point():
    loss, m = kto_loss(POLICY, REFERENCE, LABELS, None, None, beta=0.1, loss_type="apo_zero_unpaired")
    want = [1 - sig(0.2), sig(0.1 * -2), 1 - sig(0)]
    assert loss.item() == pytest.approx(sum(want) / 3, rel=1e-6)
    assert m["kl"].item() == 0.0


def test_only_desirable_batch():
    labels = torch.tensor([True, True])
    loss, m = kto_loss(t(-1.0, -2.0), t(-2.0, -2.0), labels, t(-1.0), t(-1.5), beta=1.0)
    # z0 = 0.5; r = 1, 0
    assert loss.item() == pytest.approx(((1 - sig(0.5)) + (1 - sig(-0.5))) / 2, rel=1e-6)
    assert m["rewards/chosen"].item() == pytest.approx(0.5)
    assert math.isnan(m["rewards/rejected"].item()) and math.isnan(m["logps/rejected"].item())
    assert math.isnan(m["rewards/margins"].item())


def test_only_undesirable_batch():
    labels = torch.tensor([False, False])
    loss, m = kto_loss(t(-1.0, -2.0), t(-2.0, -2.0), labels, t(-1.0), t(-1.5), beta=1.0)
    assert loss.item() == pytest.approx(((1 - sig(0.5 - 1)) + (1 - sig(0.5))) / 2, rel=1e-6)
    assert m["rewards/rejected"].item() == pytest.approx(0.5)
    assert math.isnan(m["rewards/chosen"].item()) and math.isnan(m["logps/chosen"].item())


def test_gradient_flows_through_policy_only_and_not_through_z0():
    policy = t(-10.0, -20.0, -5.0).requires_grad_()
    policy_kl = t(-3.0, -7.0).requires_grad_()
    loss, _ = kto_loss(policy, REFERENCE, LABELS, policy_kl, t(-4.0, -6.5), beta=0.1)
    loss.backward()
    assert policy.grad is not None and torch.all(policy.grad[LABELS] < 0)  # raise desirable log-probs
    assert policy.grad[1] > 0  # lower the undesirable one
    assert policy_kl.grad is None


def test_kto_without_mismatched_pairs_or_with_bad_type_is_refused():
    with pytest.raises(ValueError, match="mismatched pairs"):
        kto_loss(POLICY, REFERENCE, LABELS, None, None, beta=0.1)
    with pytest.raises(ValueError, match="loss_type"):
        kto_loss(POLICY, REFERENCE, LABELS, None, None, beta=0.1, loss_type="sigmoid")


def test_nan_examples_are_left_out_of_the_mean():
    loss, _ = kto_loss(t(-1.0, float("nan")), t(-1.0, -1.0), torch.tensor([True, True]), t(0.0), t(0.0),
                       beta=1.0)
    assert loss.item() == pytest.approx(0.5)


def test_rotation_pairs_each_prompt_with_the_next_completion():
    assert mismatched_pairs(2) == [1, 0]
    assert mismatched_pairs(4) == [1, 2, 3, 0]
    with pytest.raises(ValueError, match="micro-batch of 1"):
        mismatched_pairs(1)
    assert genuine_mismatches(["a", "b", "c"]) == [True, True, True]
    assert genuine_mismatches(["a", "a", "b"]) == [False, True, True]


def test_weight_balance_warning():
    assert weight_balance(10, 10, 1.0, 1.0) == 1.0
    assert balance_warning(12, 10, 1.0, 1.0) is None
    message = balance_warning(10, 30, 1.0, 1.0)
    assert message is not None and "0.333" in message and "desirable_weight=3" in message
    assert balance_warning(10, 0, 1.0, 1.0) is not None
