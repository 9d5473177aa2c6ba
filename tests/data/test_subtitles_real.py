"""The 23 real subtitle files of ../shared/data/srt_real: every one parses and cleans to sensible text."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from src.data.subtitles.file_cleaner import FileResult, clean_subtitle_bytes
from src.data.subtitles.fluff import FluffPatterns
from tests.data.subtitle_fixtures import config

pytestmark = pytest.mark.real_data

CFG = config()
PATTERNS = FluffPatterns.build(CFG.rules)
# What must never survive cleaning, in any file.
FORBIDDEN = {
    "timing line": re.compile(r"\d{1,2}\s*:\s*\d{2}\s*:\s*\d{2}\s*[,.]?\d*\s*-+>"),
    "html tag": re.compile(r"</?(?:i|b|u|s|font)\b[^>]*>", re.IGNORECASE),
    "ass tag": re.compile(r"\{\\[^}]*\}"),
    "url": re.compile(r"www\.|https?://|\.(?:com|net|org)\b|osdb\.link", re.IGNORECASE),
    "site ad": re.compile(r"allsubs|tvsubtitles|titlovi|opensubtitles|hurtom", re.IGNORECASE),
    "credit": re.compile(r"^(?:english )?subtitles by|^перевод:|^переклад|^prevod:|^synced", re.IGNORECASE),
    "sound description": re.compile(r"\[[^\]]*\]|\( ?(?:wind|metal|breathing|muffled|screaming)"),
}
# Dialogue that must survive, per file (a few known lines each).
KNOWN_LINES = {
    "cdown__en_monsters__crlf.srt": ["Using mainly spoons, we dig a tunnel under the city"],
    "pysrt__en__bom-utf-16-le.srt": ["About 2 months ago I found myself on the comment section of YouTube"],
    "pysrt__en__capability_tester.srt": ["This text should be blue", "This line should be bold"],
    "pysrt__en__no-indexes.srt": ["And I posted underneath against this woman's tirades"],
    "pysrt__en__overlapping-dialogues.srt": ["I am the 4th dialogue"],
    "pysrt__fr_anchorman__utf-8.srt": ["Il fut un temps, avant l'existence du câble,", "Ron Burgundy."],
    "pysrt__invalid_timestamp.srt": ["This subtitle is invalid"],
    "pytitle__en_shameless_s03e01__utf-8-bom.srt": [
        "You really don't remember what happened last year?", "You married a drug lord's daughter?"],
    "subsync__en_imitation_game__utf-8-bom.srt": ["Are you paying attention?", "You're mistaken. I am in control."],
    "subsync__ru_imitation_game__utf-8-bom.srt": ["Вы внимательно слушаете?", "Я не буду делать пауз."],
    "subtitleedit__cee__windows-1250.srt": ["Đino, dođavola. Dolazi ovamo!"],
    "subtitleedit__ru_mt__utf-8-bom.srt": ["Готовы к вылету, г-н капитан."],
    "subtitletools__en_broken-by-google-translate.srt": ["I'm English. Do not shoot."],
    "subtitletools__en_dots-in-timings.srt": ["To be out. This is out."],
    "subtitletools__en_friends_coordinates.srt": [
        "Do you realize this is the last time we'll be here", "What's happening to the coffeehouse?"],
    "subtitletools__en_hearing-impaired.srt": ["No! No! No!"],
    "subtitletools__en_parse-edge-case-3.srt": ["One of them, her total was $8.00."],
    "ukr__uk_bohemian_rhapsody__opensubtitles-7630039.srt": ["У Лондоні зараз полудень."],
    "ukr__uk_got_s07e07__utf-8-bom_crlf.srt": ["Небезпечно залишати вас із Мізинцем."],
    "zserg__en_friends_s01e23__cp1252_crlf.srt": ["She told me she'd already passed the mucus plug."],
    "zserg__en_tbbt_s01e03__ascii_mixed-eol.srt": ["Warriors, unsheathe your weapons."],
    "zserg__ru_friends_s01e23__utf-8_crlf.srt": ["Нам обязательно это знать?"],
    "zserg__ru_tbbt_s01e03__utf-8_mixed-eol.srt": ["Кто хочет пойти в Second Life поплавать?"],
}
LANGUAGES = {"ru": ["subsync__ru", "zserg__ru", "subtitleedit__ru"], "uk": ["ukr__uk"],
             "fr": ["pysrt__fr"], "hr": ["subtitleedit__cee"], "en": ["zserg__en", "subsync__en", "pytitle__en"]}


@pytest.fixture(scope="module")
def results(shared_data: Path) -> dict[str, FileResult]:
    folder = shared_data / "srt_real"
    if not folder.is_dir():
        pytest.skip(f"{folder} absent")
    # The cleaner's own output is checked, without the shared normalizer (tested on its own).
    return {p.name: clean_subtitle_bytes(p.read_bytes(), p.name, CFG, None, PATTERNS)
            for p in sorted(folder.glob("*.srt"))}


def test_all_23_files_present_and_cleaned(results: dict[str, FileResult]) -> None:
    assert set(results) == set(KNOWN_LINES)
    for name, res in results.items():
        assert res.status == "ok", (name, res.error)
        assert res.utterances, name


@pytest.mark.parametrize("name", sorted(KNOWN_LINES))
def test_no_fluff_survives_and_dialogue_does(results: dict[str, FileResult], name: str) -> None:
    res = results[name]
    lines = [u.text for u in res.utterances]
    for label, rx in FORBIDDEN.items():
        leaked = [line for line in lines if rx.search(line)]
        assert not leaked, f"{name}: {label} survived: {leaked[:3]}"
    joined = "\n".join(lines)
    for known in KNOWN_LINES[name]:
        assert known in joined, f"{name}: lost {known!r}"


def test_encodings_detected(results: dict[str, FileResult]) -> None:
    assert results["pysrt__en__bom-utf-16-le.srt"].encoding == "utf-16-le"
    assert results["subtitleedit__cee__windows-1250.srt"].encoding == "cp1250"
    # cp1252 and cp1250 agree on every byte of this English file; either reading is right.
    assert results["zserg__en_friends_s01e23__cp1252_crlf.srt"].encoding in {"cp1252", "cp1250"}


def test_languages_detected(results: dict[str, FileResult]) -> None:
    for language, prefixes in LANGUAGES.items():
        for name, res in results.items():
            if name.startswith(tuple(prefixes)):
                assert res.language == language, name


def test_specific_defects_handled(results: dict[str, FileResult]) -> None:
    # Every timing line of that file was mangled ("00: 00: 49,412 -> ..."): all four repaired.
    assert results["subtitletools__en_broken-by-google-translate.srt"].cue_counts["timing_repaired"] == 4
    assert results["subtitletools__en_broken-by-google-translate.srt"].utterances[1].start_ms == 153382
    capability = results["pysrt__en__capability_tester.srt"]
    assert capability.rules["zero_duration"] == 2 and capability.rules["ass_tag"] >= 14
    got = "\n".join(u.text for u in results["ukr__uk_got_s07e07__utf-8-bom_crlf.srt"].utterances)
    assert "СиницяБандерівка" not in got  # the credit cue's second line went with it
    friends = results["subtitletools__en_friends_coordinates.srt"]
    assert not any("X1:" in u.text for u in friends.utterances)
    assert "we'll be here... as six single people?" in "\n".join(u.text for u in friends.utterances)
    assert results["cdown__en_monsters__crlf.srt"].rules["foreign_script_line"] == 3
