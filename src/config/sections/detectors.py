"""Thresholds of the reply failure detectors (src/eval/detectors.py), shared by every stage that
flags replies (kto_pairs; evaluation)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from src.config.checks import above, at_least, field_problems, within


@dataclass
class DetectorConfig:
    # loop: an n-gram of up to loop_max_period tokens repeated back to back loop_min_repeats times
    # over at least loop_min_span tokens, or a zlib compression ratio of at least loop_max_compression
    # (natural prose of 100-1600 characters measures 1.5-2.7)
    loop_max_period: int = 16
    loop_min_repeats: int = 3
    loop_min_span: int = 12
    loop_max_compression: float = 3.5
    # canned: at most canned_max_words words, and at most canned_max_overlap of its content words
    # (stems) occur in the prompt
    canned_max_words: int = 40
    canned_max_overlap: float = 0.0
    # markdown wall: at least markdown_min_share of the non-blank lines are headers, list items,
    # bold, code or table rows, in a reply of at least markdown_min_chars characters
    markdown_min_share: float = 0.3
    markdown_min_chars: int = 300

    @staticmethod
    def problems(p: Mapping[str, Any]) -> list[tuple[str, str]]:
        return field_problems(p, {
            "loop_max_period": at_least(1), "loop_min_repeats": at_least(2), "loop_min_span": at_least(2),
            "loop_max_compression": above(0), "canned_max_words": at_least(0),
            "canned_max_overlap": within(0, 1), "markdown_min_share": within(0, 1),
            "markdown_min_chars": at_least(0)})
