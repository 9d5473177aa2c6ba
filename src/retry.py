"""One retry loop for every network client (the lib.ru crawler, the OpenSubtitles REST client).

An attempt either returns its result, raises `RetryableFailure` (a 5xx, a timeout, a reset
connection, a truncated body, a 429), or raises anything else, which ends the call at once (a
401, a spent quota). Between attempts the loop sleeps the exponential backoff, or longer when the
server asked for a longer wait (Retry-After). When the attempts run out, `RetriesExhausted` carries
the last failure and the number of attempts made.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")


class RetryableFailure(Exception):
    """An attempt that failed in a way a later attempt may not: retry after a wait.

    `retry_after_s`: the wait the server asked for (a 429's Retry-After), if any.
    `status`: the HTTP status that failed, None for network errors.
    """

    def __init__(self, reason: str, retry_after_s: float | None = None,
                 status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after_s = retry_after_s
        self.status = status


class RetriesExhausted(Exception):
    def __init__(self, last: RetryableFailure, attempts: int) -> None:
        super().__init__(f"{last.reason} (after {attempts} attempts)")
        self.last = last
        self.attempts = attempts


@dataclass
class Backoff:
    """Wait `base_s * 2**attempt`, at most `max_s`, stretched by up to `jitter` (a fraction) at random.

    A server's requested wait counts when it is longer (callers cap or refuse it before: how long
    a wait is acceptable is their policy). Jitter spreads threads that failed together.
    """

    base_s: float
    max_s: float
    jitter: float = 0.0
    rng: random.Random = field(default_factory=lambda: random.Random(0))

    def wait_s(self, attempt: int, failure: RetryableFailure | None = None) -> float:
        delay = min(self.max_s, self.base_s * (2 ** attempt))
        if failure is not None and failure.retry_after_s is not None:
            delay = max(delay, failure.retry_after_s)
        if self.jitter:
            delay *= 1.0 + self.rng.random() * self.jitter
        return delay


def call_with_retries(
    attempt: Callable[[int], T],
    max_attempts: int,
    backoff: Backoff,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """`attempt(n)` for n = 0, 1, ... until it returns, raises a non-retryable error, or
    `max_attempts` attempts have failed (then `RetriesExhausted`). No sleep after the last one."""
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be at least 1, not {max_attempts}")
    for n in range(max_attempts):
        try:
            return attempt(n)
        except RetryableFailure as failure:
            if n + 1 == max_attempts:
                raise RetriesExhausted(failure, max_attempts) from failure
            sleep(backoff.wait_s(n, failure))
    raise AssertionError("unreachable")  # the loop returns or raises
