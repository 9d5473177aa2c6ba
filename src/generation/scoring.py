"""Score (prompt, completion) pairs: the summed log-probability of each completion given its prompt.

    logp, n = completion_logprobs(model, prompts, completions, batch_size=16)

`logp[i]` = sum over the completion's tokens t_j of log p(t_j | prompt_i, t_<j), in float32; `n[i]`
is the completion's token count. Preference tuning (KTO's policy and reference), the pair
collection and the evaluation stage all call this one function, so they agree on what a
"log-prob of a reply" is.

How it runs:

- Each pair is one sequence `prompt + completion[:-1]` (the last completion token is only a
  target). Rows are right-padded to the longest in their batch: under causal attention a real
  token never sees the padding after it, and every row keeps position ids 0, 1, ... as if alone, so
  the batched numbers equal one-pair-at-a-time scoring (tests/generation/test_scoring.py checks
  this for mixed lengths and batch sizes 1, 3 and all). Callers need not pad anything; left
  padding would shift positions, which is why it is not used.
- Pairs are sorted by length before batching (less padding) and the results put back in the
  caller's order. `batch_size=None` scores everything in one forward.
- No `torch.no_grad` here: the KTO policy needs gradients, the reference and evaluation wrap the
  call in `torch.no_grad()` / `torch.inference_mode()` themselves. The model's train/eval mode is
  left as the caller set it (dropout is the caller's business too).
- Context: a pair needs len(prompt) + len(completion) - 1 <= block_size. A longer one is handled by
  `overflow`: "crop_prompt" (default) drops tokens from the prompt's start, keeping at least one;
  "error" raises ContextOverflowError. A completion that alone does not fit raises either way.

`encode_pair` turns (prompt messages, completion text, ended) into token ids exactly as SFT trained
on them: the prompt is the chat template with the generation prompt (`<|assistant|>\\n` last), the
completion is the reply's content, plus the `<|end|>` id when the reply ended (a reply cut at the
token limit has no end tag, and its score must not claim one).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from src.generation.chat_template import END, check_content, encode

Overflow = Literal["crop_prompt", "error"]


class ContextOverflowError(ValueError):
    """A pair does not fit the model's context (and may not be cropped)."""


def _block_size(model: nn.Module) -> int | None:
    size = getattr(model, "block_size", None)
    return int(size) if size is not None else None


def fit_pair(prompt: Sequence[int], completion: Sequence[int], block_size: int | None,
             overflow: Overflow = "crop_prompt", index: int = 0) -> list[int]:
    """The prompt ids to score `completion` against: unchanged when the pair fits `block_size`,
    else left-cropped (overflow="crop_prompt") or refused (ContextOverflowError)."""
    prompt = list(prompt)
    if not prompt:
        raise ValueError(f"pair {index}: empty prompt; start it with at least one token")
    if block_size is None:
        return prompt
    fits = block_size + 1 - len(completion)  # the longest prompt that fits
    if len(prompt) <= fits:
        return prompt
    if overflow == "error" or fits < 1:
        what = ("the completion alone" if fits < 1 else "prompt + completion")
        raise ContextOverflowError(
            f"pair {index}: {what} does not fit the context: prompt {len(prompt)} + completion "
            f"{len(completion)} tokens, the model reads at most {block_size} + 1"
            + ("" if fits < 1 else " (overflow='crop_prompt' drops the prompt's oldest tokens)"))
    return prompt[len(prompt) - fits:]


def _score_batch(model: nn.Module, prompts: list[list[int]], completions: list[list[int]],
                 device: torch.device) -> Tensor:
    """Summed completion log-probs for one batch (rows in the given order)."""
    inputs = [p + c[:-1] for p, c in zip(prompts, completions, strict=True)]
    T = max(len(x) for x in inputs)
    B = len(inputs)
    idx = torch.zeros(B, T, dtype=torch.long, device=device)  # padding id 0: never attended to
    targets = torch.full((B, T), -100, dtype=torch.long, device=device)
    for row, (p, c, x) in enumerate(zip(prompts, completions, inputs, strict=True)):
        idx[row, :len(x)] = torch.tensor(x, dtype=torch.long, device=device)
        if c:
            # The logits at position len(p) - 1 + j predict completion token j.
            targets[row, len(p) - 1:len(p) - 1 + len(c)] = torch.tensor(c, dtype=torch.long, device=device)
    logits = model(idx)[0]
    scored = targets != -100
    # Only the completion positions go through the float32 log-softmax (the prompt can be long).
    picked = logits[scored].float()
    token_logp = -F.cross_entropy(picked, targets[scored], reduction="none")
    row_of = scored.nonzero()[:, 0]
    return torch.zeros(B, dtype=torch.float32, device=device).index_add(0, row_of, token_logp)


def completion_logprobs(model: nn.Module, prompts: Sequence[Sequence[int]],
                        completions: Sequence[Sequence[int]], *, batch_size: int | None = None,
                        overflow: Overflow = "crop_prompt") -> tuple[Tensor, Tensor]:
    """(summed log-prob of each completion's tokens given its prompt [B] float32, completion token
    counts [B] long), on the model's device; see the module docstring. An empty completion scores
    0.0 with count 0. Gradients flow when the caller has them enabled."""
    if len(prompts) != len(completions):
        raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be >= 1 (got {batch_size})")
    device = next(model.parameters()).device
    counts = torch.tensor([len(c) for c in completions], dtype=torch.long, device=device)
    if not prompts:
        return torch.zeros(0, dtype=torch.float32, device=device), counts
    block = _block_size(model)
    fitted = [fit_pair(p, c, block, overflow, i) for i, (p, c) in enumerate(zip(prompts, completions, strict=True))]
    comps = [list(c) for c in completions]
    todo = [i for i in range(len(comps)) if comps[i]]  # empty completions score 0 without a forward
    todo.sort(key=lambda i: len(fitted[i]) + len(comps[i]))
    size = batch_size or max(1, len(todo))
    parts: list[Tensor] = []
    for start in range(0, len(todo), size):
        rows = todo[start:start + size]
        parts.append(_score_batch(model, [fitted[i] for i in rows], [comps[i] for i in rows], device))
    logps = torch.zeros(len(comps), dtype=torch.float32, device=device)
    if parts:
        order = torch.tensor(todo, dtype=torch.long, device=device)
        # index_put keeps the autograd graph (an in-place write into a leaf-free zeros tensor).
        logps = logps.index_put((order,), torch.cat(parts))
    return logps, counts


def encode_pair(tokenizer: Any, prompt_messages: Sequence[Mapping[str, Any]], completion_text: str,
                ended: bool) -> tuple[list[int], list[int]]:
    """(prompt ids: the chat template with the generation prompt, completion ids: the reply's
    content, then the <|end|> id when `ended`). The reply may not hold special-token strings."""
    check_content("assistant", completion_text)
    prompt_ids = encode(tokenizer, prompt_messages, add_generation_prompt=True)
    completion_ids = list(tokenizer.encode(completion_text)) if completion_text else []
    if ended:
        end_id = (getattr(tokenizer, "special_tokens", None) or {}).get(END)
        if end_id is None:
            raise ValueError(f"the tokenizer has no {END} token; is it a chat tokenizer?")
        completion_ids.append(int(end_id))
    return prompt_ids, completion_ids
