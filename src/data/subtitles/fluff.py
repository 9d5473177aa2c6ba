"""Markup and fluff removal: named rules, each counted every time it fires.

Three scopes, applied in this order to one cue:
- markup: HTML tags (<i>, <font ...>) and ASS override tags ({\\an8}) are removed, text kept;
- cue rules drop the whole cue: site ads and credits span several lines ("Subtitles by" + a name);
- span rules cut a piece out of a line ([music], ( wind whistling ), ♪ ... ♪, "JERRY:");
- line rules drop one line (URLs, leftover timing lines, on-screen captions, nothing left but symbols).
"""

from __future__ import annotations

import html
import re
from collections import Counter
from dataclasses import dataclass

from src.config.sections.clean_subs import SubsFluffRules
from src.data.subtitles.srt_parse import TIMING_LINE

_HTML_TAG = re.compile(r"</?[A-Za-z][^<>\n]*>")
_ASS_TAG = re.compile(r"\{\\[^{}]*\}|\{[A-Za-z]:[^{}]*\}")  # {\an8} and MicroDVD's {y:i}
_ASS_BREAK = re.compile(r"\\[Nn]")
_ASS_HARD_SPACE = re.compile(r"\\h")
_PIPE = re.compile(r"\s+\|\s+")

_CREDIT_EN = re.compile(
    r"^\W*(?:english\s+|russian\s+|ukrainian\s+)?"
    r"(?:subtitles?|subtitled|captions?|captioned|captioning|sync(?:ed|hronized)?"
    r"|sync(?:ed)?\s+(?:and|&)\s+correct(?:ions?|ed)|correct(?:ions?|ed)|re-?sync(?:ed)?"
    r"|translated|translation|transcript(?:ion)?|ripped|encoded|timing)\s+(?:by\b|:)",
    re.IGNORECASE,
)
_CREDIT_RU_UK = re.compile(
    r"^\W*(?:перевод|переклад|субтитры|субтитри|синхронизация|синхронізація|редактура|редагування"
    r"|корректура|тайминг|озвучка|озвучення)"
    r"(?:(?:\s+[\w'’-]+){0,3}\s*:|\s+(?:здійснено|виконано|выполнен|сделан|подготовлен|подготовил"
    r"|підготовлено|підготував|от|від)\b)",
    re.IGNORECASE,
)
_CREDIT_OTHER = re.compile(
    r"^\W*(?:prevod|prijevod|preveo|prevela|prevedla|traduction|sous-titres?|untertitel|übersetzung"
    r"|traducción|subtítulos|tłumaczenie|napisy|titulky)\s*(?::|\s(?:by|par|von|por|od|przez)\b)",
    re.IGNORECASE,
)
_DOWNLOADED_FROM = re.compile(
    r"\b(?:downloaded|download|preuzeto|скачано|завантажено|ripped)\s+(?:from|sa|с|з)\b", re.IGNORECASE
)
_URL = re.compile(
    r"(?:https?://|www\.)\S+|[\w.+-]+(?:@|\[at\])[\w-]+\.\w+"
    r"|\b[\w-]+(?:\.[\w-]+)*\.(?:com|net|org|ru|ua|info|tv|io|me|link|ir|biz|su|by|kz|de|fr|co\.uk)\b",
    re.IGNORECASE,
)
_BRACKETS = re.compile(r"\[[^\[\]]{0,300}\]")
_PARENS = re.compile(r"\([^()]{0,300}\)")
_MUSIC_SPAN = re.compile(r"[♪♫]+[^♪♫]*[♪♫]+")
_MUSIC_LINE = re.compile(
    r"^\s*(?:[♪♫#].*|[\"“«'].{1,80}[\"”»'] (?:playing|plays|continues|ends|fades(?: out)?)\W*)$",
    re.IGNORECASE,
)
_LONE_STAR = re.compile(r"(?<!\S)\*+(?!\S)")
_SPEAKER = re.compile(
    r"^(\s*[-–—‐]?\s*)([A-ZА-ЯЁІЇЄҐ][A-ZА-ЯЁІЇЄҐ0-9'’.-]*(?: [A-ZА-ЯЁІЇЄҐ0-9'’.-]+){0,2})\s*:(?:\s+|$)"
)
_HAS_ALNUM = re.compile(r"[^\W_]")
_LETTER = re.compile(r"[^\W\d_]")
_UPPER = re.compile(r"[A-ZÀ-ÞА-ЯЁІЇЄҐЎ]")
_LOWER = re.compile(r"[a-zß-ÿа-яёіїєґў]")
_SPACES = re.compile(r"[ \t\u00a0]+")


@dataclass
class FluffPatterns:
    """Rules compiled once per config (the site lists live in config)."""

    rules: SubsFluffRules
    opensubtitles: re.Pattern[str]
    sites: re.Pattern[str]

    @classmethod
    def build(cls, rules: SubsFluffRules) -> FluffPatterns:
        phrases = [re.escape(p) for p in rules.opensubtitles_phrases]
        os_ad = re.compile(
            r"\bopen\s*subtitles\b|\bosdb\b" + "".join(f"|{p}" for p in phrases), re.IGNORECASE
        )
        names = "|".join(re.escape(s) for s in rules.ad_sites) or r"(?!x)x"
        sites = re.compile(rf"(?<![\w-])(?:{names})(?![\w-])", re.IGNORECASE)
        return cls(rules, os_ad, sites)


def strip_markup(text: str, counts: Counter[str]) -> str:
    """Remove HTML and ASS tags (text inside them stays) and decode HTML entities."""
    if "<" in text:
        text, n = _HTML_TAG.subn("", text)
        counts["html_tag"] += n
    if "{" in text:
        text, n = _ASS_TAG.subn("", text)
        counts["ass_tag"] += n
    if "\\" in text:
        text = _ASS_HARD_SPACE.sub(" ", _ASS_BREAK.sub("\n", text))
    if "&" in text:
        text = html.unescape(text)
    return text


def cue_rule(text: str, pat: FluffPatterns) -> str | None:
    """The name of the cue-level rule that drops this cue (an ad or a credit), or None."""
    r = pat.rules
    if r.opensubtitles_ad and pat.opensubtitles.search(text):
        return "opensubtitles_ad"
    if r.site_ad and (pat.sites.search(text) or _DOWNLOADED_FROM.search(text)):
        return "site_ad"
    if r.translator_credit:
        for line in text.split("\n"):
            if _CREDIT_EN.search(line) or _CREDIT_RU_UK.search(line) or _CREDIT_OTHER.search(line):
                return "translator_credit"
    return None


def _spans(text: str, counts: Counter[str], r: SubsFluffRules) -> str:
    """Span rules over the whole cue text, since [..] and (..) descriptions wrap across lines."""
    if r.sound_description and "[" in text:
        text, n = _BRACKETS.subn("", text)
        counts["sound_description"] += n
    if r.parenthetical and "(" in text:
        text, n = _PARENS.subn("", text)
        counts["parenthetical"] += n
    if r.music and ("♪" in text or "♫" in text):
        text, n = _MUSIC_SPAN.subn("", text)
        counts["music"] += n
    if r.lone_symbol and "*" in text:
        text, n = _LONE_STAR.subn("", text)
        counts["lone_symbol"] += n
    return text


def is_caps(line: str, min_letters: int) -> bool:
    """At least `min_letters` upper-case letters and no lower-case one (uncased scripts never are)."""
    upper = lower = 0
    for ch in _LETTER.findall(line):
        if ch.isupper():
            upper += 1
        elif ch.islower():
            lower += 1
    return upper >= min_letters and lower == 0


def foreign_script(line: str, script: str, rules: SubsFluffRules) -> bool:
    """True when most letters of the line are not in the file's script (e.g. Chinese in an en/zh file)."""
    letters = _LETTER.findall(line)
    if len(letters) < rules.foreign_script_min_letters:
        return False
    own = sum(1 for ch in letters if script_of(ch) == script)
    return own / len(letters) < rules.foreign_script_max_ratio


def script_of(ch: str) -> str:
    """"latin", "cyrillic" or "other" for one letter."""
    code = ord(ch)
    if code < 0x250:
        return "latin"
    if 0x400 <= code < 0x530:
        return "cyrillic"
    return "other"


def dominant_script(text: str) -> str:
    """The script most letters of a text are in ("latin", "cyrillic" or "other")."""
    counts = Counter(script_of(ch) for ch in _LETTER.findall(text))
    return counts.most_common(1)[0][0] if counts else "other"


def clean_cue_lines(
    text: str, pat: FluffPatterns, counts: Counter[str], mixed_case_file: bool, script: str = "other"
) -> list[str]:
    """Markup-free cue text -> its remaining lines (empty list when the whole cue is fluff)."""
    r = pat.rules
    rule = cue_rule(text, pat)
    if rule is not None:
        counts[rule] += 1
        return []
    text = _spans(text, counts, r)
    kept: list[str] = []
    for line in text.split("\n"):
        line = _SPACES.sub(" ", line).strip()
        if not line:
            continue
        if r.timing_residue and TIMING_LINE.match(line):
            counts["timing_residue"] += 1
            continue
        if r.url and _URL.search(line):
            counts["url"] += 1
            continue
        if r.music and _MUSIC_LINE.match(line):
            counts["music"] += 1
            continue
        if r.speaker_label:
            line, n = _SPEAKER.subn(r"\1", line)
            if n:
                counts["speaker_label"] += 1
                line = line.strip()
        if r.foreign_script_line and script != "other" and foreign_script(line, script, r):
            counts["foreign_script_line"] += 1
            continue
        if r.caps_caption and mixed_case_file and is_caps(line, r.caps_caption_min_letters):
            counts["caps_caption"] += 1
            continue
        if r.lone_symbol and not _HAS_ALNUM.search(line):
            counts["lone_symbol"] += 1
            continue
        kept.append(line)
    return kept


def split_pipes(text: str) -> str:
    """Converters sometimes join two lines as "a | b"; read that as a line break."""
    return _PIPE.sub("\n", text) if "|" in text else text


def upper_ratio(text: str) -> float:
    """Share of upper-case among cased letters (decides whether a file is written in ALL CAPS)."""
    upper = len(_UPPER.findall(text))
    lower = len(_LOWER.findall(text))
    return upper / (upper + lower) if upper + lower else 0.0
