"""Pure functions that flag degenerate replies, for monitoring during training and for evaluation.

A loop is the failure a small chat model falls into most often: the same token or phrase over and
over ("да да да да", "я не знаю, я не знаю, я не знаю"). `repeated_run` finds the longest stretch of a
sequence that is one n-gram repeated back to back; `is_loop` applies the thresholds; `loop_rate` is
the share of replies that loop. They work on any sequence of hashable items (token ids, words).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

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
