from __future__ import annotations

import pytest
import torch

from src.generation.engine import Engine, TokenEvent, generate_no_cache
from src.generation.precision import int8_kernel_available, logit_agreement
from src.generation.sampling import GREEDY, SamplingParams
from src.models.gpt import GPT
from src.tokenizers.char import CharTokenizer

VOCAB = 101
PROMPTS = [[5, 6, 7, 8, 9], [11, 12], list(range(20, 41)), [3]]
OPTIONS = {
    "learned": {},
    "rope": {"pos_emb": "rope"},
    "modern": {"pos_emb": "rope", "norm": "rmsnorm", "qk_norm": True, "mlp": "relu2",
               "tie_embeddings": False, "logit_softcap": 10.0, "bias": True},
}




def tiny_model(seed: int = 0, **options) -> GPT:
    torch.manual_seed(seed)
    cfg = {"vocab_size": VOCAB, "block_size": 48, "n_layer": 2, "n_head": 4, "n_embd": 64, **options}
    return GPT(cfg).eval()


@pytest.mark.parametrize("name", OPTIONS)
def test_greedy_matches_no_cache_reference_single_prompt(name):
    model = tiny_model(**OPTIONS[name])
    engine = Engine(model, precision=None)
    [c] = engine.generate([PROMPTS[0]], GREEDY.with_(max_new_tokens=30), stop_ids=[])
    assert c.tokens == generate_no_cache(model, PROMPTS[0], 30)
    assert c.finish_reason == "max_tokens"


@pytest.mark.parametrize("name", OPTIONS)
def test_greedy_matches_reference_for_a_batch_of_different_lengths(name):
    model = tiny_model(**OPTIONS[name])
    engine = Engine(model, precision=None)
    # 40 new tokens overruns the 48-token context for the longer prompts: each row must stop at its
    # own full context, exactly where the reference does.
    completions = engine.generate(PROMPTS, GREEDY.with_(max_new_tokens=40), stop_ids=[])
    for prompt, c in zip(PROMPTS, completions, strict=True):
        reference = generate_no_cache(model, prompt, 40)
        assert c.tokens == reference
        assert c.finish_reason == ("max_tokens" if len(reference) == 40 else "context")
    assert completions[2].finish_reason == "context" and len(completions[2].tokens) == 48 - 21 + 1


def test_samples_share_one_prefill(monkeypatch):
    model = tiny_model()
    engine = Engine(model, precision=None)
    widths = []
    original = model.forward_cached

    def spy(idx, *args, **kwargs):
        widths.append(tuple(idx.shape))
        return original(idx, *args, **kwargs)

    monkeypatch.setattr(model, "forward_cached", spy)
    completions = engine.generate([PROMPTS[0], PROMPTS[1]], GREEDY.with_(max_new_tokens=6),
                                  num_samples=3, stop_ids=[])
    assert widths[0] == (2, 5)  # one prefill row per prompt, not per sample
    assert all(w == (6, 1) for w in widths[1:])
    assert [c.prompt_index for c in completions] == [0, 0, 0, 1, 1, 1]
    for c in completions:
        assert c.tokens == generate_no_cache(model, PROMPTS[c.prompt_index], 6)


def test_sampling_is_seedable_and_samples_differ():
    engine = Engine(tiny_model(), precision=None)
    params = SamplingParams(temperature=1.5, top_k=40, top_p=0.95, repetition_penalty=1.2,
                            max_new_tokens=12)
    first = engine.generate([PROMPTS[0]], params, num_samples=4, seed=7, stop_ids=[])
    again = engine.generate([PROMPTS[0]], params, num_samples=4, seed=7, stop_ids=[])
    other = engine.generate([PROMPTS[0]], params, num_samples=4, seed=8, stop_ids=[])
    tokens = [c.tokens for c in first]
    assert tokens == [c.tokens for c in again]
    assert tokens != [c.tokens for c in other]
    assert len({tuple(t) for t in tokens}) > 1


def test_per_row_stop_tokens():
    model = tiny_model()
    engine = Engine(model, precision=None)
    refs = [generate_no_cache(model, p, 20) for p in PROMPTS[:2]]
    stop = refs[0][3]  # row 0 stops at its 4th token; row 1 only if it makes that token too
    completions = engine.generate(PROMPTS[:2], GREEDY.with_(max_new_tokens=20), stop_ids=[stop])
    for ref, c in zip(refs, completions, strict=True):
        cut = ref.index(stop) if stop in ref else len(ref)
        assert c.tokens == ref[:cut]
        assert c.finish_reason == ("stop_token" if stop in ref else "max_tokens")
    assert completions[0].finish_reason == "stop_token"
    assert len(completions[0].tokens) == refs[0].index(stop) <= 3


def test_default_stop_ids_come_from_the_tokenizer_and_stop_strings_cut_text():
    tok = CharTokenizer("abcdefghijklmnopqrstuvwxyz .\n")
    torch.manual_seed(0)
    model = GPT({"vocab_size": tok.vocab_size, "block_size": 64, "n_layer": 1, "n_head": 2, "n_embd": 32})
    engine = Engine(model, tok, precision=None)
    assert set(engine.stop_ids) == {tok.eot_id, tok.special_tokens["<|end|>"]}
    prompt = tok.encode("hello")
    [free] = engine.generate([prompt], GREEDY.with_(max_new_tokens=30), stop_ids=[])
    text = tok.decode(free.tokens)
    needle = text[5:7]
    [cut] = engine.generate([prompt], GREEDY.with_(max_new_tokens=30), stop_ids=[], stop_strings=[needle])
    assert cut.finish_reason == "stop_string"
    assert cut.text == text[:text.index(needle)]
    with pytest.raises(ValueError, match="tokenizer"):
        Engine(model, precision=None).generate([prompt], GREEDY, stop_strings=["x"])


def test_streaming_yields_tokens_as_generate_returns_them():
    engine = Engine(tiny_model(), precision=None)
    params = SamplingParams(temperature=1.0, max_new_tokens=15)
    streamed = list(engine.stream(PROMPTS[0], params, seed=3, stop_ids=[]))
    events: list[TokenEvent] = []
    [c] = engine.generate([PROMPTS[0]], params, seed=3, stop_ids=[], on_token=events.append)
    assert streamed == c.tokens == [e.token for e in events]
    assert events[-1].finish_reason == "max_tokens"
    assert all(e.finish_reason is None for e in events[:-1])


def test_long_prompt_is_cropped_and_reported():
    model = tiny_model()
    engine = Engine(model, precision=None)
    prompt = [i % VOCAB for i in range(60)]
    [c] = engine.generate([prompt], GREEDY.with_(max_new_tokens=5), stop_ids=[])
    assert c.cropped_prompt_tokens == 12 and c.prompt_tokens == 48
    assert c.tokens == generate_no_cache(model, prompt[-48:], 5)
    with pytest.raises(ValueError, match="empty"):
        engine.generate([[]], GREEDY)


@pytest.fixture(scope="module")
def trained() -> tuple[GPT, torch.Tensor]:
    """A tiny model fitted to a repeating pattern, so its predictions are confident (random
    weights give near-ties that any rounding flips)."""
    torch.manual_seed(0)
    model = GPT({"vocab_size": VOCAB, "block_size": 48, "n_layer": 2, "n_head": 4, "n_embd": 64})
    pattern = torch.tensor([3, 17, 42, 8, 99, 23, 56, 71, 12, 5, 64, 30] * 8)
    data = torch.stack([pattern[i:i + 41] for i in range(12)])
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(80):
        _, loss = model(data[:, :-1], data[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval(), data[:, :-1]


@pytest.mark.skipif(not int8_kernel_available(), reason="no int8 weight-only kernel in this torch")
def test_int8_decoding_stays_close_to_fp32(trained):
    model, probe = trained
    fp32 = Engine(model, precision="fp32")
    int8 = Engine(model, precision="int8")
    agreement = logit_agreement(fp32.model, int8.model, probe)
    assert agreement["top1_agreement"] >= 0.99
    assert agreement["relative_logit_error"] < 0.05
    prompt = probe[0, :6].tolist()
    ref = fp32.generate([prompt], GREEDY.with_(max_new_tokens=30), stop_ids=[])[0].tokens
    assert int8.generate([prompt], GREEDY.with_(max_new_tokens=30), stop_ids=[])[0].tokens == ref
    assert model.lm_head.weight.dtype == torch.float32  # the original model is untouched


def test_bf16_decoding_runs_and_agrees(trained):
    model, probe = trained
    bf16 = Engine(model, precision="bf16")
    assert bf16.model.transformer.wte.weight.dtype == torch.bfloat16
    assert logit_agreement(model, bf16.model, probe)["top1_agreement"] >= 0.99
    prompt = probe[0, :6].tolist()
    assert (bf16.generate([prompt], GREEDY.with_(max_new_tokens=20), stop_ids=[])[0].tokens
            == generate_no_cache(model, prompt, 20))


@pytest.mark.gpu
@pytest.mark.parametrize("compile_model", [False, True])
def test_cuda_graph_decoding_matches_reference(compile_model):
    model = tiny_model(**OPTIONS["modern"]).cuda()
    engine = Engine(model, precision="fp32", compile_model=compile_model)
    assert engine.use_cuda_graphs
    completions = engine.generate(PROMPTS, GREEDY.with_(max_new_tokens=10), stop_ids=[])
    for prompt, c in zip(PROMPTS, completions, strict=True):
        assert c.tokens == generate_no_cache(model, prompt, 10)
    again = engine.generate(PROMPTS[:1], GREEDY.with_(max_new_tokens=10), stop_ids=[])
    assert again[0].tokens == completions[0].tokens


@pytest.mark.parametrize("name", ["learned", "modern"])
def test_static_cache_step_matches_reference(name):
    # The CUDA-graph path's computation (fixed-size cache, masked attention over every slot), run
    # eagerly on CPU; prompts + new tokens stay inside block_size so no row is cut short.
    model = tiny_model(**OPTIONS[name])
    engine = Engine(model, precision=None, static_cache=True)
    for _ in range(2):  # the second call reuses the static cache left dirty by the first
        completions = engine.generate(PROMPTS, GREEDY.with_(max_new_tokens=20), stop_ids=[])
        for prompt, c in zip(PROMPTS, completions, strict=True):
            assert c.tokens == generate_no_cache(model, prompt, 20)


@pytest.mark.slow
def test_compiled_static_step_matches_reference():
    model = tiny_model(**OPTIONS["modern"])
    engine = Engine(model, precision=None, static_cache=True, compile_model=True)
    completions = engine.generate(PROMPTS, GREEDY.with_(max_new_tokens=10), stop_ids=[])
    for prompt, c in zip(PROMPTS, completions, strict=True):
        assert c.tokens == generate_no_cache(model, prompt, 10)


def test_a_training_model_is_used_in_place_and_its_mode_restored():
    model = tiny_model(dropout=0.5).train()
    engine = Engine(model, precision=None)
    [c] = engine.generate([PROMPTS[0]], GREEDY.with_(max_new_tokens=8), stop_ids=[])
    assert model.training  # dropout is back on for training
    assert c.tokens == generate_no_cache(model.eval(), PROMPTS[0], 8)  # but was off while generating


def test_repetition_penalty_leaves_special_tokens_out(monkeypatch):
    """The template repeats <|end|> and the role tags every turn; counting them as seen would make
    the model less likely to close its reply."""
    import src.generation.engine as engine_module

    tok = CharTokenizer("abcdefghijklmnopqrstuvwxyz .\n")
    torch.manual_seed(0)
    model = GPT({"vocab_size": tok.vocab_size, "block_size": 64, "n_layer": 1, "n_head": 2, "n_embd": 32})
    engine = Engine(model, tok, precision=None)
    seen_rows = []
    real_sample = engine_module.sample

    def recording_sample(logits, params, seen=None, generator=None):
        seen_rows.append(seen[0].clone())
        return real_sample(logits, params, seen, generator)

    monkeypatch.setattr(engine_module, "sample", recording_sample)
    prompt = tok.encode("<|user|>\nhi<|end|>\n<|assistant|>\n")
    engine.generate([prompt], GREEDY.with_(max_new_tokens=6, repetition_penalty=1.5), stop_ids=[])
    specials = list(tok.special_tokens.values())
    assert len(seen_rows) == 6
    for seen in seen_rows:
        assert not seen[specials].any()
        assert seen[tok.token_to_id("h")] and seen[tok.token_to_id("\n")]
