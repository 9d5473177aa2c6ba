"""Best-of-N replies ("dumb writers, smart editor"): many cheap candidates, one reranker picks.

Candidates come from the Markov writer (src/generation/markov.py), the language model (N samples of
one prompt through the batched engine) or both, half each. Every distinct candidate is scored by the
reranker (anything with `score(context_lines, candidates) -> array`, e.g.
src/generation/reranker.py's `Reranker`) against the conversation so far, and the best is the reply.
A candidate that repeats a line of the conversation is left out (counted): echoing the user scores
well with a next-line judge and says nothing. So is a candidate in another script than the user's
last line (a Latin Markov line in a Russian conversation): the reranker's negatives never cross
languages, so it cannot be trusted to reject one (`match_script`; when no candidate shares the
script, all are kept and the reply's `notes` say so).

`Conversation` keeps the lines of a multi-turn exchange: each reply joins the context of the next.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from src.data.subtitles.langid import script_counts
from src.generation.markov import MarkovModel

SOURCES = ("markov", "lm", "both")


def script_of(text: str, min_letters: int = 2) -> str | None:
    """The script most of `text`'s letters are in (latin, cyrillic, ...), None under `min_letters`."""
    counts = script_counts(text)
    script, letters = max(counts.items(), key=lambda kv: kv[1])
    return script if letters >= min_letters else None


class Scorer(Protocol):
    def score(self, context: Sequence[str], candidates: Sequence[str], *,
              batch_size: int | None = None) -> np.ndarray: ...


@dataclass(frozen=True)
class Scored:
    text: str
    source: str  # markov | lm
    score: float
    seed: str | None = None  # the conversation word a Markov line grew from


@dataclass
class RerankedReply:
    ranked: list[Scored]  # every scored candidate, best first
    made: dict[str, int]  # distinct candidates made per source
    dropped: dict[str, int]  # left out before scoring, by reason
    timings: dict[str, float]  # seconds: markov, lm, score, total
    notes: list[str] = field(default_factory=list)  # what the reply should be read with

    @property
    def best(self) -> Scored | None:
        return self.ranked[0] if self.ranked else None


@dataclass
class MarkovWriter:
    """Markov candidates with the generation settings of `markov.generate`."""

    model: MarkovModel
    seeded_share: float = 0.5
    seed_lines: int = 1
    max_pieces: int = 40
    rounds: int = 4

    def propose(self, context: Sequence[str], n: int, seed: int | None) -> list[tuple[str, str | None]]:
        made = self.model.generate(n, context, seed=seed, seeded_share=self.seeded_share,
                                   seed_lines=self.seed_lines, max_pieces=self.max_pieces, rounds=self.rounds)
        return list(zip(made.texts, made.seeds, strict=True))


@dataclass
class LMWriter:
    """Language-model candidates: `n` samples of the conversation's prompt, `batch` at a time.

    A chat model gets the chat template (the lines alternate user and assistant, the last one the
    user's; older lines that do not fit beside the reply's share of the context are left out); a base
    model gets the lines one per row and stops at the end of its line."""

    engine: Any  # src.generation.engine.Engine with its tokenizer
    params: Any  # SamplingParams
    chat: bool = True
    system: str = ""
    reply_share: float = 0.25
    batch: int = 256

    def prompt(self, context: Sequence[str]) -> tuple[list[int], Any, list[int], tuple[str, ...]]:
        from src.generation import chat_template
        from src.tokenizers.base import SPECIAL_TOKENS

        tok = self.engine.tokenizer
        if not self.chat:
            keep = self.engine.block_size - chat_template.reply_reserve(
                self.engine.block_size, self.params.max_new_tokens, self.reply_share)
            ids = tok.encode("\n".join(context) + "\n")[-keep:]
            return ids, self.params, [tok.eot_id], ("\n",)
        roles = ["user" if (len(context) - i) % 2 else "assistant" for i in range(len(context))]
        messages = [{"role": "system", "content": self.system}] if self.system else []
        messages += [{"role": r, "content": line} for r, line in zip(roles, context, strict=True)]
        fitted = chat_template.fit_to_context(tok, messages, self.engine.block_size,
                                              self.params.max_new_tokens, self.reply_share)
        params = self.params.with_(max_new_tokens=fitted.max_new_tokens)
        return fitted.ids, params, chat_template.special_ids(tok), SPECIAL_TOKENS

    def propose(self, context: Sequence[str], n: int, seed: int | None) -> list[tuple[str, str | None]]:
        from src.generation.chat_template import clean_reply

        ids, params, stop_ids, stop_strings = self.prompt(context)
        out: list[tuple[str, str | None]] = []
        for start in range(0, n, self.batch):
            k = min(self.batch, n - start)
            done = self.engine.generate([ids], params, num_samples=k, stop_ids=stop_ids,
                                        stop_strings=stop_strings,
                                        seed=None if seed is None else seed + start)
            out += [(" ".join(clean_reply(c.text or "").split()), None) for c in done]
        return out


@dataclass
class Reranking:
    """What makes a reranked reply: the scorer, the writers, how many candidates and from where."""

    scorer: Scorer
    markov: MarkovWriter | None = None
    lm: LMWriter | None = None
    source: str = "markov"
    n: int = 4096
    # lines of the conversation the reranker sees (the newest); 0 = all
    context_lines: int = 6
    score_batch: int | None = None
    # keep only candidates in the script of the user's last line (see the module docstring)
    match_script: bool = True

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"candidates must be one of {list(SOURCES)}, got {self.source!r}")
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
        if self.source in ("markov", "both") and self.markov is None:
            raise ValueError(f"candidates={self.source} needs a Markov model")
        if self.source in ("lm", "both") and self.lm is None:
            raise ValueError(f"candidates={self.source} needs a language model")

    def reply(self, context: Sequence[str], seed: int | None = None) -> RerankedReply:
        """The candidates for the line after `context` (oldest first), scored, best first."""
        start = time.perf_counter()
        context = list(context)[-self.context_lines:] if self.context_lines else list(context)
        n_markov = {"markov": self.n, "lm": 0, "both": self.n // 2}[self.source]
        timings: dict[str, float] = {}
        made: dict[str, int] = {}
        dropped: dict[str, int] = {}
        pool: dict[str, tuple[str, str | None]] = {}  # text -> (source, seed)
        said = {" ".join(line.split()).casefold() for line in context}
        for source, writer, k in (("markov", self.markov, n_markov), ("lm", self.lm, self.n - n_markov)):
            if k <= 0 or writer is None:
                continue
            t0 = time.perf_counter()
            lines = writer.propose(context, k, seed)
            timings[source] = time.perf_counter() - t0
            made[source] = 0
            for text, word in lines:
                reason = ("empty" if not text.strip() else "repeats_the_conversation"
                          if text.casefold() in said else "duplicate" if text in pool else None)
                if reason:
                    dropped[reason] = dropped.get(reason, 0) + 1
                    continue
                pool[text] = (source, word)
                made[source] += 1
        notes: list[str] = []
        if self.match_script and pool and not self._keep_script(context, pool, dropped):
            notes.append("no candidate in the script of the last line: all scored")
        texts = list(pool)
        t0 = time.perf_counter()
        scores = np.asarray(self.scorer.score(context, texts, batch_size=self.score_batch), dtype=np.float64)
        timings["score"] = time.perf_counter() - t0
        if scores.shape != (len(texts),):
            raise ValueError(f"the scorer gave {scores.shape} scores for {len(texts)} candidates")
        order = np.argsort(-scores, kind="stable")
        ranked = [Scored(texts[i], pool[texts[i]][0], float(scores[i]), pool[texts[i]][1]) for i in order]
        timings["total"] = time.perf_counter() - start
        return RerankedReply(ranked, made, dropped, timings, notes)


    @staticmethod
    def _keep_script(context: Sequence[str], pool: dict[str, tuple[str, str | None]],
                     dropped: dict[str, int]) -> bool:
        """Leave out the candidates in another script than the last line's (counted); False, with the
        pool untouched, when none shares it."""
        target = script_of(context[-1]) if context else None
        if target is None:
            return True
        other = [t for t in pool if (script_of(t) or target) != target]
        if len(other) == len(pool):
            return False
        for text in other:
            del pool[text]
        if other:
            dropped["other_script"] = len(other)
        return True


@dataclass
class Conversation:
    """A multi-turn exchange answered by `reranking`: every reply joins the next turn's context."""

    reranking: Reranking
    lines: list[str] = field(default_factory=list)
    seed: int | None = None
    last: RerankedReply | None = None

    def say(self, user_line: str) -> RerankedReply:
        self.lines.append(user_line)
        turn_seed = None if self.seed is None else self.seed + len(self.lines)
        self.last = self.reranking.reply(self.lines, seed=turn_seed)
        if self.last.best is not None:
            self.lines.append(self.last.best.text)
        return self.last
