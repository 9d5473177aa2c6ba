from __future__ import annotations

import pytest

from src.eval.detectors import RepeatedRun, is_loop, loop_rate, repeated_run


def test_repeated_run_finds_the_longest_periodic_stretch() -> None:
    items = list("xy") + list("abcabcabcab") + list("zz")
    assert repeated_run(items) == RepeatedRun(start=2, period=3, span=11)
    assert repeated_run(list("abcdef")) is None
    assert repeated_run([]) is None
    assert repeated_run([7, 7]) == RepeatedRun(0, 1, 2)


@pytest.mark.parametrize(("items", "expected"), [
    ("я не знаю, " * 3, True),                        # a clause three times over
    ("да " * 2, False),                               # twice is speech
    ("a" * 12, True),                                 # one token twelve times
    ("a" * 11, False),                                # under the span threshold
    ("ha ha ha", False),                              # short laughter is not a loop
    ("Он пришёл домой, сел и долго молчал.", False),
    ("abcd" * 3, True),                               # period 4, repeated 3 times, 12 items
])
def test_is_loop_on_characters(items: str, expected: bool) -> None:
    assert is_loop(list(items)) is expected


def test_is_loop_on_token_ids_with_thresholds() -> None:
    ids = [5, 9, 1, 2, 1, 2, 1, 2, 8]
    assert not is_loop(ids)
    assert is_loop(ids, min_repeats=3, min_span=6)
    assert not is_loop(ids, max_period=1, min_span=2, min_repeats=2)


def test_loop_rate_is_the_share_of_looping_replies() -> None:
    replies = [list("ok " * 10), list("fine, thanks"), [], list("no")]
    assert loop_rate(replies) == pytest.approx(0.25)
    assert loop_rate([]) == 0.0
