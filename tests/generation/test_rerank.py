"""Best-of-N replies: candidates from the Markov writer and the LM, scored, the best kept, multi-turn.

The scorer here is a real (tiny) one with the reranker's interface: the share of a candidate's words
that occur in the newest context line. It is not trained, but it ranks by content, so the tests can
say which candidate must win.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pytest
import torch

from src.generation.engine import Engine
from src.generation.markov import MarkovModel
from src.generation.rerank import Conversation, LMWriter, MarkovWriter, Reranking
from src.generation.sampling import SamplingParams
from src.tokenizers.char import CharTokenizer

WORD = re.compile(r"\w+")
CORPUS = ["Where is the cat?", "The cat sleeps on the warm mat.", "The dog runs in the park.",
          "I like the park in the morning.", "The cat is on the mat.", "Dogs like long walks.",
          "Is the dog in the park?", "Yes, the dog is in the park."]


class OverlapScorer:
    """Share of the candidate's words found in the newest context line (ties: shorter first)."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], list[str]]] = []

    def score(self, context: Sequence[str], candidates: Sequence[str], *,
              batch_size: int | None = None) -> np.ndarray:
        self.calls.append((list(context), list(candidates)))
        last = set(WORD.findall(context[-1].lower())) if context else set()
        out = []
        for c in candidates:
            words = WORD.findall(c.lower())
            out.append(sum(w in last for w in words) / max(len(words), 1) - 1e-3 * len(c))
        return np.asarray(out, dtype=np.float32)


@pytest.fixture(scope="module")
def markov() -> MarkovModel:
    return MarkovModel.build(CORPUS, order=3, min_choices=2)


def test_best_of_markov_candidates_is_the_top_scored(markov: MarkovModel) -> None:
    scorer = OverlapScorer()
    r = Reranking(scorer, markov=MarkovWriter(markov), source="markov", n=200)
    reply = r.reply(["Tell me about the dog in the park."], seed=0)
    (context, scored), = scorer.calls
    assert context == ["Tell me about the dog in the park."]
    assert len(scored) == len(reply.ranked) == reply.made["markov"] > 10
    expected = scorer.score(context, scored)
    assert reply.best is not None and reply.best.score == pytest.approx(float(expected.max()))
    assert [s.score for s in reply.ranked] == sorted((s.score for s in reply.ranked), reverse=True)
    assert {"dog", "park"} & set(WORD.findall(reply.best.text.lower()))
    assert set(reply.timings) == {"markov", "score", "total"}


def test_candidates_echoing_the_conversation_are_left_out(markov: MarkovModel) -> None:
    r = Reranking(OverlapScorer(), markov=MarkovWriter(markov, seeded_share=1.0), n=300)
    reply = r.reply(["The cat is on the mat."], seed=1)
    assert all(s.text != "The cat is on the mat." for s in reply.ranked)
    assert reply.dropped.get("repeats_the_conversation", 0) >= 1


def test_context_is_cut_to_the_newest_lines(markov: MarkovModel) -> None:
    scorer = OverlapScorer()
    Reranking(scorer, markov=MarkovWriter(markov), n=20, context_lines=2).reply(["a", "b", "c the cat"], seed=0)
    assert scorer.calls[0][0] == ["b", "c the cat"]


def test_multi_turn_replies_join_the_context(markov: MarkovModel) -> None:
    scorer = OverlapScorer()
    conv = Conversation(Reranking(scorer, markov=MarkovWriter(markov), n=100), seed=3)
    first = conv.say("Where is the cat?").best
    second = conv.say("And the dog?").best
    assert first is not None and second is not None
    assert conv.lines == ["Where is the cat?", first.text, "And the dog?", second.text]
    assert scorer.calls[1][0] == ["Where is the cat?", first.text, "And the dog?"]
    again = Conversation(Reranking(OverlapScorer(), markov=MarkovWriter(markov), n=100), seed=3)
    again.say("Where is the cat?")
    again.say("And the dog?")
    assert again.lines == conv.lines  # seeded: the same exchange again


def tiny_lm() -> tuple[Engine, CharTokenizer]:
    from src.models.gpt import GPT

    tok = CharTokenizer("abcdefghijklmnopqrstuvwxyz .,?!\n")
    torch.manual_seed(0)
    model = GPT({"vocab_size": tok.vocab_size, "block_size": 96, "n_layer": 1, "n_head": 2, "n_embd": 32})
    return Engine(model, tok, precision="fp32", device="cpu"), tok


def test_lm_candidates_are_sampled_in_batches_and_scored() -> None:
    engine, _ = tiny_lm()
    calls = []
    generate = engine.generate

    def counting(prompts, params, **kw):  # noqa: ANN001, ANN003, ANN202
        calls.append(kw["num_samples"])
        return generate(prompts, params, **kw)

    engine.generate = counting  # type: ignore[method-assign]
    lm = LMWriter(engine, SamplingParams(temperature=1.0, max_new_tokens=8), chat=True, batch=16)
    r = Reranking(OverlapScorer(), lm=lm, source="lm", n=40)
    reply = r.reply(["hi there", "hello", "how are you?"], seed=0)
    assert calls == [16, 16, 8]
    assert 0 < reply.made["lm"] <= 40 and reply.best is not None
    assert sum(reply.made.values()) + sum(reply.dropped.values()) == 40
    assert all("<|" not in s.text for s in reply.ranked)


def test_lm_chat_prompt_ends_with_the_users_line() -> None:
    engine, tok = tiny_lm()
    lm = LMWriter(engine, SamplingParams(max_new_tokens=8), chat=True)
    ids, _, _, _ = lm.prompt(["one", "two", "three"])
    text = tok.decode(ids)
    assert text.index("<|user|>\nthree") > text.index("<|assistant|>\ntwo") > text.index("<|user|>\none")
    assert text.endswith("<|assistant|>\n")
    base = LMWriter(engine, SamplingParams(max_new_tokens=8), chat=False)
    ids, _, _, stops = base.prompt(["one", "two"])
    assert tok.decode(ids) == "one\ntwo\n" and stops == ("\n",)


def test_both_sources_split_n(markov: MarkovModel) -> None:
    engine, _ = tiny_lm()
    lm = LMWriter(engine, SamplingParams(temperature=1.0, max_new_tokens=6), batch=64)
    reply = Reranking(OverlapScorer(), markov=MarkovWriter(markov), lm=lm, source="both", n=60).reply(
        ["the cat?"], seed=0)
    assert set(reply.made) == {"markov", "lm"} and {s.source for s in reply.ranked} <= {"markov", "lm"}
    assert reply.made["markov"] <= 30 and reply.made["lm"] + reply.dropped.get("empty", 0) <= 30


def test_settings_are_checked(markov: MarkovModel) -> None:
    with pytest.raises(ValueError, match="needs a language model"):
        Reranking(OverlapScorer(), markov=MarkovWriter(markov), source="both")
    with pytest.raises(ValueError, match="needs a Markov model"):
        Reranking(OverlapScorer(), source="markov")
    with pytest.raises(ValueError, match="must be one of"):
        Reranking(OverlapScorer(), markov=MarkovWriter(markov), source="all")


def test_a_scorer_giving_the_wrong_number_of_scores_is_refused(markov: MarkovModel) -> None:
    class Broken(OverlapScorer):
        def score(self, context, candidates, *, batch_size=None):  # noqa: ANN001, ANN201
            return super().score(context, candidates)[:-1]

    with pytest.raises(ValueError, match="scores for"):
        Reranking(Broken(), markov=MarkovWriter(markov), n=30).reply(["the cat"], seed=0)


class ListWriter:
    def __init__(self, lines: list[str]) -> None:
        self.lines = lines

    def propose(self, context: Sequence[str], n: int, seed: int | None) -> list[tuple[str, str | None]]:
        return [(line, None) for line in self.lines[:n]]


def test_candidates_in_another_script_are_left_out_and_counted() -> None:
    # the English line would win on length alone: the filter, not the scorer, must drop it
    lines = ["No.", "Нет, не знаю.", "Да, конечно, приходи завтра.", "123"]
    reply = Reranking(OverlapScorer(), markov=ListWriter(lines), n=4).reply(["Ты придёшь завтра?"])
    assert {s.text for s in reply.ranked} == {"Нет, не знаю.", "Да, конечно, приходи завтра.", "123"}
    assert reply.dropped == {"other_script": 1} and reply.notes == []
    assert reply.best is not None and reply.best.text == "Да, конечно, приходи завтра."


def test_script_filter_keeps_all_when_none_match_and_can_be_off() -> None:
    lines = ["No.", "Yes, tomorrow."]
    reply = Reranking(OverlapScorer(), markov=ListWriter(lines), n=2).reply(["Ты придёшь завтра?"])
    assert len(reply.ranked) == 2 and reply.dropped == {} and "all scored" in reply.notes[0]
    mixed = ["No.", "Нет."]
    off = Reranking(OverlapScorer(), markov=ListWriter(mixed), n=2, match_script=False).reply(["Да?"])
    assert len(off.ranked) == 2 and off.dropped == {}
