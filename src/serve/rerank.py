"""Reranked best-of-N chat replies over HTTP: the best-of-N function of src/generation/rerank.py
(`Reranking`: distinct candidates, echoes of the conversation left out and counted, scored, best
first) with its language-model candidates written by the server's scheduler, so they decode in the
same batch as every other request.

Selected by the model id `NAME+rerank` or the request field `"rerank": true` on a server started
with `--rerank RERANKER_DIR`. The request's `n` is how many of the best candidates come back;
`--rerank-n` candidates are written. The reply is chosen once every candidate is written, so it is
not streamed.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from src.generation.chat_template import clean_reply
from src.generation.rerank import RerankedReply, Reranking
from src.serve.prompts import PreparedRequest, RequestError
from src.serve.scheduler import GenerationJob, JobUpdate, QueueFull, Scheduler

RERANK_SUFFIX = "+rerank"
# Seconds a candidate batch may take before the request fails (a bug or a stuck worker).
CANDIDATES_TIMEOUT_S = 600
POLL_S = 0.1


class CandidatesAbandoned(Exception):
    """The client left while its candidates were being written."""


@dataclass
class ScheduledWriter:
    """`Reranking`'s language-model writer: `n` samples of a prepared chat prompt, through the
    scheduler. Counts the tokens it generated (the request's usage)."""

    scheduler: Scheduler
    prepared: PreparedRequest
    tokens: int = 0
    # Set by the HTTP side when the client has gone: the candidates' rows leave the batch.
    gone: threading.Event = field(default_factory=threading.Event)

    def propose(self, context: Sequence[str], n: int, seed: int | None) -> list[tuple[str, str | None]]:
        updates: queue.Queue[JobUpdate] = queue.Queue()
        p = self.prepared
        job = GenerationJob(p.ids, p.params, updates.put, n, p.stop_ids, p.stop_strings, seed)
        try:
            self.scheduler.submit(job)
        except QueueFull as exc:
            raise RequestError(429, f"server busy: {exc}; retry later", code="queue_full",
                               kind="rate_limit_error") from None
        texts = [""] * n
        waited = 0.0
        while True:
            try:
                update = updates.get(timeout=POLL_S)
            except queue.Empty:
                waited += POLL_S
                if self.gone.is_set() or waited > CANDIDATES_TIMEOUT_S:
                    job.cancel()
                    if self.gone.is_set():
                        raise CandidatesAbandoned() from None
                    raise RequestError(503, "the candidates took too long", kind="server_error") from None
                continue
            if self.gone.is_set():
                job.cancel()
                raise CandidatesAbandoned()
            if update.error:
                raise RequestError(update.error[0], update.error[1], kind="server_error")
            for d in update.deltas:
                texts[d.index] += d.text
            if update.done:
                self.tokens += sum(update.tokens)
                # As the best-of-N LM writer: one line, whitespace collapsed.
                return [(" ".join(clean_reply(t).split()), None) for t in texts]


class _OneAtATime:
    """A scorer that scores one request's candidates at a time (they share its model and batches),
    while the candidates of several requests are written together by the scheduler."""

    def __init__(self, scorer: Any) -> None:
        self.scorer, self._lock = scorer, threading.Lock()

    def score(self, context: Sequence[str], candidates: Sequence[str], *, batch_size: int | None = None) -> Any:
        with self._lock:
            return self.scorer.score(context, candidates, batch_size=batch_size)


class RerankService:
    """The reranker and how many candidates a reply draws from."""

    def __init__(self, scorer: Any, candidates: int, context_lines: int = 6) -> None:
        self.scorer = _OneAtATime(scorer)
        self.candidates = candidates
        self.context_lines = context_lines

    def reply(self, scheduler: Scheduler, prepared: PreparedRequest,
              gone: threading.Event | None = None) -> tuple[RerankedReply, int]:
        """The ranked candidates for a prepared chat request, and the tokens generated (blocking;
        CandidatesAbandoned once `gone` is set)."""
        writer = ScheduledWriter(scheduler, prepared, gone=gone or threading.Event())
        context = [m["content"] for m in prepared.messages if m["role"] != "system"]
        reranking = Reranking(self.scorer, lm=writer, source="lm", n=self.candidates,
                              context_lines=self.context_lines)
        return reranking.reply(context, seed=prepared.seed), writer.tokens


def rerank_fields(ranked: RerankedReply) -> dict[str, Any]:
    """What the response adds (not in the OpenAI API): every candidate's score, and the counts."""
    return {"candidates": [{"text": s.text, "score": s.score} for s in ranked.ranked],
            "made": ranked.made, "dropped": ranked.dropped,
            "seconds": {k: round(v, 4) for k, v in ranked.timings.items()}}
