"""The collapse guard's verdict (guard_problems) on hand-made evaluations against a step-0 baseline."""

from __future__ import annotations

import pytest

from src.training.kto_guard import GuardSettings, distinct_n, guard_problems

GUARD = GuardSettings(enabled=True, min_desirable_drift=-5.0, max_loop_rate_rise=0.25, max_eot_rate_drop=0.25,
                      max_distinct2_drop=0.25, max_length_ratio=2.0, max_canned_rate_rise=0.25,
                      max_markdown_wall_rate_rise=0.25)
BASELINE = {"desirable_drift": 0.0, "loop_rate": 0.0, "canned_rate": 0.125, "markdown_wall_rate": 0.0,
            "eot_rate": 1.0, "distinct2": 0.9, "mean_reply_tokens": 10.0}


def test_a_healthy_evaluation_passes():
    now = {**BASELINE, "desirable_drift": 1.5, "canned_rate": 0.25, "loop_rate": 0.125, "eot_rate": 0.875}
    assert guard_problems(now, BASELINE, GUARD) == []


@pytest.mark.parametrize(("change", "named"), [
    ({"desirable_drift": -6.0}, "desirable drift"),
    ({"loop_rate": 0.5}, "loop rate"),
    ({"canned_rate": 0.5}, "canned rate"),
    ({"markdown_wall_rate": 0.375}, "markdown-wall rate"),
    ({"eot_rate": 0.5}, "end-of-turn rate"),
    ({"distinct2": 0.5}, "distinct-2"),
    ({"mean_reply_tokens": 25.0}, "mean reply length"),
    ({"mean_reply_tokens": 4.0}, "mean reply length"),
])
def test_each_signal_trips_the_guard_by_its_margin(change, named):
    problems = guard_problems({**BASELINE, **change}, BASELINE, GUARD)
    assert len(problems) == 1 and problems[0].startswith(named)


def test_a_wider_margin_lets_the_same_rise_pass():
    now = {**BASELINE, "canned_rate": 0.5, "markdown_wall_rate": 0.375}
    wide = GuardSettings(**{**GUARD.__dict__, "max_canned_rate_rise": 0.5, "max_markdown_wall_rate_rise": 0.5})
    assert guard_problems(now, BASELINE, wide) == []


def test_a_metric_missing_on_either_side_is_not_checked():
    assert guard_problems({"canned_rate": 1.0}, {"loop_rate": 0.0}, GUARD) == []


def test_distinct_n():
    assert distinct_n([[1, 2, 1, 2], [3]], 2) == pytest.approx(2 / 3)
    assert distinct_n([[1]], 2) == 0.0
