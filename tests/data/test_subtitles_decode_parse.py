"""Encodings and SRT parsing defects, one test per defect."""

from __future__ import annotations

import codecs

import pytest

from src.config.sections.clean_subs import SubsDecodeConfig, SubsParseConfig
from src.data.subtitles.decode import UndecodableError, decode_subtitle
from src.data.subtitles.srt_parse import parse_subtitle, parse_timing
from tests.data.subtitle_fixtures import srt

RU = "Привет! Как дела? Всё хорошо, спасибо. Мы едем на дачу в субботу, возьми с собой чай."
TEXT = srt((1000, 2000, RU), (2500, 4000, "Это второй титр, и он тоже по-русски."))


@pytest.mark.parametrize(
    ("data", "encoding"),
    [
        (codecs.BOM_UTF8 + TEXT.encode("utf-8"), "utf-8"),
        (TEXT.encode("utf-8"), "utf-8"),
        (codecs.BOM_UTF16_LE + TEXT.encode("utf-16-le"), "utf-16-le"),
        (codecs.BOM_UTF16_BE + TEXT.encode("utf-16-be"), "utf-16-be"),
        (TEXT.encode("utf-16-le"), "utf-16-le"),  # no BOM
        (TEXT.encode("utf-16-be"), "utf-16-be"),
        (TEXT.encode("cp1251"), "cp1251"),
        (TEXT.encode("koi8_r"), "koi8_r"),
    ],
)
def test_decode_cyrillic_in_every_encoding(data: bytes, encoding: str) -> None:
    decoded = decode_subtitle(data, SubsDecodeConfig())
    assert decoded.encoding == encoding
    assert RU in decoded.text


def test_decode_western_code_pages() -> None:
    cfg = SubsDecodeConfig()
    en = srt((0, 1000, "I don\u2019t know what you\u2019re saying, caf\u00e9 owner."))
    assert "don\u2019t" in decode_subtitle(en.encode("cp1252"), cfg).text
    hr = srt((0, 1000, "\u0110ino, do\u0111avola. Ne\u0107e da iza\u0111e odatle, \u0161to \u017eeli\u0161?"))
    decoded = decode_subtitle(hr.encode("cp1250"), cfg)
    assert decoded.encoding == "cp1250"
    assert "\u0110ino" in decoded.text


@pytest.mark.parametrize("data", [b"", b"   \n", bytes(range(0, 32)) * 50])
def test_decode_rejects_empty_and_binary(data: bytes) -> None:
    with pytest.raises(UndecodableError):
        decode_subtitle(data, SubsDecodeConfig())


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("00:00:01,266 --> 00:00:03,366", (1266, 3366, "")),
        ("00:00:01.266 --> 00:00:03.366", (1266, 3366, "")),  # dot for comma
        ("00:00:01 --> 00:00:10", (1000, 10000, "")),  # no milliseconds
        ("00: 00: 49,412 -> 00: 00: 52,404", (49412, 52404, "")),  # Google-translated
        ("00:00:0,500 --> 00:00:2,00", (500, 2000, "")),  # short fields are fractions
        ("00:00:02,813 --> 00:00:06,488  X1:122 X2:595 Y1:450 Y2:523", (2813, 6488, "X1:122 X2:595 Y1:450 Y2:523")),
        ("01:02:03,004-->01:02:04,005", (3723004, 3724005, "")),
    ],
)
def test_parse_timing_variants(line: str, expected: tuple[int, int, str]) -> None:
    assert parse_timing(line) == expected


def test_parse_timing_rejects_dialogue() -> None:
    assert parse_timing("At 10:30 we leave -> not a timing") is None


def _texts(text: str) -> list[str]:
    return [c.text for c in parse_subtitle(text, SubsParseConfig()).cues]


@pytest.mark.parametrize("eol", ["\n", "\r\n", "\r"])
def test_parse_any_line_ending(eol: str) -> None:
    text = srt((0, 1000, "One\nline two"), (1000, 2000, "Three"), eol=eol)
    assert _texts(text) == ["One\nline two", "Three"]


def test_parse_mixed_line_endings() -> None:
    text = "1\r\n00:00:01,000 --> 00:00:02,000\r\nOne\r\n\r\n2\r00:00:03,000 --> 00:00:04,000\rTwo\n\n"
    assert _texts(text) == ["One", "Two"]


def test_parse_missing_indexes() -> None:
    parsed = parse_subtitle(srt((0, 1000, "One"), (1000, 2000, "Two"), indexes=False), SubsParseConfig())
    assert [c.text for c in parsed.cues] == ["One", "Two"]
    assert parsed.counts["missing_index"] == 2


def test_parse_blank_line_inside_cue() -> None:
    text = "1\n00:00:01,000 --> 00:00:02,000\n\n\nYou really don't remember\n\n\nwhat happened?\n\n" \
           "00:00:03,000 --> 00:00:04,000\n- School.\n- I dropped out.\n"
    texts = _texts(text)
    assert len(texts) == 2
    assert "You really don't remember" in texts[0] and "what happened?" in texts[0]


def test_parse_out_of_order_cues_are_sorted_and_counted() -> None:
    text = srt((5000, 6000, "Later"), (1000, 2000, "Earlier"))
    parsed = parse_subtitle(text, SubsParseConfig())
    assert [c.text for c in parsed.cues] == ["Earlier", "Later"]
    assert parsed.counts["out_of_order"] == 1
    unsorted = parse_subtitle(text, SubsParseConfig(sort_by_time=False))
    assert [c.text for c in unsorted.cues] == ["Later", "Earlier"]


def test_parse_overlapping_and_empty_cues_are_counted() -> None:
    text = srt((0, 3000, "First"), (1000, 2000, "Inside the first"), (4000, 5000, ""))
    parsed = parse_subtitle(text, SubsParseConfig())
    assert parsed.counts["overlapping"] == 1
    assert parsed.counts["empty"] == 1


def test_parse_mangled_timing_is_repaired_and_keeps_cues_apart() -> None:
    text = (
        "1\n00:00:01,000 --> 00:00:02,000\nFirst cue.\n\n"
        "2\n00: 00: 49,412 -> 00: 00: 52,404\nSecond cue.\n\n"
        "3\n00:00:53,000 --> 00:00:54,000\nThird cue.\n"
    )
    parsed = parse_subtitle(text, SubsParseConfig())
    assert parsed.counts["timing_repaired"] == 1
    assert [c.text for c in parsed.cues] == ["First cue.", "Second cue.", "Third cue."]
    assert parsed.cues[1].start_ms == 49412


def test_parse_stacked_timings_without_text() -> None:
    text = ("00:00:01,366 --> 00:00:05,900\n00:00:05,933 --> 00:00:07,166\n00:00:07,200 --> 00:00:09,466\n"
            "One of them,\nher total was $8.00.\n\n00:00:07,200 --> 00:00:09,466\n\n\n\n")
    cues = parse_subtitle(text, SubsParseConfig()).cues
    assert [c.text for c in cues if c.text] == ["One of them,\nher total was $8.00."]


def test_parse_text_without_timings_gives_no_cues() -> None:
    parsed = parse_subtitle("Just a letter.\nNothing else.\n", SubsParseConfig())
    assert parsed.cues == []


def test_parse_index_with_stray_control_character() -> None:
    # Found by fuzzing: an index line "13\x1f" passes a \s-tolerant check but not int().
    text = "13\x1f\n00: 00: 01,000 -> 00: 00: 02,000\nOne.\n\n14\n00:00:03,000 --> 00:00:04,000\nTwo.\n"
    parsed = parse_subtitle(text, SubsParseConfig())
    assert [(c.index, c.text) for c in parsed.cues] == [(13, "One."), (14, "Two.")]
