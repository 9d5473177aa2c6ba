"""The fast strict SRT reading must give exactly the `srt` library grammar's cues, or step aside.

Random files built from canonical cues and the defects that trip a naive reader (extra blank lines,
digit-only text lines, stray spaces, other timestamp spellings, text before the first cue) are read
both ways; on real files the strict reading must also be the one taken for canonical ones.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from src.config.sections.clean_subs import SubsDecodeConfig
from src.data.subtitles.decode import decode_subtitle
from src.data.subtitles.srt_parse import (
    _EOL,
    _library_ms,
    _parse_strict,
    _parse_with_library,
    _stamps_ms,
)
from src.paths import shared_data_dir

_TEXT_LINES = ["Hello there.", "23.", "7", "- 5", " ", "  12  ", "-3", "Да, конечно!", "<i>ok</i>",
               "00:00:05,000 --> 00:00:06,000", "1.5", "x"]
_STAMPS = ["00:00:01,000", "00:00:01.5", "0:0:1,20", "00:00:01:000", "00:00:01", "01:02:03,4567"]
_SEPARATORS = ["\n\n", "\n\n", "\n\n", "\n\n\n", "\n\n\n\n", "\n", "\n \n", ""]


def _random_file(rnd: random.Random) -> str:
    """Half of the files have only canonical timings and index lines (defects in text and spacing)."""
    canonical = rnd.random() < 0.5
    parts = []
    if rnd.random() < 0.1:
        parts.append(rnd.choice(["\n", "  \n", "junk\n\n"]))
    for index in range(1, rnd.randint(1, 6) + 1):
        start, end = (_STAMPS[0], _STAMPS[0]) if canonical else (rnd.choice(_STAMPS), rnd.choice(_STAMPS))
        arrow = " --> " if canonical else rnd.choice([" --> ", "-->", " -> ", " - > "])
        tail = rnd.choice(["", "", " X1:1 X2:2", " "])
        lines = [rnd.choice(_TEXT_LINES) for _ in range(rnd.choice([0, 1, 1, 2, 3]))]
        head = f"{index}\n" if canonical else rnd.choice([f"{index}\n", "", f"{index} \n"])
        parts.append(head + start + arrow + end + tail + "".join("\n" + line for line in lines))
        parts.append(rnd.choice(_SEPARATORS))
    return "".join(parts)


def _library_or_none(text: str) -> list | None:
    try:
        return _parse_with_library(text)
    except ValueError:
        return None


def test_strict_reading_agrees_with_the_library_grammar() -> None:
    rnd = random.Random(20241123)
    taken = 0
    for _ in range(5000):
        text = _random_file(rnd)
        strict = _parse_strict(text)
        if strict is None:
            continue
        taken += 1
        assert strict == _library_or_none(text), repr(text)
    assert taken > 500  # the strict reading is actually exercised, not always declined


def test_strict_reading_cases() -> None:
    canonical = "1\n00:00:01,000 --> 00:00:02,500\nHi.\nThere.\n\n2\n00:00:03,000 --> 00:00:04,000\nBye.\n"
    cues = _parse_strict(canonical)
    assert cues is not None and [(c.index, c.start_ms, c.end_ms, c.text) for c in cues] == [
        (1, 1000, 2500, "Hi.\nThere."), (2, 3000, 4000, "Bye.")]
    assert cues == _parse_with_library(canonical)
    # A text line that reads as an index right before a timing: the library splits there; we defer.
    assert _parse_strict("1\n00:00:01,000 --> 00:00:02,000\nA\n7\n00:00:03,000 --> 00:00:04,000\nB\n") is None
    # Extra blank lines stay in the text, as the library keeps them.
    extra = "1\n00:00:01,000 --> 00:00:02,000\nA\n\n\n\n2\n00:00:03,000 --> 00:00:04,000\n\n\n\n"
    assert _parse_strict(extra) == _parse_with_library(extra)
    assert _parse_strict(extra)[0].text == "A\n\n"


def test_stamps_converted_like_the_library() -> None:
    fixed = ("00:00:01,000", "01:02:03.456", "99:59:59,999")
    assert _stamps_ms(fixed) == [_library_ms(s) for s in fixed]
    # Widths that add up to whole fixed stamps but are not: converted one by one.
    odd = ("00:00:01,0009", "9:00:02,000", "0:0:1,5", "00:00:01,000")
    assert _stamps_ms(odd) == [_library_ms(s) for s in odd] == [1000, 32_402_000, 1500, 1000]


@pytest.mark.real_data
def test_strict_reading_on_real_files() -> None:
    root = shared_data_dir() / "srt_real"
    if not root.is_dir():
        pytest.skip(f"{root} absent (../shared/data)")
    taken = 0
    for path in sorted(Path(root).glob("*.srt")):
        text = _EOL.sub("\n", decode_subtitle(path.read_bytes(), SubsDecodeConfig()).text).lstrip("\ufeff")
        strict = _parse_strict(text)
        if strict is not None:
            taken += 1
            assert strict == _parse_with_library(text), path.name
    assert taken >= 15  # most real files are canonical enough for the fast reading
