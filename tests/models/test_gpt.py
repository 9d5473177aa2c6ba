from __future__ import annotations

import itertools
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from src.config import compose, load_config
from src.config.sections.model import ModelConfig
from src.models.gpt import GPT
from src.paths import CONF_DIR


def small(**overrides) -> dict:
    return {"vocab_size": 97, "block_size": 32, "n_layer": 2, "n_head": 4, "n_embd": 32, **overrides}


MODERN = {"pos_emb": "rope", "norm": "rmsnorm", "qk_norm": True, "mlp": "relu2",
          "tie_embeddings": False, "logit_softcap": 15.0}


@pytest.mark.parametrize("options", [{}, MODERN, {"bias": True, "dropout": 0.1}])
def test_forward_shapes_and_backward(options):
    torch.manual_seed(0)
    model = GPT(small(**options))
    idx = torch.randint(0, 97, (3, 20))
    logits, loss = model(idx, idx)
    assert logits.shape == (3, 20, 97)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    assert model(idx)[1] is None


def test_every_switch_combination_builds_and_runs():
    idx = torch.randint(0, 97, (1, 8))
    for pos, norm, mlp, qk, tie in itertools.product(("learned", "rope"), ("layernorm", "rmsnorm"),
                                                     ("gelu", "relu2"), (False, True), (False, True)):
        model = GPT(small(pos_emb=pos, norm=norm, mlp=mlp, qk_norm=qk, tie_embeddings=tie))
        assert model(idx)[0].shape == (1, 8, 97)


def test_loss_ignores_minus_100_targets():
    torch.manual_seed(0)
    model = GPT(small()).eval()
    idx = torch.randint(0, 97, (2, 10))
    targets = idx.clone()
    targets[:, :4] = -100
    logits, loss = model(idx, targets)
    expected = F.cross_entropy(logits[:, 4:].reshape(-1, 97), idx[:, 4:].reshape(-1))
    assert torch.allclose(loss, expected, atol=1e-5)


@pytest.mark.parametrize("options", [{}, MODERN])
def test_causal_future_tokens_do_not_change_past_logits(options):
    torch.manual_seed(0)
    model = GPT(small(**options)).eval()
    a = torch.randint(0, 97, (1, 12))
    b = a.clone()
    b[0, 8:] = (b[0, 8:] + 1) % 97
    assert torch.allclose(model(a)[0][0, :8], model(b)[0][0, :8], atol=1e-5)
    assert not torch.allclose(model(a)[0][0, 8:], model(b)[0][0, 8:])


def test_accepts_dataclass_dictconfig_and_namespace():
    for cfg in (ModelConfig(vocab_size=50), OmegaConf.structured(ModelConfig(vocab_size=50)),
                SimpleNamespace(**{**vars(ModelConfig()), "vocab_size": 50})):
        assert GPT(cfg).config_dict()["vocab_size"] == 50


def test_bad_config_values_name_the_key():
    with pytest.raises(ValueError, match="vocab_size"):
        GPT(ModelConfig(vocab_size=0))
    for key, value in (("pos_emb", "alibi"), ("norm", "batchnorm"), ("mlp", "swiglu")):
        with pytest.raises(ValueError, match=f"model.{key}"):
            GPT(small(**{key: value}))
    with pytest.raises(ValueError, match="n_head"):
        GPT(small(n_embd=30))
    with pytest.raises(ValueError, match="unknown key"):
        GPT.from_config_dict({**small(), "n_layers": 3})


def test_config_dict_round_trip_is_plain_and_complete():
    model = GPT(small(**MODERN))
    d = model.config_dict()
    assert set(d) == {f for f in vars(ModelConfig())}
    assert all(isinstance(v, (int, float, str, bool)) for v in d.values())
    clone = GPT.from_config_dict(d)
    clone.load_state_dict(model.state_dict())
    idx = torch.randint(0, 97, (1, 6))
    assert torch.equal(model.eval()(idx)[0], clone.eval()(idx)[0])


def test_tied_and_untied_heads():
    tied, untied = GPT(small()), GPT(small(tie_embeddings=False))
    assert tied.lm_head.weight is tied.transformer.wte.weight
    assert untied.lm_head.weight is not untied.transformer.wte.weight
    assert untied.num_params() - tied.num_params() == 97 * 32


@pytest.mark.parametrize("decay_embeddings", [False, True])
def test_optim_groups_decay_matrices_and_optionally_embeddings(decay_embeddings: bool):
    for options in ({}, MODERN, {"bias": True}):
        model = GPT(small(**options))
        groups = model.optim_groups(0.1, decay_embeddings=decay_embeddings)
        ids = [id(p) for g in groups for p in g["params"]]
        assert len(ids) == len(set(ids)) == len(list(model.parameters()))
        names = {id(p): n for n, p in model.named_parameters()}
        decayed = {names[id(p)] for g in groups if g["weight_decay"] > 0 for p in g["params"]}
        assert all(g["weight_decay"] in (0.0, 0.1) for g in groups)
        assert ("transformer.wte.weight" in decayed) == decay_embeddings
        has_position_table = "transformer.wpe.weight" in names.values()
        assert ("transformer.wpe.weight" in decayed) == (decay_embeddings and has_position_table)
        if not model.cfg["tie_embeddings"]:
            assert "lm_head.weight" in decayed  # an untied head is a Linear matrix
        assert not any("ln" in n or "norm" in n or "bias" in n for n in decayed)
        matrices = [p for g in groups if g["kind"] == "matrix" for p in g["params"]]
        assert matrices and all(p.dim() == 2 for p in matrices)


def test_gpt2_small_shape_matches_its_published_parameter_count():
    # GPT-2 124M (12 layers x 768, context 1024, vocabulary 50257, biases, tied head) has 124,439,808
    # parameters (the Hugging Face checkpoint); nanoGPT prints 123.65M without the position table.
    with torch.device("meta"):
        model = GPT({"vocab_size": 50257, "block_size": 1024, "n_layer": 12, "n_head": 12,
                     "n_embd": 768, "bias": True})
    assert model.num_params() == 124_439_808
    assert model.num_params(non_embedding=True) == 124_439_808 - 1024 * 768
    # PaLM appendix B / nanoGPT's estimate_mfu: 6N + 12 L d T, about 0.855 GFLOPs per token.
    assert model.flops_per_token() / 1e9 == pytest.approx(0.855, abs=0.001)


@pytest.mark.parametrize("tie", [True, False])
def test_flops_per_token_matches_counted_matmul_flops(tie: bool):
    """Counted, not restated: torch's FLOP counter over a real forward and backward at full context
    (attention on the math path, whose matmuls it sees) against the estimate."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    model = GPT(small(tie_embeddings=tie))
    x = torch.randint(0, 97, (2, 32))
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        _, loss = model(x, x)
        loss.backward()
    counted = counter.get_total_flops() / x.numel()
    # The estimate also counts the norm weights as if they were matmul weights: well under 1%.
    assert counted == pytest.approx(model.flops_per_token(), rel=0.01)


def test_residual_projections_get_scaled_init():
    torch.manual_seed(0)
    model = GPT(small(n_embd=256, n_layer=8, n_head=4, init_std=0.02))
    proj = model.transformer.h[0].mlp.c_proj.weight.std().item()
    fc = model.transformer.h[0].mlp.c_fc.weight.std().item()
    assert fc == pytest.approx(0.02, rel=0.05)
    assert proj == pytest.approx(0.02 / 4, rel=0.05)  # 1 / sqrt(2 * 8)


def test_rope_tables_stay_float32_after_half_cast():
    model = GPT(small(pos_emb="rope")).to(torch.bfloat16)
    assert model.rotary.cos.dtype == torch.float32
    assert model.transformer.wte.weight.dtype == torch.bfloat16
    assert model(torch.randint(0, 97, (1, 5)))[0].dtype == torch.bfloat16


def test_sequence_longer_than_block_size_is_refused():
    with pytest.raises(ValueError, match="block_size"):
        GPT(small())(torch.zeros(1, 33, dtype=torch.long))


@pytest.mark.parametrize("preset,vocab,expected_millions", [
    ("tiny", 4096, 0.93), ("chekhov_char10m", 201, 10.8), ("classics46m", None, 46.2),
    ("dialog48m", None, 48.4)])
def test_preset_parameter_counts(preset, vocab, expected_millions):
    cfg = OmegaConf.load(CONF_DIR / "model" / f"{preset}.yaml")
    if vocab is not None:
        cfg.vocab_size = vocab
    with torch.device("meta"):
        model = GPT(cfg)
    assert model.num_params() / 1e6 == pytest.approx(expected_millions, abs=0.05)
    assert load_config(compose([f"model={preset}"])).model.name == preset
