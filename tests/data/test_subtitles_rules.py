"""Markup and fluff rules: each one fires on its defect and leaves dialogue alone."""

from __future__ import annotations

from collections import Counter

import pytest

from src.config.sections.clean_subs import SubsFluffRules
from src.data.subtitles.file_cleaner import clean_subtitle_bytes, sentence_case
from src.data.subtitles.fluff import FluffPatterns, clean_cue_lines, clean_cues, strip_markup
from tests.data.subtitle_fixtures import config, srt


def _clean(text: str, rules: SubsFluffRules | None = None, mixed_case: bool = True,
           script: str = "latin") -> tuple[list[str], Counter[str]]:
    counts: Counter[str] = Counter()
    pat = FluffPatterns.build(rules or SubsFluffRules())
    return clean_cue_lines(strip_markup(text, counts), pat, counts, mixed_case, script), counts


def test_html_and_ass_tags_are_stripped_text_kept() -> None:
    lines, counts = _clean('{\\an8}<i>Hello</i>, <font color="#ff0000" size=14>Tom</font>.\n<b><u>Bye</u></b>')
    assert lines == ["Hello, Tom.", "Bye"]
    assert counts["html_tag"] == 8 and counts["ass_tag"] == 1


def test_ass_escapes_and_microdvd_codes() -> None:
    lines, _ = _clean("{y:i}One\\Ntwo\\hthree")
    assert lines == ["One", "two three"]


@pytest.mark.parametrize(
    "cue",
    [
        "Advertise your product or brand here\ncontact www.OpenSubtitles.org today",
        "Support us and become VIP member\nto remove all ads from www.OpenSubtitles.org",
        "api.OpenSubtitles.org is deprecated, please\nimplement REST API from OpenSubtitles.com",
        "[Various Voices] osdb.link/ext",
        "Watch any video online with Open-SUBTITLES\nai.OpenSubtitles.com",
    ],
)
def test_opensubtitles_ads(cue: str) -> None:
    lines, counts = _clean(cue)
    assert lines == [] and counts["opensubtitles_ad"] == 1


@pytest.mark.parametrize(
    "cue",
    [
        "Downloaded From www.AllSubs.org",
        '<font color="#ffff00" size=14>www.tvsubtitles.net</font>',
        "Preuzeto sa www.titlovi.com",
        "Sync by honeybunny - www.addic7ed.com",
        "Скачано с www.subs-polka.ru",
    ],
)
def test_site_ads(cue: str) -> None:
    lines, counts = _clean(cue)
    assert lines == [] and counts["site_ad"] == 1


@pytest.mark.parametrize(
    "cue",
    [
        "Перевод: creyzee\n2creyzee[at]gmail.com",
        "Переклад здійснено студією \"Світанок\"",
        "Переклад українських субтитрів:\nСиницяБандерівка",
        "Subtitles by\nSDI Media Group",
        "English Subtitles by\nGELULA & CO., INC.",
        "Synced by n17t01",
        "Sync and corrections by n17t01",
        "Prevod: zorduki",
        "Сезон 01 Серия 03\n\nПеревод: creyzee",
    ],
)
def test_translator_credits_drop_the_whole_cue(cue: str) -> None:
    lines, counts = _clean(cue)
    assert lines == [] and counts["translator_credit"] == 1


@pytest.mark.parametrize(
    "line",
    [
        "I'm addicted to you, you know that?",
        "Перевод денег занял целый час.",
        "The translation is wrong, and so is the subtitle.",
        "Mr. And Mrs. Bing are not home.",
        "It was 2<3,5>1, I swear.",
    ],
)
def test_dialogue_that_looks_like_fluff_survives(line: str) -> None:
    lines, counts = _clean(line, script="cyrillic" if "Пер" in line else "latin")
    assert lines == [line], counts


def test_url_line_dropped_rest_of_cue_kept() -> None:
    lines, counts = _clean("Visit us at http://example.org/subs\nAnd then he left.")
    assert lines == ["And then he left."] and counts["url"] == 1


def test_sound_descriptions_and_parentheticals() -> None:
    lines, counts = _clean("[AUDIENCE LAUGHS]\nTo be out. [door slams] This is out.")
    assert lines == ["To be out. This is out."] and counts["sound_description"] == 2
    lines, counts = _clean("( man singing in Spanish,\nechoing )")
    assert lines == [] and counts["parenthetical"] == 1
    lines, _ = _clean("- ( breathing heavily )\n- Get down!")
    assert lines == ["- Get down!"]


def test_music_and_lone_symbols() -> None:
    assert _clean("♪ Oh, the lamp and the rock\nand the long grey sea ♪")[0] == []
    assert _clean("# Oh, the lamp and the rock #")[0] == []
    assert _clean('"Amigo Bronco" playing')[0] == []
    assert _clean("*")[0] == []
    assert _clean("Земля не двинулась. *", script="cyrillic")[0] == ["Земля не двинулась."]


def test_speaker_labels() -> None:
    lines, counts = _clean("JERRY: Hello, Newman.\n- MRS. HALE: Good.")
    assert lines == ["Hello, Newman.", "- Good."] and counts["speaker_label"] == 2
    assert _clean("- ДЕД: Кто там?", script="cyrillic")[0] == ["- Кто там?"]
    assert _clean("At 10:30: we leave.")[0] == ["At 10:30: we leave."]


def test_caps_caption_only_in_mixed_case_files() -> None:
    assert _clean("ОСНОВАНО НА РЕАЛЬНЫХ СОБЫТИЯХ", script="cyrillic")[0] == []
    assert _clean("NO!")[0] == ["NO!"]  # short shouting stays
    assert _clean("WATCH CLOSELY, THERE IS NOTHING", mixed_case=False)[0] == ["WATCH CLOSELY, THERE IS NOTHING"]


def test_foreign_script_line() -> None:
    lines, counts = _clean("我有个点子\nOK, look, I think I have a plan here.")
    assert lines == ["OK, look, I think I have a plan here."] and counts["foreign_script_line"] == 1
    # Latin names inside a Russian line are not foreign.
    assert _clean("Г-н Nwokolo?", script="cyrillic")[0] == ["Г-н Nwokolo?"]


def test_rules_can_be_switched_off() -> None:
    rules = SubsFluffRules(parenthetical=False, speaker_label=False, site_ad=False, url=False)
    lines, _ = _clean("TOM: (laughs) Hi.\nDownloaded From www.AllSubs.org", rules)
    assert lines == ["TOM: (laughs) Hi.", "Downloaded From www.AllSubs.org"]


def test_sentence_case() -> None:
    assert sentence_case("AHEM. FOR MY NEXT TRICK, I'M DONE... REALLY.", "en") == \
        "Ahem. For my next trick, I'm done... really."
    assert sentence_case("- ГДЕ КРОЛИК? ОН БЫЛ ЗДЕСЬ!", "ru") == "- Где кролик? Он был здесь!"


def test_all_caps_file_is_recased_only_when_switched_on() -> None:
    data = srt((0, 1000, "WHERE IS THE RABBIT? IT WAS HERE."), (1200, 2000, "I DON'T KNOW, HONESTLY.")).encode()
    res = clean_subtitle_bytes(data, "caps", config())
    assert res.all_caps
    assert [u.text for u in res.utterances] == ["Where is the rabbit? It was here.", "I don't know, honestly."]
    res = clean_subtitle_bytes(data, "caps", config(**{"rules.case_normalize_all_caps": False}))
    assert res.utterances[0].text == "WHERE IS THE RABBIT? IT WAS HERE."


def test_zero_duration_cue_dropped() -> None:
    data = srt((0, 0, "Hidden data here"), (100, 2000, "Visible line of dialogue.")).encode()
    res = clean_subtitle_bytes(data, "z", config())
    assert [u.text for u in res.utterances] == ["Visible line of dialogue."]
    assert res.rules["zero_duration"] == 1


def test_file_wide_passes_keep_cues_apart() -> None:
    """Rules run over a whole file's joined cues; no match may reach into a neighbouring cue."""
    counts: Counter[str] = Counter()
    texts = ["İstanbul was cold.", "Downloaded From www.AllSubs.org", "[music starts", "and stops] Hi.",
             "Subtitles by", "Nobody at all.", "TOM: Fine."]
    out = clean_cues(texts, FluffPatterns.build(SubsFluffRules()), counts, True, "latin")
    assert out == [["İstanbul was cold."], [], ["[music starts"], ["and stops] Hi."], [],
                   ["Nobody at all."], ["Fine."]]
    assert counts["site_ad"] == 1 and counts["translator_credit"] == 1 and counts["sound_description"] == 0
