"""Text normalization shared by the lib.ru cleaner, the subtitle cleaner and the tokenizer.

`normalize_text(text, cfg, language=...)` runs the enabled steps in a fixed order:
mojibake repair -> NFC -> invisible characters and line breaks -> ё→е -> dashes -> ellipsis ->
quotes -> spaces and blank lines. Every step is a plain function here too, so a caller that needs
one step (or a different order) can use it directly. All steps are linear-time regex passes.

Quotes and dashes follow the typography of the text's language (`cfg.typography`, a style of
TYPOGRAPHY_STYLES): Russian «…» „…“ and dialogue dashes are wrong in English, whose quotations
re-open at every continued paragraph or cue (`"and his client,` must not become `„and his client,`).
A caller that does not say the language gets Russian, the corpus's language.

Speed (the subtitle cleaner sends every line through here): a step first asks whether the characters
it rewrites occur at all (`in` is a fast C scan, far cheaper than a regex scan that finds nothing),
and patterns start with the character they rewrite rather than a look-behind, so that the regex
engine can skip ahead to that character instead of trying a match at every position.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from src.config.sections.normalize import TYPOGRAPHY_STYLES, NormalizeConfig
from src.text.mojibake import repair_mojibake

_INVISIBLE = re.compile("[\u00ad\u200b\u200c\u200d\u2060\ufeff]")
_ODD_SPACE = re.compile("[\t\u00a0\u2000-\u200a\u202f\u205f\u3000]")

# The spaced, line-start and glued rules rewrite a dash to "—", so an em dash needs no pattern, and a
# hyphen and an en dash get one each: a pattern that opens with one literal character is scanned for
# far faster than a character class (the passes cannot interact: they test the spaces and
# punctuation beside a dash, and the only space one adds is followed by "—").
# A dash standing alone between spaces (or at a line end after a space).
_SPACED_HYPHEN = re.compile(r"-(?<=[ \t]-)-?(?=[ \t]|$)", re.MULTILINE)
_SPACED_EN_DASH = re.compile(r"–(?<=[ \t]–)(?=[ \t]|$)", re.MULTILINE)
# Dialogue: a line that opens with a dash (matched on the text after a "\n" put in front).
_LINE_START_DASH = re.compile(r"\n([ \t]*)(?:--?|–)(?=[ \t])")
# "человек.- Их": a dash glued to the end of a sentence.
_GLUED_HYPHEN = re.compile(r"-(?<=[.,;:!?…]-)-?(?=[ \t])")
_GLUED_EN_DASH = re.compile(r"–(?<=[.,;:!?…]–)(?=[ \t])")
_NUMBER_RANGE = re.compile(r"--(?<=\d--)(?=\d)")
# English: a hyphen (or two) between spaces, with no digit on either side ("5 - 3" is arithmetic).
_EN_SPACED_HYPHEN = re.compile(r"-(?<=[^\d\n][ \t]-)-?(?=[ \t]+\D|$)", re.MULTILINE)
# Exactly two: a row of hyphens is a rule line, not a dash.
_DOUBLE_HYPHEN = re.compile(r"--(?<!---)(?!-)")

# Exactly three dots ("...", ". . ."), not a longer row: the first dot, then a look-back over it
# for a dot before.
_THREE_DOTS = re.compile(r"\.(?<!\.\.)(?:\.\.(?!\.)| \. \.(?! \.))")

_QUOTE_CHARS = re.compile("[\"«»„“”]")
# Quote characters by the role they play in the English styles ("“" is resolved by context there).
_EN_STRAIGHT = str.maketrans({"«": '"', "»": '"', "„": '"', "“": '"', "”": '"', "‘": "'", "’": "'", "‚": "'"})
# After these a straight quote opens; before these it closes.
_OPENS_AFTER = set(" \t([{«„—–-/")
_CLOSES_BEFORE = set(" \t.,;:!?)]}»…—–-")

_SPACE_RUN = re.compile(r" {2,}")
_LINE_EDGE_SPACE = re.compile(r"^ +| +$", re.MULTILINE)


def as_normalize_config(cfg: NormalizeConfig | Mapping[str, Any] | Any) -> NormalizeConfig:
    """A NormalizeConfig from itself, a DictConfig section or a plain dict (e.g. a tokenizer's meta)."""
    if isinstance(cfg, NormalizeConfig):
        return cfg
    known = {f.name for f in fields(NormalizeConfig)}
    if isinstance(cfg, Mapping):
        data = {str(k): cfg[k] for k in cfg}
    else:
        data = {k: getattr(cfg, k) for k in known if hasattr(cfg, k)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"normalize config: unknown key(s) {unknown}; known: {sorted(known)}")
    return NormalizeConfig(**data)


def typography_for(language: str, cfg: NormalizeConfig) -> str:
    """The typography style (one of TYPOGRAPHY_STYLES) `cfg` gives a language code."""
    style = cfg.typography.get(language, cfg.typography_default)
    if style not in TYPOGRAPHY_STYLES:
        key = f"typography.{language}" if language in cfg.typography else "typography_default"
        raise ValueError(f"normalize config: {key} must be one of {list(TYPOGRAPHY_STYLES)}, got {style!r}")
    return style


def normalize_text(
    text: str, cfg: NormalizeConfig | Mapping[str, Any] | Any, *, language: str = "ru"
) -> str:
    """Apply the enabled normalization steps of `cfg` (the `normalize` config section) to `text`,
    quotes and dashes in the typography of `language` (an ISO 639-1 code, e.g. "ru", "en")."""
    cfg = as_normalize_config(cfg)
    if not cfg.enabled:
        return text
    if cfg.repair_mojibake:
        fix = repair_mojibake(
            text, cfg.mojibake_sample_chars, cfg.mojibake_min_gain, cfg.mojibake_min_letters
        )
        text = fix.text
    if cfg.nfc:
        text = to_nfc(text)
    if cfg.whitespace:
        text = unify_line_breaks(text)
    if cfg.yo_to_e:
        text = yo_to_e(text)
    style = typography_for(language, cfg) if cfg.dashes or cfg.quotes else "keep"
    if cfg.dashes:
        text = normalize_dashes(text, style)
    if cfg.ellipsis:
        text = normalize_ellipsis(text)
    if cfg.quotes:
        text = normalize_quotes(text, nested=cfg.nested_quotes, style=style)
    if cfg.whitespace:
        text = collapse_whitespace(text, cfg.max_blank_lines)
    return text


def to_nfc(text: str) -> str:
    return text if unicodedata.is_normalized("NFC", text) else unicodedata.normalize("NFC", text)


def unify_line_breaks(text: str) -> str:
    """CRLF/CR -> LF, tabs and exotic spaces -> space, invisible characters (soft hyphen, ZWSP, BOM) out."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _INVISIBLE.sub("", text)
    return _ODD_SPACE.sub(" ", text)


def yo_to_e(text: str) -> str:
    # str.replace, not str.translate: translate looks every character up in a dict.
    if "ё" in text:
        text = text.replace("ё", "е")
    return text.replace("Ё", "Е") if "Ё" in text else text


def normalize_dashes(text: str, style: str = "ru") -> str:
    """Dash use -> "—" (between spaces, opening a dialogue line); "1863--1869" -> "1863–1869".

    English styles: only a doubled hyphen and a hyphen between spaces (not between numbers) are
    dashes; a hyphen opening a line marks a speaker and an en dash is a dash already."""
    if style == "keep":
        return text
    if style in ("en", "en_straight"):
        return _english_dashes(text)
    en_dash = "–" in text
    if "-" not in text and not en_dash:
        return text
    text = _LINE_START_DASH.sub(r"\n\1—", "\n" + text)[1:]
    text = _SPACED_HYPHEN.sub("—", text)
    text = _GLUED_HYPHEN.sub(" —", text)
    if en_dash:  # no rule above makes an en dash, so the check still holds
        text = _SPACED_EN_DASH.sub("—", text)
        text = _GLUED_EN_DASH.sub(" —", text)
    if "--" in text:  # the last two rules rewrite "--" only
        text = _NUMBER_RANGE.sub("–", text)
        text = _DOUBLE_HYPHEN.sub("—", text)
    return text


def _english_dashes(text: str) -> str:
    if "-" not in text:
        return text
    text = _EN_SPACED_HYPHEN.sub("—", text)
    if "--" in text:
        text = _NUMBER_RANGE.sub("–", text)
        text = _DOUBLE_HYPHEN.sub("—", text)
    return text


def normalize_ellipsis(text: str) -> str:
    return _THREE_DOTS.sub("…", text) if ".." in text or ". ." in text else text


def normalize_quotes(text: str, nested: bool = True, style: str = "ru") -> str:
    """One kind of quotes, decided line by line: Russian «outer» (and „inner“ when `nested`);
    English (`style` "en") “…” at every level; "en_straight" straight quotes; "keep" untouched.

    Straight quotes are opened or closed by what stands beside them; “ closes a „ and otherwise
    opens (the English convention). Quote state never crosses a line, so one stray quote cannot
    flip the rest of a document.
    """
    if style == "keep":
        return text
    if style == "en_straight":
        return text.translate(_EN_STRAIGHT)
    if not _QUOTE_CHARS.search(text):
        return text
    marks = ("“", "“", "”", "”") if style == "en" else ("«", "„", "»", "“")
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if _QUOTE_CHARS.search(line):
            lines[i] = _requote_line(line, nested, marks)
    return "\n".join(lines)


def _requote_line(line: str, nested: bool, marks: tuple[str, str, str, str]) -> str:
    """`marks`: opening outer, opening inner, closing outer, closing inner."""
    open_outer, open_inner, close_outer, close_inner = marks
    out = list(line)
    stack: list[str] = []  # the source characters that opened the quotes still open
    last = len(line) - 1
    for match in _QUOTE_CHARS.finditer(line):
        i, ch = match.start(), match.group()
        if ch in "«„":
            opening = True
        elif ch in "»”":
            opening = False
        elif ch == "“":
            opening = not (stack and stack[-1] == "„")
        else:  # straight quote: look at the neighbours
            before = line[i - 1] if i > 0 else " "
            after = line[i + 1] if i < last else " "
            if before in _OPENS_AFTER and after not in _CLOSES_BEFORE:
                opening = True
            elif after in _CLOSES_BEFORE and before not in _OPENS_AFTER:
                opening = False
            else:
                opening = not stack
        if opening:
            out[i] = open_inner if nested and stack else open_outer
            stack.append(ch)
        else:
            if stack:
                stack.pop()
            out[i] = close_inner if nested and stack else close_outer
    return "".join(out)


def collapse_whitespace(text: str, max_blank_lines: int) -> str:
    """Single spaces, no spaces at line edges, at most `max_blank_lines` blank lines in a row."""
    if "  " in text:
        text = _SPACE_RUN.sub(" ", text)
    if text.startswith(" ") or text.endswith(" ") or " \n" in text or "\n " in text:
        text = _LINE_EDGE_SPACE.sub("", text)
    if "\n" * (max_blank_lines + 2) in text:
        text = re.sub(rf"\n{{{max_blank_lines + 2},}}", "\n" * (max_blank_lines + 1), text)
    return text.strip("\n")
