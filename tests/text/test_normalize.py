"""Each normalization step on small cases, and the switches that turn them off."""

from __future__ import annotations

import dataclasses

import pytest

from src.config.sections.normalize import NormalizeConfig
from src.text.mojibake import repair_mojibake, repair_stray_yo, russian_plausibility
from src.text.normalize import (
    as_normalize_config,
    collapse_whitespace,
    normalize_dashes,
    normalize_ellipsis,
    normalize_quotes,
    normalize_text,
    to_nfc,
    yo_to_e,
)

RUSSIAN = "Однажды осенью матушка варила в гостиной медовое варенье, а я, облизываясь, смотрел на кипучие пенки."


def test_yo_to_e() -> None:
    assert yo_to_e("Ёлка, всё ещё") == "Елка, все еще"


def test_nfc_composes_combining_marks() -> None:
    decomposed = "е\u0308ж и\u0306"
    assert to_nfc(decomposed) == "ёж й"
    assert yo_to_e(to_nfc(decomposed)) == "еж й"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("- Ну, что? - спросил он.", "— Ну, что? — спросил он."),
        ("-- Ну, что? -- спросил он.", "— Ну, что? — спросил он."),
        ("Слово – другое", "Слово — другое"),
        ("человек.- Их заперли", "человек. — Их заперли"),
        ("1863--1869 гг.", "1863–1869 гг."),
        ("кое-как по-русски, что-то", "кое-как по-русски, что-то"),
        ("-5 градусов", "-5 градусов"),
        ("----------", "----------"),
    ],
)
def test_dashes(raw: str, expected: str) -> None:
    assert normalize_dashes(raw) == expected


def test_ellipsis_only_three_dots() -> None:
    assert normalize_ellipsis("Ну... и . . . вот") == "Ну… и … вот"
    assert normalize_ellipsis("Да кто?..") == "Да кто?.."
    assert normalize_ellipsis(".....................") == "....................."


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('"Слава богу" - ворчал он', "«Слава богу» - ворчал он"),
        ('"Он сказал: "нет" и ушел"', "«Он сказал: „нет“ и ушел»"),
        ("„Тихо“ и “English”", "«Тихо» и «English»"),
        ("«Уже «вложенные» кавычки»", "«Уже „вложенные“ кавычки»"),
        ('Книга "Капитанская дочка".', "Книга «Капитанская дочка»."),
    ],
)
def test_quotes(raw: str, expected: str) -> None:
    assert normalize_quotes(raw, nested=True) == expected


def test_quotes_flat_and_line_local() -> None:
    assert normalize_quotes('"a "b" c"', nested=False) == "«a «b» c»"
    # A stray quote on one line does not flip the next line.
    assert normalize_quotes('stray " here\n"ok"') == "stray « here\n«ok»"


def test_whitespace() -> None:
    text = "  a\u00a0\u00a0b  \n\n\n\n c\u00ad d \t"
    cfg = NormalizeConfig(max_blank_lines=1)
    assert normalize_text(text, cfg) == "a b\n\nc d"
    assert collapse_whitespace("a\n\n\n\nb", 2) == "a\n\n\nb"


def test_every_step_switchable() -> None:
    text = '-- Всё... "да"'
    off = NormalizeConfig(enabled=False)
    assert normalize_text(text, off) == text
    only_quotes = NormalizeConfig(yo_to_e=False, dashes=False, ellipsis=False, whitespace=False)
    assert normalize_text(text, only_quotes) == '-- Всё... «да»'
    assert normalize_text(text, NormalizeConfig()) == "— Все… «да»"


def test_accepts_dicts_and_rejects_unknown_keys() -> None:
    cfg = as_normalize_config({"yo_to_e": False})
    assert normalize_text("ёж", cfg) == "ёж"
    with pytest.raises(ValueError, match="unknown key"):
        as_normalize_config({"yo_to_ee": True})


@pytest.mark.parametrize(
    ("wrong", "true"),
    [("cp1251", "koi8-r"), ("koi8-r", "cp1251"), ("cp1251", "utf-8"), ("latin-1", "utf-8")],
)
def test_mojibake_repaired(wrong: str, true: str) -> None:
    garbled = RUSSIAN.encode(true).decode(wrong)
    assert garbled != RUSSIAN
    fix = repair_mojibake(garbled, sample_chars=20000, min_gain=0.25)
    assert fix.text == RUSSIAN
    assert (fix.wrong_codec, fix.true_codec) == (wrong, true)


def test_clean_text_is_left_alone() -> None:
    for text in (RUSSIAN, "Pride and Prejudice, a novel.", "Résumé of the café"):
        fix = repair_mojibake(text, sample_chars=20000, min_gain=0.25)
        assert fix.text == text and fix.wrong_codec is None
    assert russian_plausibility(RUSSIAN) > 0.8


def test_stray_yo_from_koi8_table() -> None:
    assert repair_stray_yo("Бог дал вЈдро, всЈ сено") == "Бог дал вёдро, всё сено"
    assert repair_stray_yo("Ј. Smith") == "Ј. Smith"


def test_mojibake_step_in_normalize_text() -> None:
    garbled = RUSSIAN.encode("koi8-r").decode("cp1251")
    assert normalize_text(garbled, NormalizeConfig()) == RUSSIAN
    off = dataclasses.replace(NormalizeConfig(), repair_mojibake=False, quotes=False)
    assert normalize_text(garbled, off) == garbled
