"""Quotes and dashes in the typography of the text's language: Russian «…» „…“ and dialogue dashes,
English “…” (or straight quotes) and its own dashes, or untouched."""

from __future__ import annotations

import dataclasses

import pytest

from src.config import ConfigError, compose, load_config
from src.config.sections.normalize import NormalizeConfig
from src.data.subtitles.file_cleaner import clean_subtitle_bytes, load_normalizer
from src.text.normalize import normalize_dashes, normalize_quotes, normalize_text
from tests.data.subtitle_fixtures import config, srt

CFG = NormalizeConfig(repair_mojibake=False)


@pytest.mark.parametrize(("raw", "expected"), [
    # A quotation continued over cues re-opens without closing; merged into one line, it must not
    # become a Russian inner quote.
    ('He read: "The defendant, "and his client, are liable."',
     "He read: “The defendant, “and his client, are liable.”"),
    ('"and his client,', "“and his client,"),
    ('She said "no" and left.', "She said “no” and left."),
    ("«Bonjour» is French.", "“Bonjour” is French."),
    ("It's Jake's, isn't it?", "It's Jake's, isn't it?"),  # apostrophes are not quotes
])
def test_english_quotes(raw: str, expected: str) -> None:
    assert normalize_text(raw, CFG, language="en") == expected


@pytest.mark.parametrize(("raw", "expected"), [
    ("- Red.\n- Toyota!", "- Red.\n- Toyota!"),            # speaker hyphens stay
    ("I was - I mean, I am.", "I was — I mean, I am."),
    ("the reservoir-- that place", "the reservoir— that place"),
    ("the reservoir -- that place", "the reservoir — that place"),
    ("1863--1869", "1863–1869"),
    ("5 - 3 is 2.", "5 - 3 is 2."),                          # arithmetic
    ("Well – maybe.", "Well – maybe."),                      # an en dash is a dash already
    ("Ooh-ooh-ooh, a long-term plan.", "Ooh-ooh-ooh, a long-term plan."),
    ("Sir.- Yes.", "Sir.- Yes."),                            # not the Russian glued dash
    ("I was -", "I was —"),
])
def test_english_dashes(raw: str, expected: str) -> None:
    assert normalize_dashes(raw, "en") == expected


def test_russian_typography_is_unchanged_and_the_default() -> None:
    raw = '- Он сказал: "Пойдём "домой" сейчас".\nчеловек.- Их заперли'
    expected = "— Он сказал: «Пойдем „домой“ сейчас».\nчеловек. — Их заперли"
    assert normalize_text(raw, CFG) == expected
    assert normalize_text(raw, CFG, language="ru") == expected
    assert normalize_text(raw, CFG, language="uk") == expected


def test_straight_english_style() -> None:
    cfg = dataclasses.replace(CFG, typography={"en": "en_straight"})
    raw = "“Hi,” she said. ‘Yes’ - don’t «go»."
    assert normalize_text(raw, cfg, language="en") == "\"Hi,\" she said. 'Yes' — don't \"go\"."


def test_unlisted_language_keeps_quotes_and_dashes() -> None:
    raw = '- «Hola» - dijo "él"...'
    assert normalize_text(raw, CFG, language="es") == '- «Hola» - dijo "él"…'  # the ellipsis still
    assert normalize_text(raw, CFG, language="unknown") == '- «Hola» - dijo "él"…'
    assert normalize_quotes(raw, style="keep") == raw and normalize_dashes(raw, "keep") == raw


def test_unknown_style_is_a_config_error_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=r"normalize\.typography\.en.*must be one of"):
        load_config(compose(["normalize.typography.en=fancy"]))
    with pytest.raises(ConfigError, match=r"normalize\.typography_default"):
        load_config(compose(["normalize.typography_default=fancy"]))


def test_subtitle_cleaner_uses_each_files_language() -> None:
    normalize, problem = load_normalizer(CFG)
    assert problem is None
    english = srt((0, 1000, 'He said, "The defendant,'), (1200, 2000, '"and his client, are liable."'),
                  (3000, 4000, "- Are they?\n- They are - I read it."),
                  (5000, 6000, "Yes, it was in the paper."))
    res = clean_subtitle_bytes(english.encode(), "en.srt", config(), normalize)
    assert res.language == "en"
    assert [u.text for u in res.utterances] == [
        "He said, “The defendant, “and his client, are liable.”", "Are they?", "They are — I read it.",
        "Yes, it was in the paper."]
    russian = srt((0, 1000, 'Он сказал: "Все пойдут "домой".'), (2000, 3000, "Да - и я тоже. Ну что же, пора."))
    res = clean_subtitle_bytes(russian.encode(), "ru.srt", config(), normalize)
    assert res.language == "ru"
    assert [u.text for u in res.utterances] == ["Он сказал: «Все пойдут „домой“.", "Да — и я тоже. Ну что же, пора."]
