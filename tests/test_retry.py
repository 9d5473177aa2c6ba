"""src/retry: the one retry loop of the crawler and the REST client."""

from __future__ import annotations

import random

import pytest

from src.retry import Backoff, RetriesExhausted, RetryableFailure, call_with_retries


class Script:
    """An attempt function that plays a list of outcomes: exceptions are raised, values returned."""

    def __init__(self, *outcomes: object) -> None:
        self.outcomes = list(outcomes)
        self.calls: list[int] = []

    def __call__(self, n: int) -> object:
        self.calls.append(n)
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


def test_retries_until_success_sleeping_the_backoff() -> None:
    waits: list[float] = []
    attempt = Script(RetryableFailure("503"), RetryableFailure("reset"), "page")
    assert call_with_retries(attempt, 5, Backoff(0.5, 60.0), waits.append) == "page"
    assert attempt.calls == [0, 1, 2] and waits == [0.5, 1.0]


def test_the_backoff_is_capped_and_a_longer_server_wait_wins() -> None:
    backoff = Backoff(1.0, 4.0)
    assert [backoff.wait_s(n) for n in range(5)] == [1.0, 2.0, 4.0, 4.0, 4.0]
    assert backoff.wait_s(0, RetryableFailure("429", retry_after_s=7.0)) == 7.0
    assert backoff.wait_s(2, RetryableFailure("429", retry_after_s=0.0)) == 4.0


def test_jitter_stretches_within_its_fraction() -> None:
    backoff = Backoff(1.0, 60.0, jitter=0.25, rng=random.Random(3))
    waits = [backoff.wait_s(2) for _ in range(100)]
    assert all(4.0 <= w <= 5.0 for w in waits) and len(set(waits)) > 50


def test_exhaustion_reports_the_last_failure_and_never_sleeps_after_the_last_attempt() -> None:
    waits: list[float] = []
    attempt = Script(*(RetryableFailure(f"HTTP 50{i}", status=500 + i) for i in range(3)))
    with pytest.raises(RetriesExhausted) as info:
        call_with_retries(attempt, 3, Backoff(0.1, 1.0), waits.append)
    assert info.value.attempts == 3 and info.value.last.status == 502
    assert str(info.value) == "HTTP 502 (after 3 attempts)"
    assert len(waits) == 2


def test_other_errors_stop_at_once() -> None:
    waits: list[float] = []
    attempt = Script(RetryableFailure("503"), PermissionError("401"), "never")
    with pytest.raises(PermissionError):
        call_with_retries(attempt, 5, Backoff(0.1, 1.0), waits.append)
    assert attempt.calls == [0, 1] and waits == [0.1]


def test_at_least_one_attempt() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        call_with_retries(Script("x"), 0, Backoff(0.1, 1.0))
