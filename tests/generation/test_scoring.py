from __future__ import annotations

import pytest
import torch

from src.generation import chat_template
from src.generation.scoring import ContextOverflowError, completion_logprobs, encode_pair, fit_pair
from src.models.gpt import GPT
from src.tokenizers.char import CharTokenizer

VOCAB = 53
BLOCK = 32
OPTIONS = {
    "learned": {},
    "modern": {"pos_emb": "rope", "norm": "rmsnorm", "qk_norm": True, "mlp": "relu2",
               "tie_embeddings": False, "logit_softcap": 10.0, "bias": True},
}
PROMPTS = [[1, 2, 3], [4], list(range(5, 25)), [7, 8, 9, 10, 11, 12], [13, 14]]
COMPLETIONS = [[30, 31, 32, 33], [40], [41, 42, 43], [44, 45, 46, 47, 48, 49, 50, 51, 1, 2], [3, 3]]


def tiny_model(seed: int = 0, **options) -> GPT:
    torch.manual_seed(seed)
    return GPT({"vocab_size": VOCAB, "block_size": BLOCK, "n_layer": 2, "n_head": 2, "n_embd": 32,
                **options}).eval()


def reference_logprob(model: GPT, prompt: list[int], completion: list[int]) -> float:
    """One pair alone: the whole sequence through the plain forward, log-softmax at every step."""
    seq = torch.tensor([prompt + completion])
    with torch.no_grad():
        logits = model(seq[:, :-1])[0][0].double()
    logp = torch.log_softmax(logits, dim=-1)
    return sum(float(logp[len(prompt) - 1 + j, t]) for j, t in enumerate(completion))


@pytest.mark.parametrize("name", OPTIONS)
@pytest.mark.parametrize("batch_size", [1, 3, None])
def test_batched_scores_equal_one_pair_at_a_time(name, batch_size):
    model = tiny_model(**OPTIONS[name])
    with torch.no_grad():
        logps, counts = completion_logprobs(model, PROMPTS, COMPLETIONS, batch_size=batch_size)
    assert logps.shape == counts.shape == (len(PROMPTS),)
    assert logps.dtype == torch.float32
    assert counts.tolist() == [len(c) for c in COMPLETIONS]
    expected = [reference_logprob(model, p, c) for p, c in zip(PROMPTS, COMPLETIONS, strict=True)]
    assert logps.tolist() == pytest.approx(expected, abs=1e-4)
    assert all(x < 0 for x in logps.tolist())


def test_gradients_flow_unless_the_caller_disables_them():
    model = tiny_model()
    logps, _ = completion_logprobs(model, PROMPTS, COMPLETIONS, batch_size=2)
    assert logps.requires_grad
    logps.sum().backward()
    assert model.lm_head.weight.grad is not None and model.lm_head.weight.grad.abs().sum() > 0
    with torch.no_grad():
        detached, _ = completion_logprobs(model, PROMPTS, COMPLETIONS)
    assert not detached.requires_grad


def test_a_row_does_not_depend_on_its_batch_mates():
    # A row's score must not depend on another row's tokens (padding or batch-mates).
    model = tiny_model()
    with torch.no_grad():
        a, _ = completion_logprobs(model, [[1, 2]], [[3, 4]])
        b, _ = completion_logprobs(model, [[1, 2], list(range(5, 30))], [[3, 4], [1]], batch_size=2)
    assert float(a[0]) == pytest.approx(float(b[0]), abs=1e-5)


def test_empty_completion_scores_zero_and_empty_input():
    model = tiny_model()
    logps, counts = completion_logprobs(model, [[1, 2], [3]], [[], [4, 5]])
    assert logps[0].item() == 0.0 and counts.tolist() == [0, 2]
    assert logps[1].item() == pytest.approx(reference_logprob(model, [3], [4, 5]), abs=1e-4)
    empty, n = completion_logprobs(model, [], [])
    assert empty.shape == n.shape == (0,)


def test_too_long_pairs_crop_the_prompt_from_the_left_or_raise():
    model = tiny_model()
    prompt, completion = list(range(1, 31)), [40, 41, 42, 43, 44]  # 30 + 5 - 1 = 34 > 32
    logps, _ = completion_logprobs(model, [prompt], [completion])
    kept = prompt[-(BLOCK + 1 - len(completion)):]
    assert len(kept) + len(completion) - 1 == BLOCK
    assert logps[0].item() == pytest.approx(reference_logprob(model, kept, completion), abs=1e-4)
    with pytest.raises(ContextOverflowError, match="pair 0: prompt \\+ completion"):
        completion_logprobs(model, [prompt], [completion], overflow="error")
    with pytest.raises(ContextOverflowError, match="completion alone"):
        completion_logprobs(model, [[1]], [list(range(1, 34))])
    # Exactly at the limit: no crop.
    assert fit_pair([1] * 28, [2] * 5, BLOCK) == [1] * 28


def test_bad_arguments_are_refused():
    model = tiny_model()
    with pytest.raises(ValueError, match="2 prompts but 1 completions"):
        completion_logprobs(model, [[1], [2]], [[3]])
    with pytest.raises(ValueError, match="pair 1: empty prompt"):
        completion_logprobs(model, [[1], []], [[3], [4]])
    with pytest.raises(ValueError, match="batch_size"):
        completion_logprobs(model, [[1]], [[3]], batch_size=0)


TOK = CharTokenizer("abcdefghijklmnopqrstuvwxyz ?!.\n")
MESSAGES = [{"role": "user", "content": "hi there?"}, {"role": "assistant", "content": "hello."},
            {"role": "user", "content": "how are you"}]


def test_encode_pair_matches_the_sft_training_document():
    prompt_ids, completion_ids = encode_pair(TOK, MESSAGES, "fine!", ended=True)
    whole, mask = chat_template.encode_for_training(TOK, [*MESSAGES, {"role": "assistant", "content": "fine!"}])
    assert prompt_ids == chat_template.encode(TOK, MESSAGES, add_generation_prompt=True)
    # The template adds a newline after the last <|end|>; the pair is everything before it.
    assert prompt_ids + completion_ids == whole[:-1]
    assert completion_ids == [i for i, m in zip(whole, mask, strict=True) if m][-len(completion_ids):]
    assert completion_ids[-1] == TOK.special_tokens["<|end|>"]


def test_encode_pair_without_end_and_refusing_special_tokens():
    _, cut = encode_pair(TOK, MESSAGES, "fine and", ended=False)
    assert cut == TOK.encode("fine and")
    _, nothing = encode_pair(TOK, MESSAGES, "", ended=False)
    assert nothing == []
    with pytest.raises(ValueError, match="special token"):
        encode_pair(TOK, MESSAGES, "ok<|user|>\nhi", ended=True)
