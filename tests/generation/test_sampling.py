from __future__ import annotations

import pytest
import torch

from src.generation.sampling import (
    TOP_P_CANDIDATES,
    SamplingParams,
    apply_repetition_penalty,
    sample,
    sample_from_probs,
)


def draws(logits: torch.Tensor, params: SamplingParams, n: int = 4000, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return sample(logits.expand(n, -1), params, generator=g)


def test_greedy_is_argmax_and_top_k_1_is_greedy():
    logits = torch.randn(5, 50)
    assert torch.equal(sample(logits, SamplingParams(temperature=0.0)), logits.argmax(-1))
    assert torch.equal(sample(logits, SamplingParams(temperature=2.0, top_k=1)), logits.argmax(-1))


def test_inverse_cdf_sampling_follows_the_probabilities_and_skips_zeros():
    probs = torch.tensor([[0.5, 0.0, 0.3, 0.2, 0.0]]).expand(20000, -1)
    picks = sample_from_probs(probs, torch.Generator().manual_seed(1))
    freq = torch.bincount(picks, minlength=5).float() / len(picks)
    assert freq[1] == 0 and freq[4] == 0
    assert torch.allclose(freq, probs[0], atol=0.015)


def test_top_k_keeps_only_the_k_likeliest():
    logits = torch.linspace(0, 1, 30)[None]  # token 29 likeliest
    picks = draws(logits, SamplingParams(temperature=1.0, top_k=3))
    assert set(picks.tolist()) == {27, 28, 29}


def test_top_p_keeps_the_nucleus_and_renormalizes():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    picks = draws(probs.log(), SamplingParams(temperature=1.0, top_p=0.8))
    freq = torch.bincount(picks, minlength=4).float() / len(picks)
    # Mass before token 2 is 0.8, so it is dropped; 0 and 1 are renormalized to 5/8 and 3/8.
    assert freq[2] == 0 and freq[3] == 0
    assert freq[0] == pytest.approx(0.625, abs=0.03)


def test_top_p_beyond_the_candidate_set_falls_back_to_a_full_sort():
    vocab = 4 * TOP_P_CANDIDATES
    logits = torch.zeros(1, vocab)  # flat: the nucleus of 0.9 holds 90% of the tokens
    picks = draws(logits, SamplingParams(temperature=1.0, top_p=0.9), n=3000)
    assert len(set(picks.tolist())) > TOP_P_CANDIDATES


def test_top_k_then_top_p_work_together():
    probs = torch.tensor([[0.4, 0.3, 0.2, 0.1]])
    picks = draws(probs.log(), SamplingParams(temperature=1.0, top_k=3, top_p=0.5))
    # top-3 renormalized: 0.444, 0.333, 0.222; mass before token 1 is 0.444 < 0.5, before 2 is 0.78.
    assert set(picks.tolist()) == {0, 1}


def test_repetition_penalty_lowers_seen_tokens_both_signs():
    logits = torch.tensor([[2.0, -2.0, 2.0, -2.0]])
    seen = torch.tensor([[True, True, False, False]])
    out = apply_repetition_penalty(logits, seen, 2.0)
    assert out.tolist() == [[1.0, -4.0, 2.0, -2.0]]
    assert torch.equal(apply_repetition_penalty(logits, seen, 1.0), logits)
    # Under greedy decoding the penalty can change the choice.
    assert sample(torch.tensor([[2.0, 1.5]]), SamplingParams(temperature=0, repetition_penalty=2.0),
                  seen=torch.tensor([[True, False]])).item() == 1


def test_seeded_sampling_is_reproducible():
    logits = torch.randn(8, 100)
    params = SamplingParams(temperature=1.0, top_p=0.9)
    a = sample(logits, params, generator=torch.Generator().manual_seed(5))
    b = sample(logits, params, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def test_invalid_parameters_are_named():
    with pytest.raises(ValueError, match="top_p"):
        SamplingParams(top_p=0.0)
    with pytest.raises(ValueError, match="temperature"):
        SamplingParams(temperature=-1)
    with pytest.raises(ValueError, match="max_new_tokens"):
        SamplingParams().with_(max_new_tokens=0)
