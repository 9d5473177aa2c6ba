"""How long a chat model keeps its user waiting on this machine, at batch 1.

`measure_latency` reports, as medians (over `repeats` runs of each prompt, then over the prompts):
- `ttft_ms`: from the call to the first generated token (the prompt's prefill and one sample);
- `first_phrase_ms`: to the first complete phrase: the decoded reply first holds a sentence end
  (. ! ? …) or the reply ends (end of turn, or the length limit). The product limit of about 2 s to
  the first utterance (background: ../shared/seeds/001_ae2d10cad3756ba7.txt) is about this figure;
- `tokens_per_s`: decode speed after the first token, as src/bench/generate.py measures it
  (`time_generation`: a prompt of the median prompt length, stop tokens off, so every run makes the
  same number of tokens);
- with a `reranking` (src/generation/rerank.py), `reranked_turn_ms`: one whole best-of-N turn
  (candidates made, scored, best picked). Nothing streams there: the whole turn is the time to the
  first utterance. `reranked_phases_ms` splits it (markov, lm, score).
Every number is wall-clock time on whatever else the machine is doing: it belongs in a run's
timings and the report, not in a DVC-tracked output that must be byte-identical across runs.
A warm-up run (allocations, kernel selection) comes first and is not counted.
"""

from __future__ import annotations

import re
import statistics
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from src.bench.generate import _sync, time_generation
from src.eval.reranker_eval import prompt_lines
from src.generation.chat_template import ContextError
from src.generation.engine import Engine
from src.generation.rerank import LMWriter, Reranking
from src.generation.sampling import SamplingParams

PHRASE_END = re.compile(r"[.!?…]")


def timed_reply(engine: Engine, ids: list[int], params: SamplingParams, stop_ids: Sequence[int],
                stop_strings: Sequence[str], seed: int) -> tuple[float, float, int]:
    """(seconds to the first token, seconds to the first phrase, tokens in that phrase) of one
    streamed reply; generation stops at the phrase (the rest of the reply is not timed)."""
    tok = engine.tokenizer
    tokens: list[int] = []
    first = None
    _sync(engine.device)
    start = time.perf_counter()
    events = engine.iter_events([ids], params, stop_ids=stop_ids, stop_strings=stop_strings, seed=seed)
    try:
        for event in events:
            now = time.perf_counter()  # the event comes after its token reached the host: synced
            first = first or now
            if event.finish_reason != "stop_token":
                tokens.append(event.token)
            if event.finish_reason or PHRASE_END.search(tok.decode(tokens)):
                return first - start, now - start, len(tokens)
    finally:
        events.close()
    raise RuntimeError("the engine ended a reply without a finish reason")  # iter_events always gives one


def _median_ms(values: Sequence[float]) -> float:
    return round(statistics.median(values) * 1e3, 3)


def measure_latency(loaded: Any, prompts: Sequence[Mapping[str, Any]], *, max_new_tokens: int = 64,
                    repeats: int = 3, reranking: Reranking | None = None, params: SamplingParams | None = None,
                    precision: str = "auto", device: str | None = None, reply_share: float = 0.25,
                    seed: int = 0) -> dict[str, Any]:
    """The figures of the module docstring for the chat model `loaded` (a LoadedModel with its
    tokenizer) on `prompts` (entries with id and messages), replies sampled with `params` (the
    generation defaults when None) up to `max_new_tokens`, run `i` of a prompt with seed `seed`
    (the same reply every repeat, so the repeats time the same work). `precision`/`device`: the
    Engine's (auto = what the chat REPL uses). A prompt that does not fit the context is counted in
    `dropped`. ValueError when no prompt is left or repeats < 1."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    engine = Engine(loaded.model, loaded.tokenizer, precision=precision, device=device)
    params = (params or SamplingParams()).with_(max_new_tokens=max_new_tokens)
    turns, dropped = [], Counter()
    for prompt in prompts:
        system, lines = prompt_lines(prompt)
        writer = LMWriter(engine, params, chat=loaded.chat, system=system, reply_share=reply_share)
        try:  # the prompt exactly as the chat and the LM candidates make it
            turns.append((lines, *writer.prompt(lines)))
        except ContextError:
            dropped["prompt_too_long_for_the_context"] += 1
    if not turns:
        raise ValueError(f"latency: none of the {len(prompts)} prompts fits the model's context")

    timed_reply(engine, *turns[0][1:], seed=seed)  # warm-up, not counted
    firsts, phrases, phrase_tokens = [], [], []
    for _, ids, turn_params, stop_ids, stop_strings in turns:
        runs = [timed_reply(engine, ids, turn_params, stop_ids, stop_strings, seed) for _ in range(repeats)]
        # per run first token <= first phrase, so the medians keep that order
        firsts.append(statistics.median(r[0] for r in runs))
        phrases.append(statistics.median(r[1] for r in runs))
        phrase_tokens.append(runs[0][2])

    # decode speed: bench's measure, at the median prompt length, as many tokens as fit the context
    vocab = loaded.model.cfg["vocab_size"]
    new_tokens = max(2, min(max_new_tokens, engine.block_size // 2))
    prompt_len = max(1, min(int(statistics.median(len(t[1]) for t in turns)), engine.block_size - new_tokens))
    time_generation(engine, 1, prompt_len, 4, vocab, 1)  # warm-up, as the benchmark does
    _, rate = time_generation(engine, 1, prompt_len, new_tokens, vocab, repeats)

    out: dict[str, Any] = {
        "n": len(turns), "repeats": repeats, "device": str(engine.device), "precision": engine.precision,
        "ttft_ms": _median_ms(firsts), "first_phrase_ms": _median_ms(phrases),
        "first_phrase_tokens": statistics.median(phrase_tokens), "tokens_per_s": round(rate, 3),
        "dropped": dict(dropped),
    }
    if reranking is not None:
        out.update(reranked_latency(reranking, [t[0] for t in turns], repeats, seed))
    return out


def reranked_latency(reranking: Reranking, conversations: Sequence[list[str]], repeats: int,
                     seed: int) -> dict[str, Any]:
    """Median time of one whole reranked turn (and of its phases) over the conversations."""
    reranking.reply(conversations[0], seed=seed)  # warm-up, not counted
    totals: list[float] = []
    phases: dict[str, list[float]] = {}
    for lines in conversations:
        runs = [reranking.reply(lines, seed=seed).timings for _ in range(repeats)]
        totals.append(statistics.median(r["total"] for r in runs))
        for name in runs[0]:
            if name != "total":
                phases.setdefault(name, []).append(statistics.median(r[name] for r in runs))
    return {"reranked_turn_ms": _median_ms(totals),
            "reranked_phases_ms": {k: _median_ms(v) for k, v in sorted(phases.items())},
            "reranked_n": reranking.n, "reranked_candidates": reranking.source}
