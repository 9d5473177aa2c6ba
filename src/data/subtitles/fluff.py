"""Markup and fluff removal: named rules, each counted every time it fires.

Four scopes, applied in this order:
- markup: HTML tags (<i>, <font ...>) and ASS override tags ({\\an8}) are removed, text kept;
- cue rules drop the whole cue: site ads, credits and title cards span several lines ("Subtitles by"
  + a name; "Captioning sponsored by" + sponsors, going on in the next cues; an episode title +
  "Original Air Date on ...");
- span rules cut a piece out of a cue ([music], ( wind whistling ), ♪ ... ♪, "* sung *");
- line rules drop one line (URLs, on-screen captions, nothing left but symbols) or cut its speaker
  label ("JERRY:"). One of them is not a switch: a line holding two timestamp-like groups (a timing
  line that reached the text, however mangled) is never dialogue (`timing_like_line`).

Speed: a file's cues are joined with a separator line no pattern can cross, and every regex runs once
over the whole file; per cue only what a pass found is looked at. Calling each regex once per cue
cost more than the scanning itself. Likewise the line rules: file-wide passes (with cheap
pre-filters that may flag more than the rule drops, never less) pick the few cues whose lines need
the per-line tests; the other cues' lines are only stripped.
"""

from __future__ import annotations

import html
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from src.config.sections.clean_subs import SubsFluffRules
from src.data.subtitles.charcount import CharClass, bmp_points
from src.data.subtitles.cue_rules import (
    CueRule,
    build_cue_rules,
    drop_credit_continuations,
    whole_word,
)
from src.data.subtitles.srt_parse import TIMING_LIKE, TIMING_LINE, is_timing_like, might_hold_timing

_HTML_TAG = re.compile(r"</?[A-Za-z][^<>\n]*>")
_ASS_TAG = re.compile(r"\{\\[^{}\x00]*\}|\{[A-Za-z]:[^{}\x00]*\}")  # {\an8} and MicroDVD's {y:i}
_ASS_BREAK = re.compile(r"\\[Nn]")
_ASS_HARD_SPACE = re.compile(r"\\h")
_PIPE = re.compile(r"\s+\|\s+")

# Matched on lower-cased text. Every alternative starts with a literal, which keeps the scan fast;
# the letter before a top-level domain is checked in Python (a look-behind would slow every ".").
_URL = re.compile(
    r"https?://|www\.|@[\w-]+\.\w|\[at\]"
    r"|\.(?:com|net|org|ru|ua|info|tv|io|me|link|ir|biz|su|by|kz|de|fr|co\.uk)\b"
)
_BRACKETS = re.compile(r"\[[^\[\]\x00]{0,300}\]")
_PARENS = re.compile(r"\([^()\x00]{0,300}\)")
# A sung passage: note signs around text, over lines of one cue. A sign right at a line's start
# opens a passage rather than closes one ("♪ Ah.\n♪ Men." is two sung lines, not "♪ Ah.\n♪" + text).
_MUSIC_SPAN = re.compile(r"[♪♫]+[^♪♫\x00]*[^\s♪♫\x00][ \t]*[♪♫]+")
_NOTE = re.compile("[♪♫]")
# A line opened by a note sign that no sign closes: the song goes on over the cue's next lines
# ("♪ Oh, when\nthe saints go marching in") up to a speaker dash or the next note sign.
_OPEN_SONG = re.compile(r"^[ \t]*[♪♫][^\n\x00]*(?:\n(?![ \t]*[-–—‐♪♫])[^\n\x00]+)*", re.MULTILINE)
# Captions without note signs mark sung lines with "*": from a line that starts with "*" through
# the line that ends with "*" (the same line, or a later one of the cue before the next "*" line);
# or a single line opened by "* " (or by "*" with no other star on it) that nothing closes. A lone "*" after a sentence is a footnote
# mark, and "*Really?* No way." emphasis: neither is touched.
_STAR_SONG = re.compile(
    r"^[ \t]*\*(?=[ \t]*[^\s*])(?:[^\n\x00]*(?:\n(?![ \t]*\*)[^\n\x00]*)*?\S[ \t]*\*|[ \t]+[^\n\x00]*|[^*\n\x00]*)[ \t]*$",
    re.MULTILINE,
)
_MUSIC_LINE = re.compile(
    r"^\s*(?:[♪♫#].*|[\"“«'].{1,80}[\"”»'] (?:playing|plays|continues|ends|fades(?: out)?)\W*)$",
    re.IGNORECASE | re.MULTILINE,
)
_LONE_STAR = re.compile(r"(?<!\S)\*+(?!\S)")
_SPEAKER = re.compile(
    r"^(\s*[-–—‐]?\s*)([A-ZА-ЯЁІЇЄҐ][A-ZА-ЯЁІЇЄҐ0-9'’.-]*(?: [A-ZА-ЯЁІЇЄҐ0-9'’.-]+){0,2})\s*:(?:\s+|$)"
)
_HAS_ALNUM = re.compile(r"[^\W_]")
# A line (after its "\n"; not a separator line) without a letter that upper() surely changes: only
# such a line can be an ALL-CAPS caption or hold no letter or digit at all.
_NO_SURE_LOWER_LINE = re.compile(r"\n(?!\x00\n)[^a-zа-яё\n]+(?=\n|\Z)")
_UPPER = re.compile(r"[A-ZÀ-ÞА-ЯЁІЇЄҐЎ]+")
_LOWER = re.compile(r"[a-zß-ÿа-яёіїєґў]+")
_LETTERS = re.compile(r"[^\W\d_]+")
# Per script: its letters, and any letter outside it.
_SCRIPT_RX = {
    "latin": (re.compile(r"[A-Za-z\u00c0-\u024f]+"), re.compile(r"[^\W\d_A-Za-z\u00c0-\u024f]")),
    "cyrillic": (re.compile(r"[\u0400-\u052f]+"), re.compile(r"[^\W\d_\u0400-\u052f]")),
}
_SPACES = re.compile(r"[ \t\u00a0]+")
# The same classes, counted with lookup tables (see charcount).
_UPPER_CLASS, _LOWER_CLASS, _LETTER_CLASS = CharClass(_UPPER), CharClass(_LOWER), CharClass(_LETTERS)
_SCRIPT_LETTERS = {name: CharClass(own) for name, (own, _) in _SCRIPT_RX.items()}
# A line `_MUSIC_LINE` drops holds one of these (its quoted-title form: a quote, then a space).
_MUSIC_LINE_NEEDLES = ("♪", "♫", "#", '" ', "” ", "» ", "' ")
# Below this code point the characters that count as "a letter outside the script" are listed
# exactly; from it on every character is a candidate (the general punctuation below it is not).
_SCRIPT_SCAN_LIMIT = 0x2070


def _outside_letter_candidates(other: re.Pattern[str]) -> re.Pattern[str]:
    """A plain character class matching every character `other` matches, and more only from
    _SCRIPT_SCAN_LIMIT on. `other` uses Unicode categories (\\W, \\d), which make the regex engine
    test every character of a text slowly; a class of code point ranges is scanned much faster."""
    chars = "".join(map(chr, range(_SCRIPT_SCAN_LIMIT)))
    points = [m.start() for m in other.finditer(chars)]
    ranges: list[list[int]] = []
    for cp in points:
        if ranges and ranges[-1][1] == cp - 1:
            ranges[-1][1] = cp
        else:
            ranges.append([cp, cp])
    ranges.append([_SCRIPT_SCAN_LIMIT, 0x10FFFF])
    return re.compile("[" + "".join(f"\\U{a:08x}-\\U{b:08x}" for a, b in ranges) + "]")


_OUTSIDE_CANDIDATES = {script: _outside_letter_candidates(other) for script, (_, other) in _SCRIPT_RX.items()}


# Joins a file's cues: its own line, holding a character no span pattern accepts.
SEP = "\n\x00\n"


@dataclass
class FluffPatterns:
    """Rules compiled once per config (the site lists live in config)."""

    rules: SubsFluffRules
    cue_rules: list[CueRule]  # in priority order

    @classmethod
    def build(cls, rules: SubsFluffRules) -> FluffPatterns:
        return cls(rules, build_cue_rules(rules))


def _is_url(text: str, m: re.Match[str]) -> bool:
    """A ".com"-like match is a domain only after a letter or digit ("wait...me" is not one)."""
    if m.group()[0] != ".":
        return True
    return m.start() > 0 and text[m.start() - 1].isalnum()


def has_url(lower: str) -> bool:
    return any(_is_url(lower, m) for m in _URL.finditer(lower))


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


def split_pipes(text: str) -> str:
    """Converters sometimes join two lines as "a | b"; read that as a line break."""
    return _PIPE.sub("\n", text) if "|" in text else text


def _spans(text: str, counts: Counter[str], r: SubsFluffRules) -> str:
    """Span rules; [..] and (..) descriptions may wrap over lines of one cue."""
    if r.sound_description and "[" in text:
        text, n = _BRACKETS.subn("", text)
        counts["sound_description"] += n
    if r.parenthetical and "(" in text:
        text, n = _PARENS.subn("", text)
        counts["parenthetical"] += n
    if r.music and ("♪" in text or "♫" in text):
        text, n = _MUSIC_SPAN.subn("", text)
        counts["music"] += n
        if "♪" in text or "♫" in text:
            text, n = _OPEN_SONG.subn("", text)
            counts["music"] += n
    if r.music and r.music_star_marker and "*" in text:
        text, n = _STAR_SONG.subn("", text)
        counts["music"] += n
    if r.lone_symbol and "*" in text:
        text, n = _LONE_STAR.subn("", text)
        counts["lone_symbol"] += n
    return text


class _Joined:
    """Cue texts joined by SEP, mapping a match position back to its cue."""

    def __init__(self, texts: list[str], text: str | None = None, starts: np.ndarray | None = None) -> None:
        self.text = SEP.join(texts) if text is None else text
        if starts is None:
            lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts)) + len(SEP)
            starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
        self.starts = starts

    def lower(self, texts: list[str]) -> _Joined:
        """The same texts lower-cased (`texts` are the pieces joined). One lower() call over the whole
        text when that keeps every offset (lower() may lengthen a character: "İ"), else cue by cue."""
        lowered = self.text.lower()
        if len(lowered) == len(self.text):
            return _Joined(texts, lowered, self.starts)
        return _Joined([t.lower() for t in texts])

    def cues_hit(
        self, rx: re.Pattern[str], keep: Callable[[str, re.Match[str]], bool] | None = None
    ) -> set[int]:
        """Indexes of the cues `rx` matches in (by the match's last character: a `^\\W*` pattern may
        start on the separator line); `keep` filters matches."""
        text = self.text
        ends = [m.end() - 1 for m in rx.finditer(text) if keep is None or keep(text, m)]
        return self._cues_at(ends)

    def cues_with_line(self, rx: re.Pattern[str]) -> set[int]:
        """Indexes of the cues that hold a line `rx` matches, `rx` matching the line with the "\n"
        before it (a literal first character makes the scan fast; the first line gets one too)."""
        return self._cues_at([m.end() - 2 for m in rx.finditer("\n" + self.text)])

    def _cues_at(self, positions: list[int]) -> set[int]:
        if not positions:
            return set()
        return set((np.searchsorted(self.starts, positions, side="right") - 1).tolist())


def is_caps(line: str, min_letters: int) -> bool:
    """At least `min_letters` upper-case letters and no lower-case one (uncased scripts never are)."""
    return line == line.upper() and sum(map(len, _UPPER.findall(line))) >= min_letters


def foreign_script(line: str, script: str, rules: SubsFluffRules) -> bool:
    """True when most letters of the line are not in the file's script (e.g. Chinese in an en/zh file)."""
    own_rx, other_rx = _SCRIPT_RX[script]
    if other_rx.search(line) is None:  # the common case, decided by one regex search
        return False
    letters = sum(map(len, _LETTERS.findall(line)))
    if letters < rules.foreign_script_min_letters:
        return False
    return sum(map(len, own_rx.findall(line))) < rules.foreign_script_max_ratio * letters


def dominant_script(text: str) -> str:
    """The script most letters of a text are in ("latin", "cyrillic" or "other")."""
    points = bmp_points(text)
    counts = {name: own.count(text, points) for name, own in _SCRIPT_LETTERS.items()}
    counts["other"] = _LETTER_CLASS.count(text, points) - sum(counts.values())
    best = max(counts, key=lambda k: counts[k])
    return best if counts[best] else "other"


def upper_ratio(text: str) -> float:
    """Share of upper-case among cased letters (decides whether a file is written in ALL CAPS)."""
    points = bmp_points(text)
    upper = _UPPER_CLASS.count(text, points)
    lower = _LOWER_CLASS.count(text, points)
    return upper / (upper + lower) if upper + lower else 0.0


def prepare_cues(texts: list[str], counts: Counter[str], pipes: bool) -> list[str]:
    """Markup removal (and " | " line breaks) over all cue texts of a file in a few regex passes."""
    if not texts:
        return []
    joined = SEP.join(t.replace("\x00", "") for t in texts)
    joined = strip_markup(joined, counts)
    if pipes:
        joined = split_pipes(joined)
    return joined.split(SEP)


def clean_cues(
    texts: list[str], pat: FluffPatterns, counts: Counter[str], mixed_case_file: bool,
    script: str = "other",
) -> list[list[str]]:
    """Markup-free cue texts -> each cue's remaining lines (empty when the whole cue is fluff)."""
    r = pat.rules
    lower = _Joined(texts).lower(texts)
    dropped: dict[int, str] = {}
    for rule in pat.cue_rules:
        if not any(needle in lower.text for needle in rule.needles):
            continue
        for i in lower.cues_hit(rule.pattern, keep=whole_word if rule.whole_word else None):
            dropped.setdefault(i, rule.name)
    drop_credit_continuations(texts, dropped)
    counts.update(dropped.values())
    kept_ids = [i for i in range(len(texts)) if i not in dropped]
    out: list[list[str]] = [[] for _ in texts]
    if not kept_ids:
        return out
    spanned = _spans(SEP.join(texts[i] for i in kept_ids), counts, r)
    if "  " in spanned or "\t" in spanned or "\u00a0" in spanned:  # else _SPACES has nothing to do
        spanned = _SPACES.sub(" ", spanned)
    bodies = spanned.split(SEP)
    joined = _Joined(bodies, spanned)
    # One pass per line rule over the whole file says which cues need a per-line look.
    timing = set()
    if might_hold_timing(spanned):
        timing = joined.cues_hit(TIMING_LIKE) | joined.cues_hit(TIMING_LINE)
    url = joined.lower(bodies).cues_hit(_URL, keep=_is_url) if r.url else set()
    music = set()
    if r.music and any(needle in spanned for needle in _MUSIC_LINE_NEEDLES):
        music = joined.cues_hit(_MUSIC_LINE)
        if "♪" in spanned or "♫" in spanned:
            music |= joined.cues_hit(_NOTE)
    foreign = set()
    if r.foreign_script_line and script in _SCRIPT_RX:  # lines with a letter outside the script
        foreign = joined.cues_hit(_OUTSIDE_CANDIDATES[script])
    caps = r.caps_caption and mixed_case_file
    # Cues no line rule can touch (most of them) skip the per-line tests: that loop is the cost.
    special = timing | url | music | foreign
    if (caps or r.lone_symbol) and spanned.count("\x00") == len(bodies) - 1:
        special |= joined.cues_with_line(_NO_SURE_LOWER_LINE)
    elif caps or r.lone_symbol:  # NUL inside a cue text: every cue takes the slow path
        special = set(range(len(bodies)))
    for k, (i, body) in enumerate(zip(kept_ids, bodies, strict=True)):
        speaker = r.speaker_label and ":" in body
        if k not in special and not speaker:
            if "\n" in body:
                out[i] = [line for line in map(str.strip, body.split("\n")) if line]
            elif line := body.strip():  # one line, most cues
                out[i] = [line]
            continue
        kept: list[str] = out[i]
        for line in body.split("\n"):
            line = line.strip()
            if not line:
                continue
            if k in timing and is_timing_like(line):
                counts["timing_like_line"] += 1
                continue
            if k in url and has_url(line.lower()):
                counts["url"] += 1
                continue
            # A note sign left after the ♪ ... ♪ spans went opens or closes a sung passage.
            if k in music and ("♪" in line or "♫" in line or _MUSIC_LINE.match(line)):
                counts["music"] += 1
                continue
            if speaker:
                line, n = _SPEAKER.subn(r"\1", line)
                if n:
                    counts["speaker_label"] += 1
                    line = line.strip()
            if k in foreign and foreign_script(line, script, r):
                counts["foreign_script_line"] += 1
                continue
            # (the first test is is_caps's own, cheaper here than a call for every line)
            if caps and line == line.upper() and is_caps(line, r.caps_caption_min_letters):
                counts["caps_caption"] += 1
                continue
            # [^\W_] is exactly str.isalnum(); a line's first or last character usually settles it
            if r.lone_symbol and not (line[:1].isalnum() or line[-1:].isalnum() or _HAS_ALNUM.search(line)):
                counts["lone_symbol"] += 1
                continue
            kept.append(line)
    return out


def clean_cue_lines(
    text: str, pat: FluffPatterns, counts: Counter[str], mixed_case_file: bool, script: str = "other"
) -> list[str]:
    """One cue's remaining lines (see `clean_cues`)."""
    return clean_cues([text], pat, counts, mixed_case_file, script)[0]
