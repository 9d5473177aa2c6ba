"""Cue rules: patterns that drop a whole cue (site ads, credits, title cards), each under its name.

Credits and ads span several lines ("Subtitles by" + a name on the next line), so a match anywhere
in a cue takes the whole cue. All patterns are matched on lower-cased text, and only on files that
hold one of the rule's needles (a substring test is far cheaper than a regex scan).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from src.config.sections.clean_subs import SubsFluffRules

_LETTERS = re.compile(r"[^\W\d_]+")

# One credited job, in the forms credit lines use; several may be listed ("sync, corrected by",
# "synced and corrected by", "Sync & corrections by").
_CREDIT_JOB_EN = (
    r"(?:subtitles?|subtitled|captions?|captioned|captioning|sync(?:ed|h|hed|hroni[sz]ed)?|re-?sync(?:ed)?"
    r"|correct(?:ions?|ed)|translated|translation|transcript(?:ion)?|ripped|encoded|timing|re-?timed"
    r"|proof-?read(?:ing)?)"
)
_CREDIT_EN = re.compile(
    rf"^\W*(?:english\s+|russian\s+|ukrainian\s+)?{_CREDIT_JOB_EN}"
    rf"(?:\s*(?:,|&|\+|/|\band\b)\s*{_CREDIT_JOB_EN})*\s+(?:by\b|:)",
    re.MULTILINE,
)
_CREDIT_RU_UK = re.compile(
    r"^\W*(?:перевод|переклад|субтитры|субтитри|синхронизация|синхронізація|редактура|редагування"
    r"|корректура|тайминг|озвучка|озвучення)"
    r"(?:(?:\s+[\w'’-]+){0,3}\s*:|\s+(?:здійснено|виконано|выполнен|сделан|подготовлен|подготовил"
    r"|підготовлено|підготував|от|від)\b)",
    re.MULTILINE,
)
_CREDIT_OTHER = re.compile(
    r"^\W*(?:prevod|prijevod|preveo|prevela|prevedla|traduction|sous-titres?|sous-titrage|untertitel"
    r"|übersetzung|traducción|subtítulos|tłumaczenie|napisy|titulky|synchronisation|synchro|relecture"
    r"|script(?:\s+original)?)\s*(?::|\s(?:by|par|von|por|od|przez)\b)",
    re.MULTILINE,
)
# Closed-captioning credits and their sponsors ("Captioning sponsored by CBS", "Captioned by ...").
_CAPTIONING = re.compile(
    r"^\W*(?:closed[\s-]+)?caption(?:s|ed|ing)?\s+(?:(?:is\s+|was\s+)?(?:sponsored|provided|made\s+possible"
    r"|paid\s+for|funded|performed|produced)\s+(?:in\s+part\s+)?)?by\b",
    re.MULTILINE,
)
_CAPTIONING_NEEDLES = ("caption",)
# An episode's title card ("Nine Magic Fingers\nOriginal Air Date on October 10, 2011").
_TITLE_CARD = re.compile(r"original\s+air\s*date\b")
_TITLE_CARD_NEEDLES = ("original",)
# A credit cue left open ("Captioning sponsored by\nCBS and WARNER BROS. TELEVISION") often goes on
# in the next cues ("and TOYOTA."): see drop_credit_continuations.
_CONTINUED_RULES = ("translator_credit", "captioning_credit")
_CONTINUATION_MAX_CHARS = 60
# Substrings one of which a match of the rule below must contain: the regex runs only on files
# that hold one (a substring test is far cheaper than a regex scan).
_CREDIT_EN_NEEDLES = ("subtitle", "caption", "sync", "correct", "translat", "transcript", "ripped",
                      "encoded", "timing")
_CREDIT_RU_UK_NEEDLES = ("перевод", "переклад", "субтитр", "синхрон", "редакт", "редаг", "корректур",
                         "тайминг", "озвуч")
_CREDIT_OTHER_NEEDLES = ("prevod", "prijevod", "preve", "traduc", "sous-titr", "untertitel",
                         "übersetz", "subtítulo", "tłumacz", "napisy", "titulky", "synchro", "relecture",
                         "script")
_DOWNLOADED_NEEDLES = ("download", "preuzeto", "скачано", "завантажено", "ripped")
_DOWNLOADED_FROM = re.compile(
    r"(?:downloaded|download|preuzeto|скачано|завантажено|ripped)\s+(?:from|sa|с|з)\b"
)

@dataclass
class CueRule:
    name: str
    needles: tuple[str, ...]  # the rule cannot match text that holds none of these substrings
    pattern: re.Pattern[str]  # matched on lower-cased text
    whole_word: bool = False  # keep only matches that are words of their own


def build_cue_rules(rules: SubsFluffRules) -> list[CueRule]:
    """The enabled cue rules in priority order (a cue several rules match counts for the first)."""
    phrases = [p.lower() for p in rules.opensubtitles_phrases]
    # Lower-cased text instead of IGNORECASE: that flag makes Python's regex engine several times slower.
    os_ad = re.compile(r"open\s*subtitles|osdb" + "".join(f"|{re.escape(p)}" for p in phrases))
    sites = [s.lower() for s in rules.ad_sites]
    site_rx = re.compile("|".join(re.escape(s) for s in sites) or r"(?!x)x")
    cue_rules = []
    if rules.title_card:
        cue_rules.append(CueRule("title_card", _TITLE_CARD_NEEDLES, _TITLE_CARD))
    if rules.opensubtitles_ad:
        cue_rules.append(CueRule("opensubtitles_ad", ("subtitles", "osdb", *phrases), os_ad))
    if rules.site_ad:
        cue_rules += [CueRule("site_ad", tuple(sites), site_rx, whole_word=True),
                      CueRule("site_ad", _DOWNLOADED_NEEDLES, _DOWNLOADED_FROM)]
    if rules.captioning_credit:  # before translator_credit, which would take "Captioned by" too
        cue_rules.append(CueRule("captioning_credit", _CAPTIONING_NEEDLES, _CAPTIONING))
    if rules.translator_credit:
        cue_rules += [CueRule("translator_credit", _CREDIT_EN_NEEDLES, _CREDIT_EN),
                      CueRule("translator_credit", _CREDIT_RU_UK_NEEDLES, _CREDIT_RU_UK),
                      CueRule("translator_credit", _CREDIT_OTHER_NEEDLES, _CREDIT_OTHER)]
    return cue_rules


def whole_word(text: str, m: re.Match[str]) -> bool:
    """A site name counts only as a word of its own ("yts", not "bytes")."""
    before = text[m.start() - 1] if m.start() else " "
    after = text[m.end()] if m.end() < len(text) else " "
    return not (before.isalnum() or before in "_-" or after.isalnum() or after in "_-")


def drop_credit_continuations(texts: list[str], dropped: dict[int, str]) -> None:
    """A credit cue left open takes the next cues with it while they read as its tail: short (at
    most two lines of _CONTINUATION_MAX_CHARS), starting lower-case or all capitals, the one before
    not ending a sentence ("Captioning sponsored by\nCBS" + "WARNER BROS. TELEVISION" +
    "and VOLKSWAGEN.\nIt's what the people want.")."""
    for i, rule in sorted(dropped.items()):
        if rule not in _CONTINUED_RULES:
            continue
        j = i + 1
        while j < len(texts) and j not in dropped and _continues_credit(texts[j - 1], texts[j]):
            dropped[j] = rule
            j += 1


def _continues_credit(head: str, tail: str) -> bool:
    head, tail = head.rstrip(), tail.strip()
    if not head or head[-1] in ".!?…" or not tail:
        return False
    lines = tail.split("\n")
    if len(lines) > 2 or max(map(len, lines)) > _CONTINUATION_MAX_CHARS:
        return False
    first = _LETTERS.search(tail)
    return first is not None and first.start() == 0 and (first.group()[0].islower() or tail == tail.upper())
