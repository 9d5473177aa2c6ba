"""compare_best_of_n on tiny models: a Markov writer, a tiny untrained exported reranker, a tiny chat
model. Only what holds by construction is asserted about scores: the reranked reply is the best of
its pool, so it never scores below the random pick from that same pool."""

from __future__ import annotations

from pathlib import Path

import pytest

from src.errors import InputError
from src.eval.generation_metrics import KEYS
from src.eval.reranker_eval import compare_best_of_n, prompt_lines
from src.generation.loading import load_for_generation
from src.generation.markov import MarkovModel
from src.generation.reranker import export_own
from src.generation.sampling import SamplingParams
from tests.models.test_cross_encoder import own_model
from tests.test_chat import write_checkpoint
from tests.test_chat_rerank import CORPUS

PROMPTS = [
    {"id": "en-1", "language": "en", "messages": [{"role": "user", "content": "where is the cat?"}]},
    {"id": "en-2", "language": "en", "messages": [
        {"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there"},
        {"role": "assistant", "content": "i am fine, thanks."}, {"role": "user", "content": "how is the dog?"}]},
    {"id": "en-3", "language": "en", "messages": [{"role": "user", "content": "are you there?"}]},
]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("bon")
    MarkovModel.build(CORPUS, order=3).save(tmp / "markov")
    model = own_model()
    export_own(model, model.tokenizer, tmp / "rr")
    return {"markov": tmp / "markov", "rr": tmp / "rr", "ckpt": write_checkpoint(tmp, chat=True)}


def check_arms(result: dict, prompts: int) -> None:
    for arm in ("reranked", "unranked", "plain"):
        figures = result[arm]
        assert set(KEYS) <= set(figures) and figures["n"] == prompts, arm
        assert 0.0 <= figures["mean_reranker_score"] <= 1.0
    assert result["reranked"]["mean_reranker_score"] >= result["unranked"]["mean_reranker_score"]
    assert len(result["samples"]) == result["prompts"] == prompts
    for s in result["samples"]:
        assert s["reranked"]["score"] >= s["unranked"]["score"]
        assert 1 <= s["candidates"] <= 24


def test_markov_only_without_a_chat_model(files: dict[str, Path]) -> None:
    result = compare_best_of_n(None, files["rr"], PROMPTS, n=24, candidates="both", markov_dir=files["markov"],
                               seed=0)
    check_arms(result, 3)
    assert result["candidates"] == "markov" and "needs a chat model" in result["notes"][0]
    assert result["plain_source"] == "markov_random_pick" and result["length_unit"] == "words"
    assert result["plain"] == result["unranked"]  # with no chat model, plain is the writer alone
    assert result["reranked"]["picked_from"] == {"markov": 1.0}
    assert result["reranked"]["end_of_turn_rate"] == 1.0  # Markov lines are whole lines
    again = compare_best_of_n(None, files["rr"], PROMPTS, n=24, candidates="markov", markov_dir=files["markov"],
                              seed=0)
    assert again["samples"] == result["samples"]  # seeded: the same replies every run
    strict = compare_best_of_n(None, files["rr"], PROMPTS, n=24, candidates="markov", markov_dir=files["markov"],
                               seed=0, thresholds={"canned_max_words": 0})  # a reply with words is never canned
    assert result["unranked"]["canned_rate"] > 0.0  # the defaults flag some of these replies
    assert strict["unranked"]["canned_rate"] == 0.0 and strict["samples"] == result["samples"]


def test_lm_candidates_and_a_plain_chat_sample(files: dict[str, Path]) -> None:
    loaded = load_for_generation(files["ckpt"])
    params = SamplingParams(temperature=1.0, max_new_tokens=8)
    result = compare_best_of_n(loaded, files["rr"], PROMPTS, n=6, candidates="lm", markov_dir=None, seed=1,
                               params=params, lm_batch=4)
    check_arms(result, 3)
    assert result["plain_source"] == "lm" and result["length_unit"] == "tokens"
    assert result["reranked"]["picked_from"] == {"lm": 1.0}
    for arm in ("reranked", "plain"):
        assert 0 < result[arm]["mean_length_tokens"] <= 8
    both = compare_best_of_n(loaded, files["rr"], PROMPTS[:1], n=8, candidates="both", markov_dir=files["markov"],
                             seed=1, params=params)
    assert both["candidates"] == "both" and both["prompts"] == 1
    assert set(both["reranked"]["picked_from"]) <= {"markov", "lm"}


def test_bad_prompts_and_missing_models_are_one_line(files: dict[str, Path]) -> None:
    with pytest.raises(InputError, match="prompt x: message 1 is 'assistant', expected 'user'"):
        prompt_lines({"id": "x", "messages": [{"role": "assistant", "content": "hi"}]})
    with pytest.raises(InputError, match="prompt y: no user message"):
        prompt_lines({"id": "y", "messages": [{"role": "system", "content": "s"}]})
    assert prompt_lines(PROMPTS[1]) == ("be brief", ["hello there", "i am fine, thanks.", "how is the dog?"])
    with pytest.raises(InputError, match="not a reranker export"):
        compare_best_of_n(None, files["markov"], PROMPTS, n=4, candidates="markov", markov_dir=files["markov"],
                          seed=0)
    with pytest.raises(InputError, match="not a Markov model"):
        compare_best_of_n(None, files["rr"], PROMPTS, n=4, candidates="markov", markov_dir=files["rr"], seed=0)
