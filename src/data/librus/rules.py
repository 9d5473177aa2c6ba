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
    "separator_lines",
)

_DASHED_RULE = re.compile(r"^[ \t]*-{10,}[ \t]*$", re.MULTILINE)
# Typographic rules (----, ====, ____) left after the blocks they framed are gone; "* * *" stays.
_SEPARATOR_LINE = re.compile(r"^[ \t]*(?:-{5,}|={5,}|_{5,})[ \t]*$\n?", re.MULTILINE)
_CREDIT_WORDS = (
    r"OCR|Spell-?check(?:ed|ing)?|Origin(?:al)?|Scan(?:ned|ning)?|Date|Оригинал(?:[ \t]+здесь)?|"
    r"Источник(?:[ \t]+текста)?|Исходник(?:[ \t]+здесь)?|Сканирование|Распознавание|Вычитка|Корректура|Подготовка[ \t]+текста|"
    r"Текст[ \t]+подготовлен|Оцифровка|Сверка|Набор|Электронная[ \t]+версия|Copyright|©"
)
# "OCR: ...", "OCR, spellcheck: ...", "Scan & OCR - ...".
_CREDIT_HEAD = rf"^[ \t]*(?:{_CREDIT_WORDS})(?:[ \t]*(?:,|/|&|и)[ \t]*(?:{_CREDIT_WORDS}))*[ \t]*[:\-]"
_CREDIT_LINE = re.compile(rf"{_CREDIT_HEAD}[^\n]{{0,200}}$\n?", re.MULTILINE | re.IGNORECASE)
_CREDIT_HINT = re.compile(rf"{_CREDIT_HEAD}|https?://|www\.|\w@\w", re.MULTILINE | re.IGNORECASE)

_NOTE_MARK = r"\(сноска[ \t]*\d+\)|\[\d{1,3}\]|\{\d{1,3}\}"
_FOOTNOTE_START = re.compile(rf"^\s*(?:{_NOTE_MARK}|\*{{1,3}}\)?[ \t]|\d{{1,3}}\)[ \t])")


def _footnote_body(max_lines: int) -> re.Pattern[str]:
    """A paragraph opening with a note mark, and the lines after it up to a blank line."""
    return re.compile(
        rf"^[ \t]*(?:{_NOTE_MARK})[ \t]*\S[^\n]*(?:\n(?![ \t]*\n)[^\n]*){{0,{max_lines}}}\n?",
        re.MULTILINE,
    )


_INITIALS = r"(?:[А-ЯЁ][а-яё]?\.[ \t]?){1,2}"
_DATIVE = r"(?:[А-ЯЁ][а-яё]+(?:-[А-ЯЁ][а-яё]+)?(?:у|ю|ой|ей)|[А-ЯЁ]+(?:-[А-ЯЁ]+)?(?:У|Ю|ОЙ|ЕЙ))"
# Without initials only a masculine dative is distinctive enough ("Чехов — Суворину").
_DATIVE_MASCULINE = r"(?:[А-ЯЁ][а-яё]+(?:у|ю)|[А-ЯЁ]+(?:У|Ю))"
_SENDER = rf"(?:{_INITIALS})?[А-ЯЁ][а-яёА-ЯЁ]+[ \t]*(?:—|–|--?)[ \t]*"
_ADDRESSEE = rf"(?:{_INITIALS}[ \t]?{_DATIVE}|{_DATIVE}[ \t]+{_INITIALS})"
_LETTER_HEADER = re.compile(
    rf"^[ \t]*(?:\d{{1,4}}\.?[ \t]+)?(?:{_SENDER}(?:{_ADDRESSEE}|{_DATIVE_MASCULINE})|{_ADDRESSEE})"
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
# An edition line: "Рассказы и очерки. СПб., 1899", "Полное собрание сочинений: В 9 т."
_EDITION_LINE = re.compile(
    r"^(?![ \t]*[—–-])[^\n]*(?:\b(?:М|Л|СПб|Спб|Пг|Киев|Берлин|Париж)\.?,[ \t]?1[6-9]\d\d\b|"
    r"\b[Вв][ \t]?\d{1,3}[ \t]?(?:т\.|томах))[^\n]*$\n?",
    re.MULTILINE,
)
# A numbered note, or a source note ("Впервые: ...", "Печатается по ...").
_NUMBERED_LINE = re.compile(
    r"^[ \t]*(?:\d{1,3}[.)]?[ \t]|\*{1,3}[ \t]|(?:Впервые|Печатается[ \t]+по|Опубликовано|Напечатано)\b)"
    r"[^\n]*$\n?",
    re.MULTILINE,
)

_PAGE_LIST_END = re.compile(r"[—–-][ \t]*\d{1,4}(?:[ \t]*,[ \t]*\d{1,4})+\.?[ \t]*$")
_CAPITALIZED_LINE = re.compile(r"^[ \t]*[А-ЯЁA-Z«\"][^\n]*$\n?", re.MULTILINE)

# Bracketed marks take the space before them along: "слово [1]." -> "слово.".
_BRACKET_MARKERS = re.compile(rf"[ \t]?(?:{_NOTE_MARK}|\[\*+\])")
_BRACKET_GATE = re.compile(r"[\[{]|\(сноска")
# Marks glued to a word: "рудников.(5)", "слово*", "слово¹". Every pattern opens with a literal,
# so the scan is fast; the callback checks what stands before the mark.
_GLUED_MARKERS = re.compile(r"\(\d{1,2}\)|\*{1,3}(?![\w*])|[¹²³⁴⁵⁶⁷⁸⁹⁰]+")
_GLUED_AFTER = re.compile(r"[^\W\d_]|[^\W\d_][.,;:!?»)]")

# Cheap literal scans that must hit before a costlier rule runs at all.
_REF_GATE = re.compile(r"[Тт]\.[ \t]?[IVXLC\d]")
_EDITION_GATE = re.compile(
    r"(?:М|Л|СПб|Спб|Пг|Киев|Берлин|Париж)\.?,[ \t]?1[6-9]\d\d|[Вв][ \t]?\d{1,3}[ \t]?(?:т\.|томах)"
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


def _gated(gate: re.Pattern[str], step: Callable[[str], tuple[str, int]]) -> Callable[[str], tuple[str, int]]:
    """Run `step` only on texts where `gate` finds something."""

    def apply(text: str) -> tuple[str, int]:
        return step(text) if gate.search(text) else (text, 0)

    return apply


def _glued_markers(text: str) -> tuple[str, int]:
    removed = 0

    def repl(match: re.Match[str]) -> str:
        nonlocal removed
        before = text[max(0, match.start() - 2): match.start()]
        if before and (_GLUED_AFTER.fullmatch(before[-1:]) or _GLUED_AFTER.fullmatch(before)):
            removed += 1
            return ""
        return match.group()

    return _GLUED_MARKERS.sub(repl, text), removed


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


def _apparatus_sections(titles: list[str], resume_words: list[str], resume_max_chars: int
                        ) -> Callable[[str], tuple[str, int]]:
    header = re.compile(
        rf"^[ \t]*(?:{_ROMAN_OR_NUM}[.)]?[ \t]*)?\*?[ \t]*(?:{_alternation(titles)})[ \t]*[.:]?[ \t]*$",
        re.MULTILINE | re.IGNORECASE,
    )
    # The work goes on after notes printed mid-book: " * ЧАСТЬ ВТОРАЯ * ", "Глава первая".
    resume = re.compile(
        rf"^[ \t*]*(?:{_alternation(resume_words)})\b[^\n]{{0,{resume_max_chars}}}$",
        re.MULTILINE | re.IGNORECASE,
    )

    def apply(text: str) -> tuple[str, int]:
        # A section runs from its header to the next part/chapter heading, or to the end of the text.
        pieces: list[str] = []
        pos = matches = 0
        while (match := header.search(text, pos)) is not None:
            matches += 1
            pieces.append(text[pos: match.start()])
            after = resume.search(text, match.end())
            if after is None:
                pos = len(text)
                break
            pos = after.start()
        pieces.append(text[pos:])
        return ("".join(pieces), matches) if matches else (text, 0)

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
            _sub_all(_footnote_body(cfg.footnote_max_lines)),
        ),
        "apparatus_sections": lambda: _apparatus_sections(
            cfg.section_titles, cfg.section_resume_words, cfg.section_resume_max_chars
        ),
        "letter_headers": lambda: _sub_if(
            _LETTER_HEADER, lambda line: len(line.strip()) > cfg.letter_header_max_chars
        ),
        "textological_notes": lambda: _combine(
            _sub_all(re.compile(rf"^[ \t]*(?:{prefixes})[ \t]*:[^\n]*\n?", re.MULTILINE | re.IGNORECASE)),
            _gated(re.compile(r"[<\[]"), _sub_all(
                re.compile(rf"[ \t]?[<\[][ \t]*(?:{prefixes})\b[^>\]\n]{{0,300}}[>\]]", re.IGNORECASE),
            )),
            _sub_all(_LINE_REF),
        ),
        "archive_codes": lambda: _gated(re.compile(rf"(?:{codes})"), _sub_all(
            re.compile(rf"^[ \t]*(?:{_SOURCE_OPENERS})\b[^\n]*?\b(?:{codes})\b[^\n]*\n?", re.MULTILINE),
            re.compile(rf"[ \t]?\(?\b(?:{codes})\b{_SHELF}+\)?"),
            re.compile(rf"[ \t]?\((?:{codes})(?:[ \t]*[,;][ \t]*(?:{codes}))*\)"),
        )),
        "volume_refs": lambda: _gated(_REF_GATE, _sub_all(_PAREN_REFS, _BARE_REF)),
        "bib_footnotes": lambda: _combine(
            _sub_if(
                _NUMBERED_LINE,
                lambda line: len(line) > cfg.bib_footnote_max_chars or not _BIB_TOKEN.search(line),
            ),
            _gated(_EDITION_GATE, _sub_if(_EDITION_LINE, lambda line: len(line) > cfg.edition_line_max_chars)),
        ),
        "index_entries": lambda: _sub_if(
            _CAPITALIZED_LINE,
            lambda line: len(line) > cfg.index_entry_max_chars or not _PAGE_LIST_END.search(line),
        ),
        "note_markers": lambda: _combine(_gated(_BRACKET_GATE, _sub_all(_BRACKET_MARKERS)), _glued_markers),
        "separator_lines": lambda: _sub_all(_SEPARATOR_LINE),
    }
    return [Rule(name, factories[name]()) for name in RULE_ORDER if getattr(cfg, name)]


def apply_rules(text: str, rules: list[Rule]) -> tuple[str, dict[str, RuleCount]]:
    counts: dict[str, RuleCount] = {}
    for rule in rules:
        text, count = rule(text)
        counts[rule.name] = count
    return text, counts
