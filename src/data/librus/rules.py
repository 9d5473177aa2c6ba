"""Named, counted rules that cut the editorial apparatus of academic editions out of a work.

Rules run on reflowed text (one paragraph per line), in the order of `RULE_ORDER`. Each is built
from `LibrusRulesConfig`, can be switched off there, and reports how many times it fired and how many
characters it removed. Every pattern is anchored on something the apparatus has and prose lacks:
a whole short line, a colon after a known keyword, a volume *and* a page number, a shelfmark after
an archive code. `python -m src.bench.clean_librus` measures what they remove from clean prose.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from src.config.sections.clean_librus import LibrusRulesConfig

RULE_ORDER: tuple[str, ...] = (
    "credits", "footnotes", "apparatus_sections", "letter_headers", "textological_notes",
    "archive_codes", "bib_footnotes", "index_entries", "volume_refs", "note_markers",
)

_DASHED_RULE = re.compile(r"^[ \t]*-{10,}[ \t]*$", re.MULTILINE)
_CREDIT_WORDS = (
    r"OCR|Spell-?check(?:ed|ing)?|Origin(?:al)?|Scan(?:ned|ning)?|Date|Оригинал(?:[ \t]+здесь)?|"
    r"Источник(?:[ \t]+текста)?|Сканирование|Распознавание|Вычитка|Корректура|Подготовка[ \t]+текста|"
    r"Текст[ \t]+подготовлен|Оцифровка|Сверка|Набор|Электронная[ \t]+версия|Copyright|©"
)
_CREDIT_LINE = re.compile(rf"^[ \t]*(?:{_CREDIT_WORDS})[ \t]*[:\-][^\n]{{0,200}}$\n?", re.MULTILINE | re.IGNORECASE)
_CREDIT_HINT = re.compile(rf"^[ \t]*(?:{_CREDIT_WORDS})[ \t]*[:\-]|https?://|www\.|\w@\w", re.MULTILINE | re.IGNORECASE)

_NOTE_MARK = r"\(сноска[ \t]*\d+\)|\[\d{1,3}\]|\{\d{1,3}\}"
_FOOTNOTE_START = re.compile(rf"^\s*(?:{_NOTE_MARK}|\*{{1,3}}\)?[ \t]|\d{{1,3}}\)[ \t])")
_FOOTNOTE_BODY = re.compile(rf"^[ \t]*(?:{_NOTE_MARK})[ \t]*\S[^\n]*\n?", re.MULTILINE)

_INITIALS = r"(?:[А-ЯЁ][а-яё]?\.[ \t]?){1,2}"
_DATIVE = r"(?:[А-ЯЁ][а-яё]+(?:-[А-ЯЁ][а-яё]+)?(?:у|ю|ой|ей|ым|им)|[А-ЯЁ]+(?:-[А-ЯЁ]+)?(?:У|Ю|ОЙ|ЕЙ|ЫМ|ИМ))"
_SENDER = rf"(?:{_INITIALS})?[А-ЯЁ][а-яёА-ЯЁ]+[ \t]*(?:—|–|--?)[ \t]*"
_ADDRESSEE = rf"(?:{_INITIALS}[ \t]?{_DATIVE}|{_DATIVE}[ \t]+{_INITIALS})"
_LETTER_HEADER = re.compile(
    rf"^[ \t]*(?:\d{{1,4}}\.?[ \t]+)?(?:{_SENDER}(?:{_ADDRESSEE}|{_DATIVE})|{_ADDRESSEE})"
    rf"(?:[ \t]+и[ \t]+{_ADDRESSEE})?[ \t]*\.?[ \t]*$\n?",
    re.MULTILINE,
)

_LINE_REF = re.compile(
    r"^[ \t]*(?:Стр|С)\.[ \t]*\d+[ \t]*[,.][ \t]*(?:строк[аи]|стр\.|сн\.)[^\n]*\n?", re.MULTILINE
)

_SHELF = r"(?:[,;]?[ \t]*(?:ф|фонд|оп|ед\.[ \t]?хр|д|л|лл|к|карт|№)\.?[ \t]*[\dIVXLC]+[а-я]?(?:[ \t]*об\.)?)"
_SOURCE_OPENERS = (
    r"Печатается[ \t]+по|Впервые|Автограф|Черновой[ \t]+автограф|Беловой[ \t]+автограф|Копия|Подлинник"
)

_ROMAN_OR_NUM = r"[IVXLC\d]+"
_EDITION = r"(?:ПСС|Полн\.[ \t]?собр\.[ \t]?соч\.|Собр\.[ \t]?соч\.|Соч\.|Письма|Сочинения)"
_VOLUME_PAGE = (
    rf"(?:{_EDITION}[ \t]*,?[ \t]*)?[Тт]\.[ \t]?{_ROMAN_OR_NUM}(?:[ \t]*,[ \t]*(?:кн|ч|вып)\.[ \t]?\d+)?"
    rf"[ \t]*,[ \t]*(?:с|стр)\.[ \t]?\d+(?:[ \t]*[-–—][ \t]*\d+)?"
)
_EDITION_VOLUME = rf"{_EDITION}[ \t]*,?[ \t]*[Тт]\.[ \t]?{_ROMAN_OR_NUM}\b"
_REF = rf"(?:{_VOLUME_PAGE}|{_EDITION_VOLUME})"
_PAREN_REFS = re.compile(rf"[ \t]?\((?:[Сс]м\.|[Сс]р\.)?[ \t]*{_REF}(?:[ \t]*[;,][ \t]*{_REF})*[ \t]*\.?\)")
_BARE_REF = re.compile(rf"(?:(?:[Сс]м\.|[Сс]р\.)[ \t]*)?{_REF}")

_BIB_TOKEN = re.compile(
    r"\b[Тт]\.[ \t]?[IVXLC\d]+\b|\b(?:с|стр)\.[ \t]?\d+|№[ \t]?\d+|\bизд\.|"
    r"\b(?:М|Л|СПб|Спб|Пг)\.,?[ \t]?1[89]\d\d"
)
_NUMBERED_LINE = re.compile(r"^[ \t]*(?:\d{1,3}[.)]?|\*{1,3})[ \t]+[^\n]*$\n?", re.MULTILINE)

_PAGE_LIST_END = re.compile(r"[—–-][ \t]*\d{1,4}(?:[ \t]*,[ \t]*\d{1,4})+\.?[ \t]*$")
_CAPITALIZED_LINE = re.compile(r"^[ \t]*[А-ЯЁA-Z«\"][^\n]*$\n?", re.MULTILINE)

_NOTE_MARKERS = re.compile(
    rf"[ \t]?(?:{_NOTE_MARK}|\[\*+\])|[¹²³⁴⁵⁶⁷⁸⁹⁰]+|"
    r"(?<=[^\W\d_])\*{1,3}(?![\w*])|(?<=[^\W\d_][.,;:!?»)])\*{1,3}(?![\w*])"
)


@dataclass
class RuleCount:
    matches: int = 0
    chars_removed: int = 0

    def add(self, other: RuleCount) -> None:
        self.matches += other.matches
        self.chars_removed += other.chars_removed


@dataclass(frozen=True)
class Rule:
    """A named text -> text transform that reports (matches, characters removed)."""

    name: str
    apply: Callable[[str], tuple[str, int]]  # returns (new text, matches)

    def __call__(self, text: str) -> tuple[str, RuleCount]:
        new, matches = self.apply(text)
        return new, RuleCount(matches, len(text) - len(new))


def _sub_all(*patterns: re.Pattern[str]) -> Callable[[str], tuple[str, int]]:
    def apply(text: str) -> tuple[str, int]:
        total = 0
        for pattern in patterns:
            text, n = pattern.subn("", text)
            total += n
        return text, total

    return apply


def _sub_if(pattern: re.Pattern[str], keep: Callable[[str], bool]) -> Callable[[str], tuple[str, int]]:
    """Remove the matches of `pattern` for which `keep(match)` is False."""

    def apply(text: str) -> tuple[str, int]:
        removed = 0

        def repl(match: re.Match[str]) -> str:
            nonlocal removed
            if keep(match.group()):
                return match.group()
            removed += 1
            return ""

        return pattern.sub(repl, text), removed

    return apply


def _dashed_blocks(predicate: Callable[[str], bool], max_chars: int) -> Callable[[str], tuple[str, int]]:
    """Remove blocks between two lines of dashes whose content satisfies `predicate`."""

    def apply(text: str) -> tuple[str, int]:
        rules = list(_DASHED_RULE.finditer(text))
        spans: list[tuple[int, int]] = []
        i = 0
        while i + 1 < len(rules):
            start, end = rules[i], rules[i + 1]
            content = text[start.end():end.start()]
            if len(content) <= max_chars and predicate(content):
                spans.append((start.start(), end.end()))
                i += 2
            else:
                i += 1
        for a, b in reversed(spans):
            text = text[:a] + text[b:]
        return text, len(spans)

    return apply


def _combine(*steps: Callable[[str], tuple[str, int]]) -> Callable[[str], tuple[str, int]]:
    def apply(text: str) -> tuple[str, int]:
        total = 0
        for step in steps:
            text, n = step(text)
            total += n
        return text, total

    return apply


def _alternation(words: list[str], escape: bool = True) -> str:
    items = sorted({w.strip() for w in words if w.strip()}, key=len, reverse=True)
    return "|".join((re.escape(w) if escape else w).replace(r"\ ", r"[ \t]+") for w in items)


def _apparatus_sections(titles: list[str]) -> Callable[[str], tuple[str, int]]:
    header = re.compile(
        rf"^[ \t]*(?:{_ROMAN_OR_NUM}[.)]?[ \t]*)?\*?[ \t]*(?:{_alternation(titles)})[ \t]*[.:]?[ \t]*$",
        re.MULTILINE | re.IGNORECASE,
    )

    def apply(text: str) -> tuple[str, int]:
        # The apparatus follows the work: from its first header to the end of the text.
        match = header.search(text)
        if match is None:
            return text, 0
        return text[: match.start()].rstrip() + "\n", 1

    return apply


def build_rules(cfg: LibrusRulesConfig) -> list[Rule]:
    """The enabled rules, in `RULE_ORDER`."""
    prefixes = _alternation(cfg.textological_prefixes)
    codes = _alternation(cfg.archive_code_names)
    factories: dict[str, Callable[[], Callable[[str], tuple[str, int]]]] = {
        "credits": lambda: _combine(
            _dashed_blocks(lambda c: bool(_CREDIT_HINT.search(c)), cfg.block_max_chars),
            _sub_all(_CREDIT_LINE),
        ),
        "footnotes": lambda: _combine(
            _dashed_blocks(lambda c: bool(_FOOTNOTE_START.match(c)), cfg.block_max_chars),
            _sub_all(_FOOTNOTE_BODY),
        ),
        "apparatus_sections": lambda: _apparatus_sections(cfg.section_titles),
        "letter_headers": lambda: _sub_if(
            _LETTER_HEADER, lambda line: len(line.strip()) > cfg.letter_header_max_chars
        ),
        "textological_notes": lambda: _sub_all(
            re.compile(rf"^[ \t]*(?:{prefixes})[ \t]*:[^\n]*\n?", re.MULTILINE | re.IGNORECASE),
            re.compile(rf"[ \t]?[<\[][ \t]*(?:{prefixes})\b[^>\]\n]{{0,300}}[>\]]", re.IGNORECASE),
            _LINE_REF,
        ),
        "archive_codes": lambda: _sub_all(
            re.compile(rf"^[ \t]*(?:{_SOURCE_OPENERS})\b[^\n]*?\b(?:{codes})\b[^\n]*\n?", re.MULTILINE),
            re.compile(rf"[ \t]?\(?\b(?:{codes})\b{_SHELF}+\)?"),
            re.compile(rf"[ \t]?\((?:{codes})(?:[ \t]*[,;][ \t]*(?:{codes}))*\)"),
        ),
        "volume_refs": lambda: _sub_all(_PAREN_REFS, _BARE_REF),
        "bib_footnotes": lambda: _sub_if(
            _NUMBERED_LINE,
            lambda line: len(line) > cfg.bib_footnote_max_chars or not _BIB_TOKEN.search(line),
        ),
        "index_entries": lambda: _sub_if(
            _CAPITALIZED_LINE,
            lambda line: len(line) > cfg.index_entry_max_chars or not _PAGE_LIST_END.search(line),
        ),
        "note_markers": lambda: _sub_all(_NOTE_MARKERS),
    }
    return [Rule(name, factories[name]()) for name in RULE_ORDER if getattr(cfg, name)]


def apply_rules(text: str, rules: list[Rule]) -> tuple[str, dict[str, RuleCount]]:
    counts: dict[str, RuleCount] = {}
    for rule in rules:
        text, count = rule(text)
        counts[rule.name] = count
    return text, counts
