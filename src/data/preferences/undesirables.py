"""Draw the SFT model's own replies under a failure-provoking preset, through the KV-cache engine.

Each chosen prompt is prefilled once and `samples_per_prompt` replies are drawn from its cache
(Engine.generate's num_samples); a call holds `batch_size` rows (prompts x samples). Prompts are
taken from a seeded permutation of all prompts (cycled when a preset asks for more replies than
there are prompts), then sorted by length within the preset so that a call pads little. On a CUDA
out-of-memory error the call is retried with half the rows. Each call has its own seed, derived
from the stage seed, the preset and the call's position, so a run is reproducible on the CPU.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from src.generation.chat_template import END, clean_reply, special_ids
from src.generation.engine import Engine, TokenEvent
from src.generation.sampling import SamplingParams


@dataclass
class PromptRow:
    """One prompt of the pair table: a conversation of the SFT training split up to its last
    assistant turn (whole oldest turns dropped when it did not fit), and that turn's reply."""

    row: int  # the conversation's row in dialogues.parquet
    messages: list[dict[str, str]]
    ids: list[int]
    reply: str
    overall_score: float | None
    split: str  # train | val (of the KTO run)

    @property
    def text(self) -> str:
        """The prompt's contents, for the canned detector's word overlap."""
        return "\n".join(m["content"] for m in self.messages)


@dataclass
class SampledReply:
    prompt: PromptRow
    preset: str
    text: str
    tokens: list[int]
    ended: bool  # stopped on <|end|>
    finish_reason: str  # end | other_special | max_tokens | context | special_string
    limit: int  # the most new tokens this row could take (preset limit, capped by the context)


@dataclass
class PresetRun:
    replies: list[SampledReply]
    new_tokens: int
    calls: int
    rows_per_call: int  # after any halving on out-of-memory


def call_seed(seed: int, preset_index: int, call: int) -> int:
    return int(np.random.SeedSequence([seed, preset_index, call]).generate_state(1)[0])


def choose_prompts(n_prompts: int, count: int, samples_per_prompt: int, seed: int, preset_index: int) -> list[int]:
    """Indices of the prompts to sample (each `samples_per_prompt` times) for `count` replies."""
    need = math.ceil(count / samples_per_prompt)
    rng = np.random.default_rng([seed, preset_index])
    order: list[int] = []
    while len(order) < need:
        order.extend(int(i) for i in rng.permutation(n_prompts))
    return order[:need]


def _is_oom(exc: BaseException) -> bool:
    oom = getattr(torch.cuda, "OutOfMemoryError", None)
    return (oom is not None and isinstance(exc, oom)) or "out of memory" in str(exc).lower()


def sample_preset(engine: Engine, prompts: Sequence[PromptRow], name: str, preset: Any, *, preset_index: int,
                  samples_per_prompt: int, batch_size: int, seed: int,
                  on_tokens: Callable[[int], None] | None = None) -> PresetRun:
    """`preset.count` replies to prompts of `prompts` under the preset's sampling settings."""
    if preset.count == 0 or not prompts:
        return PresetRun([], 0, 0, batch_size)
    tokenizer = engine.tokenizer
    end_id = tokenizer.special_tokens[END]
    stops = special_ids(tokenizer)  # a reply ends on any tag, as in chat
    block = engine.block_size
    chosen = choose_prompts(len(prompts), preset.count, samples_per_prompt, seed, preset_index)
    chosen.sort(key=lambda i: len(prompts[i].ids))  # stable: ties keep the seeded order
    rows = max(samples_per_prompt, batch_size)
    replies: list[SampledReply] = []
    new_tokens = calls = start = 0
    while start < len(chosen):
        group = [prompts[i] for i in chosen[start:start + max(1, rows // samples_per_prompt)]]
        limits = [min(preset.max_new_tokens, block + 1 - len(p.ids)) for p in group]
        params = SamplingParams(temperature=preset.temperature, top_k=preset.top_k, top_p=preset.top_p,
                                repetition_penalty=preset.repetition_penalty, max_new_tokens=max(limits))
        stopped_on: dict[int, int] = {}

        def record(event: TokenEvent, stopped_on: dict[int, int] = stopped_on) -> None:
            if event.finish_reason == "stop_token":
                stopped_on[event.row] = event.token
            elif on_tokens is not None:
                on_tokens(1)

        try:
            completions = engine.generate([p.ids for p in group], params, num_samples=samples_per_prompt,
                                          stop_ids=stops, seed=call_seed(seed, preset_index, calls),
                                          on_token=record)
        except RuntimeError as exc:
            if not _is_oom(exc) or rows <= samples_per_prompt:
                raise
            rows = max(samples_per_prompt, rows // 2)
            torch.cuda.empty_cache()
            print(f"kto_pairs: out of memory at {len(group) * samples_per_prompt} rows per call; "
                  f"retrying with {rows}", file=sys.stderr)
            continue
        for row, c in enumerate(completions):  # row = the engine's batch row (prompt-major)
            prompt, limit = group[c.prompt_index], limits[c.prompt_index]
            # The engine stops each row at min(max_new_tokens, its context), which is `limit`.
            tokens = c.tokens
            text = tokenizer.decode(tokens)
            reason = c.finish_reason
            if reason == "stop_token":
                reason = "end" if stopped_on.get(row) == end_id else "other_special"
            kept = clean_reply(text)
            if kept != text:  # the model spelled a tag out of ordinary pieces: it began another turn
                text, reason = kept, "special_string"
            replies.append(SampledReply(prompt, name, text, tokens, reason == "end", reason, limit))
            new_tokens += len(tokens)
        start += len(group)
        calls += 1
    return PresetRun(replies[:preset.count], new_tokens, calls, rows)
