"""The normalizer's fast steps against straightforward reference versions of the same rules.

The module's patterns are written for speed (a literal first character, substring checks before a
pass); the references below state each rule the plain way, with look-behinds, and every step must
give the same output on random text and on real Russian prose.
"""

from __future__ import annotations

import random
import re

import pytest

from src.paths import shared_data_dir
from src.text.normalize import (
    collapse_whitespace,
    normalize_dashes,
    normalize_ellipsis,
    to_nfc,
    unify_line_breaks,
    yo_to_e,
)


def _dashes_reference(text: str) -> str:
    text = re.sub(r"^([ \t]*)(?:--?|–|—)(?=[ \t])", r"\1—", text, flags=re.MULTILINE)
    text = re.sub(r"(?<=[ \t])(?:--?|–|—)(?=[ \t]|$)", "—", text, flags=re.MULTILINE)
    text = re.sub(r"(?<=[.,;:!?…])(?:--?|–)(?=[ \t])", " —", text)
    text = re.sub(r"(?<=\d)--(?=\d)", "–", text)
    return re.sub(r"(?<!-)--(?!-)", "—", text)


def _ellipsis_reference(text: str) -> str:
    return re.sub(r"(?<!\.)\.\.\.(?!\.)|(?<!\.)\. \. \.(?! \.)", "…", text)


def _whitespace_reference(text: str, max_blank_lines: int) -> str:
    text = re.sub(r" {2,}", " ", text)
    text = re.sub(r"^ +| +$", "", text, flags=re.MULTILINE)
    text = re.sub(rf"\n{{{max_blank_lines + 2},}}", "\n" * (max_blank_lines + 1), text)
    return text.strip("\n")


def _check(text: str) -> None:
    assert normalize_dashes(text) == _dashes_reference(text), text
    assert normalize_ellipsis(text) == _ellipsis_reference(text), text
    assert yo_to_e(text) == text.translate(str.maketrans("ёЁ", "еЕ")), text
    for blank in (0, 1, 2):
        assert collapse_whitespace(text, blank) == _whitespace_reference(text, blank), text


_PIECES = list(" \t\n-–—.,;:!?…ёЁа1") + ["  ", "--", "---", "...", ". . .", "\n\n\n", "1863--1869"]


def test_steps_match_references_on_random_text() -> None:
    rnd = random.Random(5)
    for _ in range(20000):
        _check("".join(rnd.choice(_PIECES) for _ in range(rnd.randint(0, 24))))


@pytest.mark.real_data
def test_steps_match_references_on_real_prose() -> None:
    root = shared_data_dir() / "corpus_ru"
    if not root.is_dir():
        pytest.skip(f"{root} absent (../shared/data)")
    files = sorted(p for p in root.rglob("*.txt") if p.is_file())[:6]
    assert files, f"no .txt under {root}"
    for path in files:
        text = path.read_bytes()[:300_000].decode("utf-8", errors="replace")
        _check(text)
        _check(yo_to_e(unify_line_breaks(to_nfc(text))))  # what the dash step sees in the chain
