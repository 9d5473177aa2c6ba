"""measure_latency on a tiny chat model (keys, positive and ordered numbers, reranked turns), and
where the first phrase ends on a scripted stream."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from src.eval.latency import measure_latency, timed_reply
from src.eval.reranker_eval import build_reranking
from src.generation.engine import TokenEvent
from src.generation.loading import load_for_generation
from src.generation.markov import MarkovModel
from src.generation.reranker import export_own
from src.generation.sampling import SamplingParams
from tests.eval.test_best_of_n import PROMPTS
from tests.models.test_cross_encoder import own_model
from tests.test_chat import write_checkpoint
from tests.test_chat_rerank import CORPUS


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("latency")
    MarkovModel.build(CORPUS, order=3).save(tmp / "markov")
    model = own_model()
    export_own(model, model.tokenizer, tmp / "rr")
    return {"markov": tmp / "markov", "rr": tmp / "rr", "ckpt": write_checkpoint(tmp, chat=True)}


def test_plain_and_reranked_figures(files: dict[str, Path]) -> None:
    loaded = load_for_generation(files["ckpt"])
    reranking = build_reranking(files["rr"], None, candidates="markov", n=16, markov_dir=files["markov"])
    m = measure_latency(loaded, PROMPTS, max_new_tokens=8, repeats=2, reranking=reranking, precision="fp32")
    assert m["n"] == 3 and m["repeats"] == 2 and m["dropped"] == {} and m["precision"] == "fp32"
    assert 0 < m["ttft_ms"] <= m["first_phrase_ms"]
    assert 1 <= m["first_phrase_tokens"] <= 8
    assert m["tokens_per_s"] > 0
    assert m["reranked_turn_ms"] > 0 and m["reranked_n"] == 16 and m["reranked_candidates"] == "markov"
    assert set(m["reranked_phases_ms"]) == {"markov", "score"}
    assert all(0 < v <= m["reranked_turn_ms"] for v in m["reranked_phases_ms"].values())


def test_without_reranking_and_with_lm_candidates(files: dict[str, Path]) -> None:
    loaded = load_for_generation(files["ckpt"])
    m = measure_latency(loaded, PROMPTS[:1], max_new_tokens=4, repeats=1, precision="fp32")
    assert "reranked_turn_ms" not in m and m["n"] == 1
    reranking = build_reranking(files["rr"], loaded, candidates="lm", n=4, markov_dir=None,
                                params=SamplingParams(max_new_tokens=4))
    m = measure_latency(loaded, PROMPTS[:1], max_new_tokens=4, repeats=1, reranking=reranking, precision="fp32")
    assert set(m["reranked_phases_ms"]) == {"lm", "score"}


def test_prompts_that_do_not_fit_are_counted(files: dict[str, Path]) -> None:
    loaded = load_for_generation(files["ckpt"])  # a 64-token context
    too_long = {"id": "long", "messages": [{"role": "user", "content": "where is the cat? " * 20}]}
    m = measure_latency(loaded, [too_long, PROMPTS[0]], max_new_tokens=4, repeats=1, precision="fp32")
    assert m["n"] == 1 and m["dropped"] == {"prompt_too_long_for_the_context": 1}
    with pytest.raises(ValueError, match="none of the 1 prompts fits"):
        measure_latency(loaded, [too_long], max_new_tokens=4, repeats=1)
    with pytest.raises(ValueError, match="repeats must be >= 1"):
        measure_latency(loaded, PROMPTS, repeats=0)


class ScriptedEngine:
    """Streams the characters of `text` one token each (ids = code points); records how far it got."""

    def __init__(self, text: str, finish_last: str = "max_tokens") -> None:
        self.text, self.finish_last, self.made = text, finish_last, 0
        self.device = torch.device("cpu")
        self.tokenizer = SimpleNamespace(decode=lambda ids: "".join(map(chr, ids)))

    def iter_events(self, prompts, params, **kwargs) -> Iterator[TokenEvent]:
        for i, ch in enumerate(self.text):
            self.made += 1
            yield TokenEvent(0, ord(ch), self.finish_last if i == len(self.text) - 1 else None)


@pytest.mark.parametrize(("text", "phrase_tokens"), [
    ("Hi there! How are you?", 9),  # the first sentence end
    ("Wait… what", 5),  # an ellipsis character ends a phrase too
    ("no end at all", 13),  # no sentence end: the whole reply is the first utterance
])
def test_first_phrase_ends_at_the_first_sentence_end(text: str, phrase_tokens: int) -> None:
    engine = ScriptedEngine(text)
    first, phrase, n = timed_reply(engine, [1], SamplingParams(), [], (), seed=0)
    assert n == phrase_tokens and engine.made == phrase_tokens  # generation stops at the phrase
    assert 0 < first <= phrase
