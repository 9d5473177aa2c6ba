from __future__ import annotations

import queue
import time

import pytest
import torch

from src.generation.engine import Engine
from src.generation.sampling import GREEDY, SamplingParams
from src.models.gpt import GPT
from src.serve.scheduler import GenerationJob, JobUpdate, QueueFull, Scheduler, held_back
from src.tokenizers.char import CharTokenizer

TOK = CharTokenizer("abcdefghijklmnopqrstuvwxyz .,?!\n")


def make_engine(block_size: int = 96) -> Engine:
    torch.manual_seed(0)
    model = GPT({"vocab_size": TOK.vocab_size, "block_size": block_size, "n_layer": 1, "n_head": 2, "n_embd": 32})
    return Engine(model.eval(), TOK, precision=None)


class Collector:
    """A job's updates, gathered from the worker thread."""

    def __init__(self) -> None:
        self.updates: queue.Queue[JobUpdate] = queue.Queue()
        self.finished_at: float | None = None

    def deliver(self, update: JobUpdate) -> None:
        if update.done or update.error:
            self.finished_at = time.monotonic()
        self.updates.put(update)

    def result(self, timeout: float = 30) -> tuple[list[str], list[str | None], JobUpdate]:
        texts: dict[int, str] = {}
        finish: dict[int, str | None] = {}
        while True:
            update = self.updates.get(timeout=timeout)
            if update.error:
                return [], [], update
            for d in update.deltas:
                texts[d.index] = texts.get(d.index, "") + d.text
                finish[d.index] = d.finish_reason or finish.get(d.index)
            if update.done:
                return [texts.get(i, "") for i in range(len(update.tokens))], \
                    [finish.get(i) for i in range(len(update.tokens))], update


def job(prompt: str, collector: Collector, params: SamplingParams = GREEDY, **kwargs) -> GenerationJob:
    return GenerationJob(TOK.encode(prompt), params, collector.deliver, **kwargs)


@pytest.fixture
def scheduler():
    made: list[Scheduler] = []

    def make(**kwargs) -> Scheduler:
        s = Scheduler(make_engine(), **kwargs)
        s.start()
        made.append(s)
        return s
    yield make
    for s in made:
        s.stop()


def test_concurrent_requests_give_what_each_gets_alone(scheduler):
    prompts = ["hello there", "a", "what is the time, please?", "zz"]
    engine = make_engine()
    params = GREEDY.with_(max_new_tokens=30)
    alone = [engine.generate([TOK.encode(p)], params, stop_ids=[])[0].text for p in prompts]
    s = scheduler()
    collectors = [Collector() for _ in prompts]
    for p, c in zip(prompts, collectors, strict=True):
        s.submit(job(p, c, params))
    results = [c.result()[0][0] for c in collectors]
    assert results == alone
    # They decoded together: far fewer steps than one request after another.
    assert s.steps < 30 * len(prompts) / 2


def test_a_short_request_does_not_wait_for_a_long_one(scheduler):
    s = scheduler()
    long, short = Collector(), Collector()
    s.submit(job("a long one", long, GREEDY.with_(max_new_tokens=80)))
    while s.load()["active_requests"] == 0:
        time.sleep(0.001)
    s.submit(job("short", short, GREEDY.with_(max_new_tokens=3)))
    texts, finish, _ = short.result()
    assert finish == ["length"]
    long.result()
    assert short.finished_at < long.finished_at


def test_seeded_samples_differ_and_repeat(scheduler):
    s = scheduler()
    params = SamplingParams(temperature=1.0, max_new_tokens=20)
    first, second = Collector(), Collector()
    s.submit(job("hi", first, params, n=3, seed=7))
    texts, _, done = first.result()
    s.submit(job("hi", second, params, n=3, seed=7))
    assert second.result()[0] == texts
    assert len(set(texts)) == 3 and done.tokens == [20, 20, 20]


def test_stop_strings_cut_the_text_and_are_never_sent(scheduler):
    s = scheduler()
    params = SamplingParams(temperature=1.0, max_new_tokens=40)
    free = Collector()
    s.submit(job("hi", free, params, seed=3))
    [text], _, _ = free.result()
    stop = text[12:15]
    cut = Collector()
    s.submit(job("hi", cut, params, seed=3, stop_strings=(stop,)))
    [cut_text], [finish], _ = cut.result()
    assert cut_text == text[:text.find(stop)] and finish == "stop"


def test_stop_token_ends_a_row(scheduler):
    s = scheduler()
    params = SamplingParams(temperature=1.0, max_new_tokens=30)
    free = Collector()
    s.submit(job("hello", free, params, seed=5))
    [text], _, _ = free.result()
    tokens = TOK.encode(text)
    first = next(k for k in range(3, len(tokens)) if tokens[k] not in tokens[:k])
    stopped = Collector()
    s.submit(job("hello", stopped, params, seed=5, stop_ids=frozenset([tokens[first]])))
    [cut], [finish], done = stopped.result()
    assert cut == TOK.decode(tokens[:first]) and finish == "stop" and done.tokens == [first]


def test_batching_off_queues_and_times_out(scheduler):
    s = scheduler(batching=False, queue_timeout_s=0.2, max_queue=1)
    slow, waiting, refused = Collector(), Collector(), Collector()
    s.submit(job("x", slow, GREEDY.with_(max_new_tokens=90)))
    while s.load()["active_requests"] == 0:
        time.sleep(0.001)
    original_step = s.batch.step
    s.batch.step = lambda tokens: (time.sleep(0.01), original_step(tokens))[1]  # 90 steps > 0.2 s
    s.submit(job("y", waiting, GREEDY.with_(max_new_tokens=2)))
    with pytest.raises(QueueFull):
        s.submit(job("z", refused, GREEDY))
    error = waiting.result()[2].error
    assert error is not None and error[0] == 503 and "queue_timeout_s" in error[1]
    assert slow.result()[1] == ["length"]


def test_a_cancelled_job_leaves_the_batch(scheduler):
    s = scheduler()
    gone = Collector()
    j = job("bye", gone, GREEDY.with_(max_new_tokens=90))
    original_step = s.batch.step
    s.batch.step = lambda tokens: (time.sleep(0.005), original_step(tokens))[1]
    s.submit(j)
    gone.updates.get(timeout=10)  # started
    j.cancel()
    deadline = time.monotonic() + 5
    while s.load()["active_rows"] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert s.load() == {"active_requests": 0, "active_rows": 0, "queued_requests": 0}
    assert s.steps < 80
    # The scheduler goes on serving.
    after = Collector()
    s.submit(job("again", after, GREEDY.with_(max_new_tokens=2)))
    assert after.result()[1] == ["length"]


@pytest.mark.parametrize("text,stops,held", [
    ("abc", ["cd"], 1), ("abc", ["bcx"], 2), ("abc", ["x"], 0), ("ab\ufffd", [], 1), ("ab<|e", ["<|end|>"], 3),
    ("abc<|en", ["<|end|>", "<|user|>"], 4), ("aaa", ["aab"], 2), ("ab<|end", ["d|>x", "<|e"], 1), ("", ["x"], 0),
])
def test_held_back(text, stops, held):
    assert held_back(text, stops) == held
