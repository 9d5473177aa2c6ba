"""Non-dialogue lines of TV subtitles: sync and correction credits, captioning sponsors, episode title
cards, sung lines. Each class is dropped by its own named, switchable rule; dialogue that merely
mentions the words stays."""

from __future__ import annotations

from collections import Counter

import pytest

from src.config.sections.clean_subs import SubsFluffRules
from src.data.subtitles.file_cleaner import clean_subtitle_bytes
from src.data.subtitles.fluff import FluffPatterns, clean_cues, strip_markup
from tests.data.subtitle_fixtures import config, srt


def _clean(cues: list[str], **switches: bool) -> tuple[list[list[str]], Counter[str]]:
    counts: Counter[str] = Counter()
    pat = FluffPatterns.build(SubsFluffRules(**switches))
    texts = [strip_markup(c, counts) for c in cues]
    return clean_cues(texts, pat, counts, True, "latin"), counts


@pytest.mark.parametrize("cue", [
    '== sync, corrected by <font color="#00FF00">elderman</font> ==',
    "-- synced and corrected by drcaps --",
    "Sync & corrections by n17t01\nwww.example-subs.org",
    "~ Resynced by Ubolena. ~",
    "Subtitles by\nSDI Media Group",
    "Synchronisation par Max & Tyno,\nScript original par Raceman.",
    "Malcolm in the Middle - 7.07 - \"Blackout\"\nSynchronisation par Max & Tyno, Script par Raceman.",
    "Relecture par Tyno.",
])
def test_sync_and_correction_credits(cue: str) -> None:
    out, counts = _clean([cue])
    assert out == [[]] and counts["translator_credit"] == 1


@pytest.mark.parametrize(("cues", "dropped"), [
    (["Captioning sponsored by\nCBS and WARNER BROS. TELEVISION", "and TOYOTA.", "Hi, Mom."], 2),
    (["Captioning sponsored by\nCBS", "WARNER BROS. TELEVISION", "and VOLKSWAGEN.\nIt's what the people want.",
      "Hi, Mom."], 3),
    (["Captioned by\nMedia Access Group at WGBH\naccess.wgbh.org", "Hi, Mom."], 1),
    (["Closed captioning provided by\nthe Example Network.", "and then we left."], 1),  # closed by "."
])
def test_captioning_sponsors_and_their_tails(cues: list[str], dropped: int) -> None:
    out, counts = _clean(cues)
    assert all(lines == [] for lines in out[:dropped]) and all(out[dropped:])
    assert counts["captioning_credit"] == dropped


def test_title_card() -> None:
    card = ('<font color="#00FF00">♪ Two and a Half Men 9x14 ♪</font>\n'
            '<font color="#00FFFF">A Possum on Chemo</font>\nOriginal Air Date on January 16, 2012')
    out, counts = _clean([card, "Hi, Mom."])
    assert out == [[], ["Hi, Mom."]] and counts["title_card"] == 1


@pytest.mark.parametrize("cue", [
    "♪ Ah.\n♪ Men.",                                  # each line opened by a note
    "♪ Men men men men ♪♪ Oo ♪",                     # closed twice, then a passage closed only
    "Oo-o-o-o-h ♪",                                   # the end of a passage opened in the cue before
    "♪ Oh, when\nthe saints go marching in",          # opened, never closed: the cue is the song
    "♪ ♪",
    "* Men, men, men, men,\nmanly men, men, men *\n* Ooh",  # captions that write * for a note
    "* Men.",
    "*I feel good*",
    "*Wishing and hoping and\nthinking and praying*",
    "* God bless\nAmerica...*",
    "*Ooh\n* Men *",
])
def test_sung_lines(cue: str) -> None:
    out, counts = _clean([cue])
    assert out == [[]] and counts["music"] >= 1


def test_song_ends_where_a_speaker_starts() -> None:
    out, _ = _clean(["♪ Happy birthday to you\n- Thanks, Mom."])
    assert out == [["- Thanks, Mom."]]


@pytest.mark.parametrize("line", [
    "I stand corrected.",
    "No. No, no. I guess we're just really in sync.",
    'With a caption that said, "Alan got his groove back."',
    "The only good subtitles are for Nazis.",
    "The original air was cleaner up here.",
    "The earth did not move. *",                      # a footnote star, not a song
    "*Really?* No way.",                              # emphasis
    "Men... are pigs.",
])
def test_dialogue_mentioning_the_words_stays(line: str) -> None:
    out, counts = _clean([line])
    assert out == [[line.removesuffix(" *")]], counts


def test_credit_tail_needs_an_open_credit_and_a_lower_case_or_capitals_start() -> None:
    out, _ = _clean(["Subtitles by Joe.", "and then he left."])
    assert out == [[], ["and then he left."]]
    out, _ = _clean(["Subtitles by Joe", "And then he left."])
    assert out == [[], ["And then he left."]]


@pytest.mark.parametrize(("switch", "cue", "rule"), [
    ("captioning_credit", "Captioning sponsored by CBS", "captioning_credit"),
    ("title_card", "Pilot\nOriginal Air Date on May 1, 2010", "title_card"),
    ("music_star_marker", "* Men, manly men *", "music"),
])
def test_each_rule_has_a_switch(switch: str, cue: str, rule: str) -> None:
    out, counts = _clean([cue])
    assert out == [[]] and counts[rule] == 1
    out, counts = _clean([cue], **{switch: False})
    assert out != [[]] and counts[rule] == 0


def test_rules_counted_in_the_file_result() -> None:
    text = srt((0, 1000, "== sync, corrected by elderman =="), (1000, 2000, "Captioning sponsored by CBS"),
               (2000, 3000, "and TOYOTA."), (3000, 4000, "Pilot\nOriginal Air Date on May 1, 2010"),
               (4000, 5000, "♪ Men. ♪"), (6000, 7000, "Hello, Alan."))
    res = clean_subtitle_bytes(text.encode(), "tv.srt", config())
    assert [u.text for u in res.utterances] == ["Hello, Alan."]
    assert (res.rules["translator_credit"], res.rules["captioning_credit"], res.rules["title_card"],
            res.rules["music"]) == (1, 2, 1, 1)
