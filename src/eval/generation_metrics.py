"""Figures of a set of sampled replies, for the eval stage's side-by-side table of chat models.

`reply_metrics` gives, for the replies a model sampled on a prompt set:
- `distinct_1`, `distinct_2`: distinct word uni/bigrams over all of them, pooled over the replies
  (diversity across the set; 1.0 = no word repeats anywhere);
- `repeated_ngram_rate`: the share of word trigrams that repeat an earlier trigram of the same
  reply (repetition inside a reply, also when it is not back to back);
- `loop_rate`, `canned_rate`, `markdown_wall_rate`, `end_of_turn_rate`: the failure detectors of
  src/eval/detectors.py through `failure_rates` (the KTO guard and kto_pairs use the same ones);
- `mean_length_tokens`, `mean_length_chars`.

Distinct-n and the repeated n-gram rate count words (src.eval.detectors.words), not token ids,
so that models with different tokenizers compare; the loop detector uses the token ids when given
(as the KTO guard does), the words otherwise.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

from src.eval.detectors import distinct_n, failure_rates, words

REPEAT_N = 3  # the n of repeated_ngram_rate: a repeated word trigram is a repeated phrase, not a "the"

KEYS = ("n", "distinct_1", "distinct_2", "repeated_ngram_rate", "loop_rate", "end_of_turn_rate",
        "mean_length_tokens", "mean_length_chars", "markdown_wall_rate", "canned_rate")


def repeated_ngram_rate(replies: Sequence[Sequence[Hashable]], n: int = REPEAT_N) -> float:
    """Of all n-grams of all replies, the share that already occurred earlier in the same reply
    (0.0 when there are none)."""
    total = repeated = 0
    for items in replies:
        seen: set[tuple] = set()
        for i in range(len(items) - n + 1):
            gram = tuple(items[i:i + n])
            repeated += gram in seen
            seen.add(gram)
            total += 1
    return repeated / total if total else 0.0


def reply_metrics(replies: Sequence[str], prompts: Sequence[str], *, ended: Sequence[bool],
                  n_tokens: Sequence[int], max_new_tokens: int,
                  token_ids: Sequence[Sequence[int]] | None = None,
                  thresholds: Mapping[str, Any] | None = None) -> dict[str, float]:
    """The figures of the module docstring (keys: KEYS) for `replies`, reply i answering prompts[i]
    (the text the canned detector compares with), ended[i] whether it closed its turn with <|end|>,
    n_tokens[i] its length in tokens. `thresholds`: the detectors' (DetectorConfig keys; defaults
    when None). Every rate is 0.0 for no replies."""
    n = len(replies)
    lengths = [len(prompts), len(ended), len(n_tokens)] + ([len(token_ids)] if token_ids is not None else [])
    if any(k != n for k in lengths):
        raise ValueError(f"{n} replies but {len(prompts)} prompts, {len(ended)} ended flags, {len(n_tokens)} "
                         f"token counts" + (f", {len(token_ids)} token id lists" if token_ids is not None else ""))
    texts = [r or "" for r in replies]
    reply_words = [words(t) for t in texts]
    tokens = [list(t) for t in token_ids] if token_ids is not None else reply_words
    rates = failure_rates(texts, list(prompts), ended=list(ended), tokens=tokens, max_new_tokens=max_new_tokens,
                          thresholds=thresholds)
    return {
        "n": n,
        "distinct_1": distinct_n(reply_words, 1),
        "distinct_2": distinct_n(reply_words, 2),
        "repeated_ngram_rate": repeated_ngram_rate(reply_words),
        "loop_rate": rates["loop_rate"],
        "end_of_turn_rate": rates["eot_rate"],
        "mean_length_tokens": sum(n_tokens) / n if n else 0.0,
        "mean_length_chars": sum(map(len, texts)) / n if n else 0.0,
        "markdown_wall_rate": rates["markdown_wall_rate"],
        "canned_rate": rates["canned_rate"],
    }
