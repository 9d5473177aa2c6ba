"""Value checks for config sections, run by `load_config` after the type checks.

A section's schema class may define `problems(values: Mapping) -> list[tuple[key, message]]`;
`load_config` calls it on the section's values and fails with the first problem as one line naming
the full key (`params.yaml: bad config value 'model.n_layer': must be >= 1, got -2`). The helpers
below build the per-field part; cross-field rules are written out in each section.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

Check = Callable[[Any], str | None]  # a problem description, or None when the value is fine


def at_least(low: float) -> Check:
    return lambda v: None if v >= low else f"must be >= {low}"


def above(low: float) -> Check:
    return lambda v: None if v > low else f"must be > {low}"


def within(low: float, high: float, high_open: bool = False) -> Check:
    """low <= v <= high (or < high with `high_open`)."""
    bracket = ")" if high_open else "]"

    def check(v: Any) -> str | None:
        ok = low <= v and (v < high if high_open else v <= high)
        return None if ok else f"must be in [{low}, {high}{bracket}"
    return check


def one_of(*choices: Any) -> Check:
    return lambda v: None if v in choices else f"must be one of {list(choices)}"


def either(value: Any, check: Check) -> Check:
    """`value` itself (a sentinel such as -1 = all devices) or anything `check` accepts."""
    def combined(v: Any) -> str | None:
        problem = check(v)
        return None if v == value or problem is None else f"{problem} (or {value!r})"
    return combined


def field_problems(values: Mapping[str, Any], checks: Mapping[str, Check]) -> list[tuple[str, str]]:
    out = []
    for key, check in checks.items():
        if key in values and values[key] is not None:
            problem = check(values[key])
            if problem:
                out.append((key, f"{problem}, got {values[key]!r}"))
    return out
