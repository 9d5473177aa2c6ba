"""Reranked best-of-N replies through the server (the scorer is a stand-in: longest line wins)."""

from __future__ import annotations

import time

import httpx
import numpy as np
import openai
import pytest
from openai import OpenAI

from src.serve.rerank import ScheduledWriter
from tests.serve.conftest import LIMITS, slow_and_endless, start_server, write_checkpoint

HI = [{"role": "user", "content": "hello, how are you?"}]


class LongestWins:
    def __init__(self) -> None:
        self.calls: list[tuple[list[str], list[str]]] = []

    def score(self, context, candidates, *, batch_size=None):
        self.calls.append((list(context), list(candidates)))
        return np.array([float(len(c)) for c in candidates])


@pytest.fixture(scope="module")
def rerank_server(tmp_path_factory):
    scorer = LongestWins()
    model = write_checkpoint(tmp_path_factory.mktemp("rerank_model"), chat=True)
    server, stop = start_server(model, LIMITS, name="tiny", reranker=scorer)
    yield server, scorer
    stop()


def test_models_list_the_reranked_id(rerank_server):
    server, _ = rerank_server
    c = OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
    assert [m.id for m in c.models.list()] == ["tiny", "tiny+rerank"]


@pytest.mark.parametrize("select", ["model id", "request field"])
def test_the_best_candidates_come_back_best_first(rerank_server, select):
    server, scorer = rerank_server
    c = OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
    options = {"model": "tiny+rerank"} if select == "model id" else {"model": "tiny", "extra_body": {"rerank": True}}
    r = c.chat.completions.create(messages=HI, max_tokens=12, n=2, temperature=1.0, seed=3, **options)
    context, candidates = scorer.calls[-1]
    assert context == ["hello, how are you?"] and 1 <= len(candidates) <= 16
    ranked = sorted(candidates, key=len, reverse=True)
    assert [ch.message.content for ch in r.choices] == ranked[:2]
    extra = r.model_extra["rerank"]
    assert [x["score"] for x in extra["candidates"]] == sorted((x["score"] for x in extra["candidates"]), reverse=True)
    assert sum(extra["made"].values()) + sum(extra["dropped"].values()) == 16
    assert r.usage.completion_tokens > 0


def test_rerank_refusals(rerank_server, chat_server):
    server, _ = rerank_server
    body = {"model": "tiny+rerank", "messages": HI}
    for extra, param in (({"stream": True}, "stream"), ({"n": 17}, "n")):
        r = httpx.post(f"{server.base_url}/chat/completions", json={**body, **extra})
        assert (r.status_code, r.json()["error"]["param"]) == (400, param), r.text
    plain = OpenAI(base_url=chat_server.base_url, api_key="x", max_retries=0)
    with pytest.raises(openai.BadRequestError, match="no reranker"):
        plain.chat.completions.create(model="tiny-chat", messages=HI, extra_body={"rerank": True})
    with pytest.raises(openai.NotFoundError):
        plain.chat.completions.create(model="tiny-chat+rerank", messages=HI)


def test_a_base_model_cannot_rerank(tmp_path):
    with pytest.raises(ValueError, match="needs a chat model"):
        start_server(write_checkpoint(tmp_path, chat=False), reranker=LongestWins())


def test_writer_collects_every_sample(rerank_server):
    server, _ = rerank_server
    prompts = server.served.prompts
    from src.serve.schemas import ChatCompletionRequest

    prepared = prompts.chat_request(ChatCompletionRequest(model="tiny", messages=HI, max_tokens=5,
                                                          temperature=1.0))
    writer = ScheduledWriter(server.served.scheduler, prepared)
    lines = writer.propose([], 5, seed=1)
    assert len(lines) == 5 and all(word is None for _, word in lines)
    assert 0 < writer.tokens <= 25


def test_a_client_leaving_a_reranked_request_frees_its_rows(rerank_server):
    server, _ = rerank_server
    scheduler = server.served.scheduler
    with slow_and_endless(scheduler, 0.02):  # 16 candidates x 64 steps > 1.2 s
        steps_before = scheduler.steps
        body = {"model": "tiny+rerank", "messages": HI, "max_tokens": 64, "temperature": 1.0}
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{server.base_url}/chat/completions", json=body, timeout=0.3)
        deadline = time.monotonic() + 5
        while scheduler.load()["active_rows"] and time.monotonic() < deadline:
            time.sleep(0.02)
        assert scheduler.load()["active_rows"] == 0
        assert scheduler.steps - steps_before < 50
    r = OpenAI(base_url=server.base_url, api_key="x", max_retries=0).chat.completions.create(
        model="tiny+rerank", messages=HI, max_tokens=4)
    assert r.choices
