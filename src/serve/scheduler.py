"""One worker thread that decodes every admitted request together (continuous batching).

A request becomes a `GenerationJob` (prompt ids, n samples, sampling settings, stops) and waits in
a queue. Between two decode steps the worker admits queued jobs while fewer than `max_active` jobs
and `max_rows` rows are decoding (batching off: one job at a time), prefills each into the
`RunningBatch`, samples every row's next token with its own job's settings and random generator,
sends each job its new text, and drops the rows that finished or whose client went away. A job that
waits longer than `queue_timeout_s` is answered with an error instead of being served late.

Updates reach the HTTP side through the job's `deliver` callback, which must be thread-safe (the app
hands the event loop's `call_soon_threadsafe`). Text is sent as it becomes final: an incomplete
trailing character (a byte-fallback sequence decodes to U+FFFD until its last byte) and the start of
a stop string are held back, and a stop string itself is never sent.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from src.generation.engine import Engine
from src.generation.sampling import SamplingParams, sample
from src.serve.batch import RunningBatch

# Engine finish reasons -> the OpenAI API's.
OPENAI_FINISH = {"stop_token": "stop", "stop_string": "stop", "max_tokens": "length", "context": "length"}


@dataclass
class Delta:
    index: int
    text: str
    finish_reason: str | None = None  # OpenAI's: stop | length


@dataclass
class JobUpdate:
    """What a job's client gets: `started` once (admitted and prefilled), then deltas; `done` last,
    with `tokens` (completion tokens per sample); or one `error` (status, message) instead."""

    started: bool = False
    deltas: list[Delta] = field(default_factory=list)
    done: bool = False
    tokens: list[int] = field(default_factory=list)
    error: tuple[int, str] | None = None


@dataclass
class GenerationJob:
    prompt: list[int]
    params: SamplingParams
    deliver: Callable[[JobUpdate], None]
    n: int = 1
    stop_ids: frozenset[int] = frozenset()
    stop_strings: tuple[str, ...] = ()
    seed: int | None = None
    enqueued: float = field(default_factory=time.monotonic)
    cancelled: threading.Event = field(default_factory=threading.Event)

    def cancel(self) -> None:
        """The client is gone: its rows leave the batch at the next step (or it never starts)."""
        self.cancelled.set()


class QueueFull(Exception):
    """More jobs waiting than the queue holds."""


def held_back(text: str, stops: Sequence[str]) -> int:
    """How many trailing characters of `text` may still turn into one of `stops` (or complete a
    character: a trailing U+FFFD), and so must not be sent yet."""
    if text.endswith("\ufffd"):
        return len(text) - len(text.rstrip("\ufffd"))
    held = 0
    for stop in stops:
        # The earliest place a proper prefix of `stop` could start gives the longest hold.
        i = text.find(stop[0], max(0, len(text) - len(stop) + 1)) if stop else -1
        while i != -1:
            if stop.startswith(text[i:]):
                held = max(held, len(text) - i)
                break
            i = text.find(stop[0], i + 1)
    return held


@dataclass(eq=False)
class _Row:
    job: _Active
    index: int  # sample index within the job
    tokens: list[int] = field(default_factory=list)
    sent: str = ""
    finish: str | None = None


@dataclass(eq=False)
class _Active:
    job: GenerationJob
    generator: torch.Generator | None
    seen: torch.Tensor | None  # [n, V] tokens already in each sample's context (repetition penalty)
    rows: list[_Row] = field(default_factory=list)


class Scheduler:
    """Owns the engine's model on one worker thread; `submit` is safe from any thread."""

    def __init__(self, engine: Engine, *, max_active: int = 16, max_rows: int = 64, max_queue: int = 64,
                 queue_timeout_s: float = 30.0, batching: bool = True) -> None:
        self.engine = engine
        self.tokenizer = engine.tokenizer
        self.batch = RunningBatch(engine.model, engine.cache_dtype)
        self.max_active = max_active if batching else 1
        self.max_rows = max_rows
        self.max_queue = max_queue
        self.queue_timeout_s = queue_timeout_s
        self.batching = batching
        self._queue: deque[GenerationJob] = deque()
        self._cond = threading.Condition()
        self._rows: list[_Row] = []
        self._logits: torch.Tensor | None = None
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="serve-scheduler", daemon=True)
        self.steps = 0

    # --- public ---------------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout=10)

    def submit(self, job: GenerationJob) -> None:
        if job.n > self.max_rows:
            raise ValueError(f"n={job.n} is more than the {self.max_rows} rows a batch holds")
        with self._cond:
            if len(self._queue) >= self.max_queue:
                raise QueueFull(f"{len(self._queue)} requests already wait (serve.max_queue)")
            self._queue.append(job)
            self._cond.notify()

    def load(self) -> dict[str, int]:
        with self._cond:
            queued = len(self._queue)
        active = {id(r.job) for r in self._rows}
        return {"active_requests": len(active), "active_rows": len(self._rows), "queued_requests": queued}

    # --- the worker -----------------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._rows and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    break
                admitted = self._take_admissible()
            try:
                if admitted:
                    try:
                        self._admit(admitted)
                    except Exception as exc:  # a bug: these jobs fail, the running ones go on
                        traceback.print_exc()
                        for job in admitted:
                            job.deliver(JobUpdate(error=(500, f"internal error at prefill: {type(exc).__name__}: {exc}")))
                if self._rows:
                    self._step()
            except Exception as exc:  # a bug: fail the jobs in flight, keep serving the next ones
                traceback.print_exc()
                self._fail_all(f"internal error while decoding: {type(exc).__name__}: {exc}")
        self._fail_all("the server is shutting down", status=503)
        with self._cond:
            for job in self._queue:
                job.deliver(JobUpdate(error=(503, "the server is shutting down")))
            self._queue.clear()

    def _take_admissible(self) -> list[GenerationJob]:
        """Queued jobs that fit now (in order); expired and cancelled ones are answered and dropped."""
        now = time.monotonic()
        active = len({id(r.job) for r in self._rows})
        rows = len(self._rows)
        taken: list[GenerationJob] = []
        waiting: deque[GenerationJob] = deque()
        for job in self._queue:
            if job.cancelled.is_set():
                continue
            fits = not waiting and active < self.max_active and rows + job.n <= self.max_rows
            if fits:
                taken.append(job)
                active, rows = active + 1, rows + job.n
            elif now - job.enqueued > self.queue_timeout_s:
                job.deliver(JobUpdate(error=(503, f"the request waited {now - job.enqueued:.1f} s in "
                                                  f"the queue (serve.queue_timeout_s={self.queue_timeout_s:g}); "
                                                  "the server is busy, retry later")))
            else:
                waiting.append(job)
        self._queue = waiting
        return taken

    def _admit(self, jobs: list[GenerationJob]) -> None:
        """Prefill `jobs` into the batch together (one copy of the running cache for all)."""
        device = self.engine.device
        logits = self.batch.join_many([(job.prompt, job.n) for job in jobs])
        for job in jobs:
            generator = torch.Generator(device=device).manual_seed(job.seed) if job.seed is not None else None
            seen = None
            if job.params.repetition_penalty != 1.0:
                vocab = self.engine.model.cfg["vocab_size"]
                seen = torch.zeros(job.n, vocab, dtype=torch.bool, device=device)
                seen[:, torch.tensor(job.prompt, device=device)] = True
                seen[:, self.engine.unpenalized_ids] = False
            active = _Active(job, generator, seen)
            active.rows = [_Row(active, i) for i in range(job.n)]
            self._rows += active.rows
            job.deliver(JobUpdate(started=True))
        self._logits = torch.cat(([] if self._logits is None else [self._logits]) + logits)

    def _step(self) -> None:
        assert self._logits is not None
        tokens = torch.empty(len(self._rows), dtype=torch.long, device=self.engine.device)
        groups: dict[int, list[int]] = {}
        for i, row in enumerate(self._rows):
            groups.setdefault(id(row.job), []).append(i)
        updates: dict[int, JobUpdate] = {}
        for indices in groups.values():
            active = self._rows[indices[0]].job
            index = torch.tensor(indices, device=self.engine.device)
            picked = sample(self._logits.index_select(0, index), active.job.params, active.seen, active.generator)
            tokens[index] = picked
            if active.seen is not None:
                active.seen.scatter_(1, picked[:, None], True)
                active.seen[:, self.engine.unpenalized_ids] = False
            update = updates[id(active)] = JobUpdate()
            for i, token in zip(indices, picked.tolist(), strict=True):
                delta = self._advance(self._rows[i], token, self.batch.row_length(i))
                if delta is not None:
                    update.deltas.append(delta)
        keep = [i for i, row in enumerate(self._rows)
                if row.finish is None and not row.job.job.cancelled.is_set()]
        for active in {id(r.job): r.job for r in self._rows}.values():
            update = updates[id(active)]
            if all(r.finish for r in active.rows):
                update.done, update.tokens = True, [len(r.tokens) for r in active.rows]
            if not active.job.cancelled.is_set() and (update.deltas or update.done):
                active.job.deliver(update)
        self._rows = [self._rows[i] for i in keep]
        self.batch.keep(keep)
        self.steps += 1
        if self._rows:
            self._logits = self.batch.step(tokens[torch.tensor(keep, device=tokens.device)])
        else:
            self._logits = None

    def _advance(self, row: _Row, token: int, context: int) -> Delta | None:
        """Add `token` to `row` (whose cache holds `context` tokens); the text that became final."""
        job = row.job.job
        if token in job.stop_ids:
            row.finish = "stop_token"
            text = self.tokenizer.decode(row.tokens)
        else:
            row.tokens.append(token)
            text = self.tokenizer.decode(row.tokens)
            hits = [text.find(s) for s in job.stop_strings if s in text]
            if hits:
                row.finish, text = "stop_string", text[:min(hits)]
            elif len(row.tokens) >= job.params.max_new_tokens:
                row.finish = "max_tokens"
            elif context + 1 > self.batch.block_size:
                row.finish = "context"  # the new token would not fit the position table
        if row.finish is None:
            text = text[:len(text) - held_back(text, job.stop_strings)]
        if not text.startswith(row.sent):  # a U+FFFD resolved into an earlier character: wait
            text = row.sent if row.finish is None else text
        new = text[len(row.sent):] if text.startswith(row.sent) else ""
        row.sent += new
        finish = OPENAI_FINISH[row.finish] if row.finish else None
        return Delta(row.index, new, finish) if new or finish else None

    def _fail_all(self, message: str, status: int = 500) -> None:
        for active in {id(r.job): r.job for r in self._rows}.values():
            active.job.deliver(JobUpdate(error=(status, message)))
        self._rows, self._logits = [], None
        self.batch.keep([])
