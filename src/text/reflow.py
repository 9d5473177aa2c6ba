"""Undo hard wrapping: lib.ru serves text wrapped at about 76 columns with indented paragraphs.

A document is reflowed only when it looks hard-wrapped: most of its lines are "full" (close to one
common width between `min_wrap_width` and `max_wrap_width`). Then a line joins the paragraph above
when the line above is full and this one is not indented deeper than the body. Short lines end a
paragraph, so verse (every line short), dialogue (indented) and headings keep their own lines.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# A line of rule characters only (----, ====, * * *): never joined with its neighbours.
_RULE_LINE = re.compile(r"^[\s\-=_*~.·•]+$")
_HYPHENATED_END = re.compile(r"[^\W\d_]-$")


@dataclass(frozen=True)
class WrapProfile:
    width: int  # the common full-line width (a high quantile of line lengths)
    full_from: int  # a line this long or longer is "full": the paragraph goes on below it
    body_indent: int  # indentation of continuation lines
    wrapped_share: float  # share of non-blank lines that are full


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def wrap_profile(lines: list[str], width_quantile: float, full_line_ratio: float) -> WrapProfile | None:
    lengths = sorted(len(line.rstrip()) for line in lines if line.strip())
    if not lengths:
        return None
    width = lengths[min(len(lengths) - 1, int(len(lengths) * width_quantile))]
    full_from = int(width * full_line_ratio)
    full = [line for line in lines if len(line.rstrip()) >= full_from and not _RULE_LINE.match(line)]
    # Continuation lines sit at the left margin; first lines of paragraphs are indented deeper
    # (and in a text of short paragraphs they are the majority, so the mode would mislead).
    body_indent = min((_indent(line) for line in full), default=0)
    return WrapProfile(width, full_from, body_indent, len(full) / len(lengths))


def reflow_hard_wrap(
    text: str,
    min_wrap_width: int,
    max_wrap_width: int,
    full_line_ratio: float,
    min_wrapped_share: float,
    min_lines: int,
    width_quantile: float,
) -> tuple[str, bool]:
    """One paragraph per line if `text` is hard-wrapped; returns (text, whether it was reflowed)."""
    lines = text.split("\n")
    if sum(1 for line in lines if line.strip()) < min_lines:
        return text, False
    profile = wrap_profile(lines, width_quantile, full_line_ratio)
    if (
        profile is None
        or not min_wrap_width <= profile.width <= max_wrap_width
        or profile.wrapped_share < min_wrapped_share
    ):
        return text, False
    out: list[str] = []
    paragraph: list[str] = []
    previous_full = False

    def flush() -> None:
        if paragraph:
            pieces = [paragraph[0]]
            for prev, part in zip(paragraph, paragraph[1:], strict=False):
                # "кое-" + "как": a hyphen closing a line after a letter joins without a space.
                pieces.append(part if _HYPHENATED_END.search(prev[-2:]) else " " + part)
            out.append("".join(pieces))
            paragraph.clear()

    for line in lines:
        stripped = line.strip()
        if not stripped or _RULE_LINE.match(line):
            flush()
            out.append(stripped)
            previous_full = False
            continue
        if paragraph and previous_full and _indent(line) <= profile.body_indent:
            paragraph.append(stripped)
        else:
            flush()
            paragraph.append(stripped)
        previous_full = len(line.rstrip()) >= profile.full_from
    flush()
    return "\n".join(out), True
