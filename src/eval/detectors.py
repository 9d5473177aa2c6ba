"""Pure functions that flag degenerate replies, for monitoring during training and for evaluation.

A loop is the failure a small chat model falls into most often: the same token or phrase over and
over ("да да да да", "я не знаю, я не знаю, я не знаю"). `repeated_run` finds the longest stretch of a
sequence that is one n-gram repeated back to back; `is_loop` applies the thresholds; `loop_rate` is
the share of replies that loop. They work on any sequence of hashable items (token ids, words).

The failure detectors below (`detect_loop`, `detect_canned`, `detect_markdown_wall`,
`detect_no_end`) each flag one way a chat model's reply goes wrong; the KTO pair collection keeps a
sampled reply as undesirable only when one of them fires; `failure_rates` gives their rates over a
set of replies (the KTO collapse guard, evaluation).
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

# Defaults: a period of up to 16 items, repeated at least 3 times back to back, over at least 12
# items in all ("ha ha ha" is speech; the same clause three times over, or one token 12 times, is not).
MAX_PERIOD = 16
MIN_REPEATS = 3
MIN_SPAN = 12


@dataclass(frozen=True)
class RepeatedRun:
    start: int  # index of the run's first item
    period: int  # length of the repeated n-gram
    span: int  # items covered by the run (a partial last repetition included)

    @property
    def repeats(self) -> float:
        return self.span / self.period


def repeated_run(items: Sequence[Hashable], max_period: int = MAX_PERIOD) -> RepeatedRun | None:
    """The longest run where an n-gram (n <= max_period) repeats back to back at least twice; None
    when there is none. Ties go to the shortest period, then the earliest start. O(len x max_period)."""
    best: RepeatedRun | None = None
    n = len(items)
    for period in range(1, min(max_period, n // 2) + 1):
        matched = 0  # consecutive i with items[i] == items[i - period]
        for i in range(period, n + 1):
            if i < n and items[i] == items[i - period]:
                matched += 1
                continue
            span = matched + period
            if matched >= period and (best is None or span > best.span):
                best = RepeatedRun(i - span, period, span)
            matched = 0
    return best


def is_loop(items: Sequence[Hashable], max_period: int = MAX_PERIOD, min_repeats: int = MIN_REPEATS,
            min_span: int = MIN_SPAN) -> bool:
    """True when some n-gram (n <= max_period) repeats back to back at least `min_repeats` times
    over at least `min_span` items."""
    n = len(items)
    for period in range(1, min(max_period, n // 2) + 1):
        need = max(min_span, min_repeats * period) - period  # matches the run needs
        matched = 0
        for i in range(period, n):
            matched = matched + 1 if items[i] == items[i - period] else 0
            if matched >= need:
                return True
    return False


def loop_rate(replies: Sequence[Sequence[Hashable]], **thresholds: int) -> float:
    """The share of `replies` that loop (see `is_loop`); 0.0 for no replies."""
    if not replies:
        return 0.0
    return sum(is_loop(r, **thresholds) for r in replies) / len(replies)


# --- failure detectors for sampled replies (pair collection for KTO, evaluation) --------------------
#
# Each takes a reply (and what it needs besides) and returns a Detection: a score, and whether the
# reply trips the detector under the given thresholds. The thresholds' defaults live in
# src/config/sections/detectors.py (DetectorConfig), which the stages pass through.


class Detection(NamedTuple):
    score: float
    flagged: bool


WORD = re.compile(r"\w+|[^\w\s]")
CONTENT_WORD = re.compile(r"[^\W\d_]{3,}")  # letters only, at least 3 of them
STEM_CHARS = 5  # words sharing their first 5 letters count as one ("бизнес", "бизнеса", "бизнесу")


def words(text: str) -> list[str]:
    """Lowercased words and punctuation marks, for detectors that work on text alone."""
    return WORD.findall(text.lower())


def compression_ratio(text: str) -> float:
    """UTF-8 bytes over zlib-compressed bytes: about 1.5-2.7 for natural Russian or English prose of
    100-1600 characters (measured on the real classics corpus), much higher for repetition. 0.0 for
    empty text."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data, 9)) if data else 0.0


def detect_loop(text: str, tokens: Sequence[Hashable] | None = None, *, max_period: int = MAX_PERIOD,
                min_repeats: int = MIN_REPEATS, min_span: int = MIN_SPAN,
                max_compression: float = 3.5) -> Detection:
    """A reply that repeats itself. Score: the compression ratio. Flagged when an n-gram of `tokens`
    (token ids; the reply's words when None) repeats back to back (see `is_loop`), or the text
    compresses better than `max_compression` (repetition with variation: "и он, и она, и он ...")."""
    ratio = compression_ratio(text)
    items = words(text) if tokens is None else tokens
    looped = is_loop(items, max_period, min_repeats, min_span)
    return Detection(ratio, looped or ratio >= max_compression)


STOP_WORDS = frozenset("""
и в во не что он на я с со как а то все всё она так его но да ты к у же вы за бы по только ее её мне
было вот от меня еще ещё нет о из ему теперь когда даже ну вдруг ли если уже или ни быть был него до
вас нибудь опять уж вам ведь там потом себя ничего ей может они тут где есть надо ней для мы тебя их
чем была сам чтоб без будто чего раз тоже себе под будет ж тогда кто этот того потому этого какой
совсем ним здесь этом один почти мой тем чтобы нее неё сейчас были куда зачем всех никогда можно при
наконец два об другой хоть после над больше тот через эти нас про всего них какая много разве три эту
моя впрочем хорошо свою этой перед иногда лучше чуть том нельзя такой им более всегда конечно всю между
это очень также просто нужно можете могу вопрос ответ пожалуйста спасибо давайте важно следует
the a an and or but if then so of to in on at by for with from as is are was were be been being it its
this that these those i you he she we they me him her us them my your his our their what which who
whom how why when where there here not no yes do does did have has had can could will would should may
might must shall just very also about into than too more most some any all each other such only own
same again further once up down out over under please thanks thank sure okay ok well let lets
""".split())


def content_stems(text: str) -> set[str]:
    """The reply's content words (letters only, 3+ long, not a stop word), cut to their first
    STEM_CHARS letters so that inflected forms match (ё read as е)."""
    found = CONTENT_WORD.findall(text.lower().replace("ё", "е"))
    return {w[:STEM_CHARS] for w in found if w not in STOP_WORDS}


def detect_canned(reply: str, prompt: str, *, max_words: int = 40, max_overlap: float = 0.0) -> Detection:
    """A short generic template reply ("1. Соберите информацию 2. Проанализируйте данные") that
    ignores what was asked. Score: the share of the reply's content words that also occur in
    `prompt` (the conversation's text; 0.0 when the reply has none). Flagged when the reply has at
    most `max_words` words and that share is at most `max_overlap`."""
    reply_stems = content_stems(reply)
    shared = len(reply_stems & content_stems(prompt)) / len(reply_stems) if reply_stems else 0.0
    n_words = sum(1 for w in words(reply) if w[0].isalnum())
    return Detection(shared, n_words <= max_words and shared <= max_overlap)


MARKDOWN_LINE = re.compile(
    r"""^\s*(\#{1,6}\s           # a header
           |[-*+•]\s             # a bullet (not the em dash of Russian dialogue)
           |\d{1,3}[.)]\s        # a numbered item
           |```|~~~              # a code fence
           |>\s                  # a quote block
           |\|.*\|\s*$           # a table row
           )|\*\*\S.*?\*\*|__\S.*?__""", re.VERBOSE)


def markdown_share(text: str) -> float:
    """The share of non-blank lines that are markdown structure: headers, list items, bold, code
    fences or lines inside a code block, quote blocks, table rows. 0.0 for blank text."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return 0.0
    marked, in_code = 0, False
    for line in lines:
        fence = line.lstrip().startswith(("```", "~~~"))
        if fence or in_code or MARKDOWN_LINE.search(line):
            marked += 1
        if fence:
            in_code = not in_code
    return marked / len(lines)


def detect_markdown_wall(text: str, *, min_share: float = 0.3, min_chars: int = 300) -> Detection:
    """A long tutorial-style answer of headers, lists and bold ("### 1. Понимание темы ..."). Score:
    `markdown_share`. Flagged when it is at least `min_share` and the reply has at least `min_chars`
    characters (a short list can be the right answer)."""
    share = markdown_share(text)
    return Detection(share, share >= min_share and len(text) >= min_chars)


def detect_no_end(ended: bool, n_tokens: int, max_new_tokens: int) -> Detection:
    """A reply that never closed its turn: cut at the token limit (or the context), or stopped on
    another special token, without <|end|>. Score: the share of `max_new_tokens` used."""
    return Detection(n_tokens / max_new_tokens if max_new_tokens > 0 else 0.0, not ended)


FAILURES = ("loop", "canned", "markdown_wall", "no_end")


def detect_failures(reply: str, prompt: str, *, ended: bool, n_tokens: int, max_new_tokens: int,
                    tokens: Sequence[Hashable] | None = None,
                    thresholds: Mapping[str, Any] | None = None) -> dict[str, Detection]:
    """Every detector on one reply, by name (FAILURES). `thresholds`: the keys of DetectorConfig
    (src/config/sections/detectors.py); missing keys take the functions' defaults."""
    t = dict(thresholds or {})

    def pick(prefix: str) -> dict[str, Any]:
        return {k[len(prefix):]: v for k, v in t.items() if k.startswith(prefix)}

    return {
        "loop": detect_loop(reply, tokens, **pick("loop_")),
        "canned": detect_canned(reply, prompt, **pick("canned_")),
        "markdown_wall": detect_markdown_wall(reply, **pick("markdown_")),
        "no_end": detect_no_end(ended, n_tokens, max_new_tokens),
    }


def distinct_n(replies: Sequence[Sequence[Hashable]], n: int = 2) -> float:
    """Distinct n-grams over all n-grams of all replies (1.0 = no n-gram repeats; 0.0 when none)."""
    grams = [tuple(r[i:i + n]) for r in replies for i in range(len(r) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def failure_rates(replies: Sequence[str], prompts: Sequence[str], *, ended: Sequence[bool],
                  tokens: Sequence[Sequence[Hashable]], max_new_tokens: int,
                  thresholds: Mapping[str, Any] | None = None) -> dict[str, float]:
    """The share of `replies` that each detector flags (`detect_failures`), as `<failure>_rate` for
    every name in FAILURES, plus `eot_rate` (1 - no_end_rate: replies closed by <|end|>). Reply i
    answers prompts[i], ended[i] says whether it closed its turn, tokens[i] are its ids. All 0.0
    for no replies (eot_rate too: nothing ended)."""
    if not len(replies) == len(prompts) == len(ended) == len(tokens):
        raise ValueError(f"{len(replies)} replies, {len(prompts)} prompts, {len(ended)} ended flags and "
                         f"{len(tokens)} token lists must be as many")
    counts = dict.fromkeys(FAILURES, 0)
    for reply, prompt, done, ids in zip(replies, prompts, ended, tokens, strict=True):
        found = detect_failures(reply, prompt, ended=done, n_tokens=len(ids), max_new_tokens=max_new_tokens,
                                tokens=ids, thresholds=thresholds)
        for name, d in found.items():
            counts[name] += int(d.flagged)
    n = len(replies)
    rates = {f"{name}_rate": (c / n if n else 0.0) for name, c in counts.items()}
    rates["eot_rate"] = 1.0 - rates["no_end_rate"] if n else 0.0
    return rates
