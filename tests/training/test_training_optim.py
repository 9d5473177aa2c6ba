"""Optimizers and schedules: Muon's orthogonalization, the optimizer split, LR shapes, MFU peaks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from src.training.flops import mfu, peak_flops
from src.training.optim import LrSchedule, Muon, OptimizerSettings, build_optimizer, orthogonalize


def test_newton_schulz_gives_near_orthogonal_matrices() -> None:
    g = torch.randn(32, 96, generator=torch.Generator().manual_seed(0))
    for m in (g, g.T):
        s = torch.linalg.svdvals(orthogonalize(m, steps=5))
        # The quintic iteration trades exactness for speed: singular values land in a band around 1.
        assert s.min() > 0.5 and s.max() < 1.5
        assert orthogonalize(m, 5).shape == m.shape


def _settings(kind: str) -> OptimizerSettings:
    return OptimizerSettings(kind, 1e-2, 0.1, (0.9, 0.99), 1e-8, 0.02, 0.95, 5)


def _toy(vocab: int = 11) -> tuple[nn.Module, list[dict]]:
    model = nn.Sequential(nn.Embedding(vocab, 8), nn.Linear(8, 16, bias=False), nn.LayerNorm(16),
                          nn.Linear(16, vocab, bias=False))
    decay = [model[1].weight, model[3].weight]
    rest = [model[0].weight, *model[2].parameters()]
    return model, [{"params": decay, "weight_decay": 0.1, "kind": "matrix"},
                   {"params": rest, "weight_decay": 0.0, "kind": "vector"}]


def test_muon_takes_hidden_matrices_only() -> None:
    model, groups = _toy()
    opt = build_optimizer(groups, _settings("muon"), vocab_size=11, params_on_cuda=False)
    assert isinstance(opt, Muon)
    muon = [p for g in opt.param_groups if g["use_muon"] for p in g["params"]]
    assert len(muon) == 1 and muon[0] is model[1].weight  # the vocab-sized head stays on AdamW
    decayed_adam = [p for g in opt.param_groups if not g["use_muon"] and g["weight_decay"] > 0
                    for p in g["params"]]
    assert decayed_adam == [model[3].weight]


@pytest.mark.parametrize("kind", ["adamw", "muon"])
def test_optimizers_reduce_a_loss(kind: str) -> None:
    torch.manual_seed(0)
    model, groups = _toy()
    opt = build_optimizer(groups, _settings(kind), vocab_size=11, params_on_cuda=False)
    x = torch.randint(0, 11, (64,))
    losses = []
    for _ in range(30):
        loss = nn.functional.cross_entropy(model(x), (x + 1) % 11)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    state = opt.state_dict()
    clone = build_optimizer(_toy()[1], _settings(kind), vocab_size=11, params_on_cuda=False)
    clone.load_state_dict(state)  # resumable


def test_unknown_optimizer_is_named() -> None:
    with pytest.raises(ValueError, match="pretrain.optimizer"):
        build_optimizer(_toy()[1], _settings("sgd"), vocab_size=11, params_on_cuda=False)


def test_cosine_schedule() -> None:
    f = LrSchedule("cosine", max_steps=100, warmup_steps=10, decay_steps=0, wsd_decay_frac=0.2,
                   min_ratio=0.1)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0) and f(55) == pytest.approx(0.55)
    assert f(100) == pytest.approx(0.1) and f(500) == pytest.approx(0.1)
    assert all(f(s) >= f(s + 1) for s in range(10, 120))


def test_wsd_schedule() -> None:
    f = LrSchedule("wsd", max_steps=100, warmup_steps=10, decay_steps=0, wsd_decay_frac=0.2,
                   min_ratio=0.0)
    assert f(5) == pytest.approx(0.6)
    assert f(10) == f(79) == 1.0
    assert f(90) == pytest.approx(0.5) and f(100) == pytest.approx(0.0)


def test_peak_table_and_mfu() -> None:
    assert peak_flops(torch.device("cpu"), "32-true") is None
    assert peak_flops(torch.device("cpu"), "32-true", configured_tflops=2.0) == 2e12
    assert mfu(1e6, 1e6, None, 1) is None
    assert mfu(6e6, 1e6, 989e12, 2) == pytest.approx(6e12 / (2 * 989e12))
