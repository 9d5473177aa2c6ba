"""The subtitle cleaner's shortcuts give exactly what the plain computation gives.

Each shortcut (lookup-table letter counts, a cheaper pre-filter for foreign letters, the per-cue
fast path that skips the per-line rules) is checked against the computation it replaces, on random
input built to hit the cases the shortcut must send the slow way.
"""

from __future__ import annotations

import random
import re
from collections import Counter

import pytest

from src.config.sections.clean_subs import SubsFluffRules
from src.data.subtitles import fluff
from src.data.subtitles.charcount import CharClass, bmp_points
from src.data.subtitles.fluff import FluffPatterns, clean_cues, dominant_script, upper_ratio
from src.data.subtitles.langid import _SCRIPTS, script_counts

# Letters of several scripts and cases, digits, punctuation, a lone surrogate and an emoji.
_CHARS = list("aZßİıÿ÷×ÀÞЁёЖжІіЎўΩω漢ア한ش5²½ _-.!?♪\"'«»:\n") + ["\ud800", "😀"]


def _random_text(rnd: random.Random, n: int) -> str:
    return "".join(rnd.choice(_CHARS) for _ in range(rnd.randint(0, n)))


def test_char_class_counts_match_the_regex() -> None:
    rnd = random.Random(7)
    for pattern in (*(rx for _, rx in _SCRIPTS), fluff._UPPER, fluff._LOWER, fluff._LETTERS):
        counter = CharClass(pattern)
        for _ in range(300):
            text = _random_text(rnd, 40)
            assert counter.count(text, bmp_points(text)) == sum(map(len, pattern.findall(text))), text


def test_bmp_points_declines_beyond_the_bmp() -> None:
    assert bmp_points("ab😀") is None
    assert bmp_points("a\ud800b").tolist() == [0x61, 0xD800, 0x62]


def test_script_checks_match_the_regex_versions() -> None:
    rnd = random.Random(11)
    for _ in range(300):
        text = _random_text(rnd, 60)
        upper = sum(map(len, fluff._UPPER.findall(text)))
        lower = sum(map(len, fluff._LOWER.findall(text)))
        assert upper_ratio(text) == (upper / (upper + lower) if upper + lower else 0.0)
        assert script_counts(text) == {name: sum(map(len, rx.findall(text))) for name, rx in _SCRIPTS}
        counts = {name: sum(map(len, own.findall(text))) for name, (own, _) in fluff._SCRIPT_RX.items()}
        counts["other"] = sum(map(len, fluff._LETTERS.findall(text))) - sum(counts.values())
        best = max(counts, key=lambda k: counts[k])
        assert dominant_script(text) == (best if counts[best] else "other")


@pytest.mark.parametrize("script", sorted(fluff._SCRIPT_RX))
def test_outside_letter_candidates_cover_the_exact_class(script: str) -> None:
    other = fluff._SCRIPT_RX[script][1]
    candidates = fluff._OUTSIDE_CANDIDATES[script]
    for cp in range(fluff._SCRIPT_SCAN_LIMIT):  # exact below the limit
        assert (candidates.match(chr(cp)) is None) == (other.match(chr(cp)) is None), hex(cp)
    for cp in range(fluff._SCRIPT_SCAN_LIMIT, 0x110000, 97):  # a candidate from there on
        assert candidates.match(chr(cp)) is not None, hex(cp)


_CUE_LINES = [
    "Hello there.", "  padded line  ", "", "   ", "WELCOME TO THE SHOW", "ВНИМАНИЕ ВСЕМ ПАССАЖИРАМ",
    "...", "* * *", "♪ la la ♪", "# Humming #", "\"Yesterday\" playing", "JERRY: Hi.", "- Mom: no!",
    "Visit www.example.com", "00:00:01,000 --> 00:00:02,000", "你好 你好 你好", "Да, конечно.",
    "ok 你好", "i'm here", "ÀÉÎ", "__", "123", "ﬁne", "Straße", "ΑΒΓΔΕΖΗΘ",
]


def _random_cues(rnd: random.Random) -> list[str]:
    return ["\n".join(rnd.choice(_CUE_LINES) for _ in range(rnd.randint(1, 3)))
            for _ in range(rnd.randint(1, 12))]


def test_cue_fast_path_matches_the_per_line_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    """With a pre-filter that flags every line, every cue takes the per-line path: same result."""
    pat = FluffPatterns.build(SubsFluffRules())
    rnd = random.Random(3)
    cases = [(_random_cues(rnd), rnd.random() < 0.7, rnd.choice(["latin", "cyrillic", "other"]))
             for _ in range(400)]
    fast = []
    for texts, mixed, script in cases:
        counts: Counter[str] = Counter()
        fast.append((clean_cues(texts, pat, counts, mixed, script), counts))
    monkeypatch.setattr(fluff, "_NO_SURE_LOWER_LINE", re.compile(r"\n[^\n]*"))
    for (texts, mixed, script), expected in zip(cases, fast, strict=True):
        counts = Counter()
        assert (clean_cues(texts, pat, counts, mixed, script), counts) == expected, texts
