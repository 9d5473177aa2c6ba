"""Repair Cyrillic text that was decoded with the wrong codec.

Text read as cp1251 when it was koi8-r (or UTF-8 read as cp1251/latin-1, ...) is still valid Unicode,
so nothing downstream notices. We undo one wrong decoding by re-encoding with the codec that was
wrongly used and decoding with the right one, and keep the candidate whose letters look most like
Russian: mostly lowercase Cyrillic, rich in the most frequent letters, few stray Latin-1/graphic signs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# (codec the text was wrongly decoded with, codec it really was in): the confusions seen on the
# Russian web (lib.ru alone served koi8-r, cp1251 and utf-8 versions of the same page).
CODEC_CONFUSIONS: tuple[tuple[str, str], ...] = (
    ("cp1251", "koi8-r"),
    ("koi8-r", "cp1251"),
    ("cp1251", "utf-8"),
    ("latin-1", "utf-8"),
    ("cp1252", "utf-8"),
    ("latin-1", "cp1251"),
    ("cp1252", "cp1251"),
    ("latin-1", "koi8-r"),
    ("koi8-r", "utf-8"),
    ("cp866", "cp1251"),
)

_CYRILLIC = re.compile(r"[\u0400-\u04ff]")
_LOWER_RU = re.compile(r"[а-яё]")
# The eight most frequent Russian letters cover about half of running text.
_FREQUENT_RU = re.compile(r"[оеаинтср]")
_FREQUENT_SHARE = 0.45
# Signs that hardly occur in Russian prose but fill mojibake: Latin-1 letters, box drawing,
# cp1251's rare upper half (Ђ, Ѓ, ‚, ѓ, „, †, ‡, €, ‰, Љ, ‹, Њ, Ќ, Ћ, Џ, ђ, љ, ›, њ, ќ, ћ, џ, Ў, ў, Ј, ¤, Ґ).
_ODD = re.compile(r"[\u00c0-\u00ff\u2500-\u257f\u0402\u0403\u201a\u0453\u2020\u2021\u20ac\u2030"
                  r"\u0409\u2039\u040a\u040c\u040b\u040f\u0452\u0459\u203a\u045a\u045c\u045b\u045f"
                  r"\u040e\u045e\u0408\u00a4\u0490]")
_LETTER = re.compile(r"[^\W\d_]")
# koi8-r's ё (0xA3) shown through cp1251 is "Ј"; lib.ru pages converted by table keep it inside words.
_STRAY_YO = re.compile(r"(?<=[а-я])Ј|Ј(?=[а-я])")


@dataclass(frozen=True)
class MojibakeFix:
    text: str
    wrong_codec: str | None  # None: the text was kept as given
    true_codec: str | None
    score_before: float
    score_after: float


def russian_plausibility(text: str) -> float:
    """0..1: how much `text` looks like correctly decoded Russian (0 for text with no Cyrillic)."""
    letters = len(_LETTER.findall(text))
    cyrillic = len(_CYRILLIC.findall(text))
    if not letters or not cyrillic:
        return 0.0
    lower_share = len(_LOWER_RU.findall(text)) / cyrillic
    frequent_share = min(1.0, len(_FREQUENT_RU.findall(text)) / cyrillic / _FREQUENT_SHARE)
    odd_share = len(_ODD.findall(text)) / letters
    return max(0.0, (cyrillic / letters) * lower_share * frequent_share - odd_share)


def _redecode(text: str, wrong: str, true: str) -> str | None:
    try:
        return text.encode(wrong).decode(true)
    except (UnicodeEncodeError, UnicodeDecodeError):
        return None


def repair_mojibake(text: str, sample_chars: int, min_gain: float, min_letters: int = 40) -> MojibakeFix:
    """Undo one wrong decoding when a candidate is clearly (by `min_gain`) more Russian than `text`.

    Texts with fewer than `min_letters` letters are left alone: a word or two says nothing reliable.
    """
    sample = text[:sample_chars]
    before = russian_plausibility(sample)
    if len(_LETTER.findall(sample)) < min_letters:
        return MojibakeFix(repair_stray_yo(text), None, None, before, before)
    best: tuple[float, str, str] | None = None
    for wrong, true in CODEC_CONFUSIONS:
        candidate = _redecode(sample, wrong, true)
        if candidate is None:
            continue
        score = russian_plausibility(candidate)
        if score >= before + min_gain and (best is None or score > best[0]):
            best = (score, wrong, true)
    if best is not None:
        repaired = _redecode(text, best[1], best[2])
        if repaired is not None:
            return MojibakeFix(repaired, best[1], best[2], before, best[0])
    return MojibakeFix(repair_stray_yo(text), None, None, before, before)


def repair_stray_yo(text: str) -> str:
    """"вЈдро" -> "вёдро": the koi8-r ё byte left untranslated by a koi8 -> cp1251 table."""
    return _STRAY_YO.sub("ё", text) if "Ј" in text else text
