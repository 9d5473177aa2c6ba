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


def _toy(vocab: int = 11, hidden: int = 16) -> tuple[nn.Module, list[dict]]:
    model = nn.Sequential(nn.Embedding(vocab, 8), nn.Linear(8, hidden, bias=False), nn.LayerNorm(hidden),
                          nn.Linear(hidden, vocab, bias=False))
    return model, [{"params": [model[1].weight], "weight_decay": 0.1, "kind": "matrix"},
                   {"params": [model[3].weight], "weight_decay": 0.1, "kind": "head"},
                   {"params": [model[0].weight], "weight_decay": 0.0, "kind": "embedding"},
                   {"params": list(model[2].parameters()), "weight_decay": 0.0, "kind": "vector"}]


def _muon_params(opt: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [p for g in opt.param_groups if g["use_muon"] for p in g["params"]]


@pytest.mark.parametrize("hidden", [16, 11], ids=["other-shape", "vocab-sized-hidden"])
def test_muon_takes_hidden_matrices_by_kind_not_shape(hidden: int) -> None:
    # hidden=11: the hidden matrix is 8 x 11, a dimension equal to the vocabulary; it is still a
    # hidden matrix and belongs on Muon (choosing by shape kept it off).
    model, groups = _toy(vocab=11, hidden=hidden)
    opt = build_optimizer(groups, _settings("muon"), params_on_cuda=False)
    assert isinstance(opt, Muon)
    muon = _muon_params(opt)
    assert len(muon) == 1 and muon[0] is model[1].weight  # the head stays on AdamW
    decayed_adam = [p for g in opt.param_groups if not g["use_muon"] and g["weight_decay"] > 0
                    for p in g["params"]]
    assert decayed_adam == [model[3].weight]


@pytest.mark.parametrize("tie", [True, False])
def test_muon_on_the_gpt_whose_mlp_width_equals_the_vocabulary(tie: bool) -> None:
    from src.models.gpt import GPT

    # n_embd=16, mlp_ratio 4: c_fc is 64 x 16 and c_proj 16 x 64, with a vocabulary of 64.
    model = GPT({"vocab_size": 64, "block_size": 8, "n_layer": 2, "n_head": 2, "n_embd": 16,
                 "tie_embeddings": tie})
    opt = build_optimizer(model.optim_groups(0.1), _settings("muon"), params_on_cuda=False)
    names = {id(p): n for n, p in model.named_parameters()}
    on_muon = {names[id(p)] for p in _muon_params(opt)}
    hidden = {n for n, m in model.named_modules() if isinstance(m, nn.Linear) and n != "lm_head"}
    assert on_muon == {f"{n}.weight" for n in hidden}
    assert any("mlp.c_fc" in n for n in on_muon) and "lm_head.weight" not in on_muon


@pytest.mark.parametrize("kind", ["adamw", "muon"])
def test_optimizers_reduce_a_loss(kind: str) -> None:
    torch.manual_seed(0)
    model, groups = _toy()
    opt = build_optimizer(groups, _settings(kind), params_on_cuda=False)
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
    clone = build_optimizer(_toy()[1], _settings(kind), params_on_cuda=False)
    clone.load_state_dict(state)  # resumable


def test_unknown_optimizer_is_named() -> None:
    with pytest.raises(ValueError, match="pretrain.optimizer"):
        build_optimizer(_toy()[1], _settings("sgd"), params_on_cuda=False)


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
    # Worked by hand: GPT-2 124M at 0.855 GFLOPs per token, 100k tokens/s on one A100 (312 TFLOP/s
    # bf16 dense per its data sheet) = 85.5 TFLOP/s achieved, 27.4% of peak; on two, half that.
    assert mfu(855_166_464, 100_000, 312e12, 1) == pytest.approx(0.2741, abs=1e-4)
    assert mfu(855_166_464, 100_000, 312e12, 2) == pytest.approx(0.1370, abs=1e-4)


def test_peak_table_matches_the_data_sheets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H100 80GB HBM3")
    assert peak_flops(torch.device("cuda"), "bf16-mixed") == 989e12  # H100 SXM, dense BF16
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H100 PCIe")
    assert peak_flops(torch.device("cuda"), "bf16-mixed") == 756e12
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA A100-SXM4-80GB")
    assert peak_flops(torch.device("cuda"), "32-true") == 156e12  # TF32 dense
