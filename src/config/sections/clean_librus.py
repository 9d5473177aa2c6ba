"""`clean_librus`: extract works from crawled lib.ru pages, strip the editorial apparatus, normalize."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class LibrusParseConfig:
    """How a page is recognized (work / index) and what site furniture is dropped."""

    # A Moshkov page is an index (a list of links) when link text makes up this share of its text...
    index_link_share: float = 0.3
    # ...and it has at least this many links.
    index_min_links: int = 3
    # Drop the page's own "Author. Title" heading at the top of the text (it is in the title column).
    drop_title_heading: bool = True
    # ...looking at this many non-blank lines at the top (az pages repeat author and title).
    title_scan_lines: int = 6


@dataclass
class ReflowConfig:
    """Undo lib.ru's hard wrap (src/text/reflow.py)."""

    enabled: bool = True
    min_wrap_width: int = 50
    max_wrap_width: int = 120
    # The wrap width is this quantile of the line lengths.
    width_quantile: float = 0.9
    # A line at least this share of the wrap width long continues on the next line.
    full_line_ratio: float = 0.8
    # Reflow only when at least this share of the non-blank lines is full (verse never is).
    min_wrapped_share: float = 0.4
    min_lines: int = 20


def _section_titles() -> list[str]:
    return [
        "примечания", "комментарии", "комментарий", "варианты", "другие редакции и варианты",
        "из других редакций", "история писания", "история создания", "история текста",
        "список сокращений", "условные сокращения", "принятые сокращения", "сокращения",
        "текстологические примечания", "указатель имен", "именной указатель",
        "указатель произведений", "библиография", "источники текста", "примечания к письмам",
        "варианты и разночтения", "разночтения",
    ]


def _textological_prefixes() -> list[str]:
    return [
        "начато", "вместо", "было", "далее было", "далее зачеркнуто", "зачеркнуто",
        "заметка на полях", "на полях", "вписано", "исправлено", "исправлено из",
        "первоначально", "в рукописи", "в автографе", "в черновике", "в черновом автографе",
        "над строкой", "под строкой", "не зачеркнуто", "против этого",
    ]


def _archive_codes() -> list[str]:
    return [
        "ЦГАЛИ", "РГАЛИ", "ГПБ", "РНБ", "ИРЛИ", "ПД", "ГБЛ", "РГБ", "ЦГАОР", "ГАРФ", "ЦГИА",
        "РГИА", "ЦГАДА", "РГАДА", "ГИМ", "ГЛМ", "ЦГВИА", "ТГМ", "ГМТ", "ГТГ", "ОР ГБЛ", "ОР РГБ",
        "ОР ГПБ", "ОР ИРЛИ", "ЛБ", "ЦГАЛИ СССР", "ГЦТМ",
    ]


@dataclass
class LibrusRulesConfig:
    """The editorial-apparatus rules (src/data/librus/rules.py), each switchable and counted."""

    credits: bool = True  # OCR / Spellcheck / Origin credit lines and the ---- blocks around them
    footnotes: bool = True  # footnote bodies: "(сноска 1) ...", "[1] ...", dashed footnote blocks
    apparatus_sections: bool = True  # "Примечания", "Варианты", ... to the end of the text
    letter_headers: bool = True  # "Чехов — А. С. Суворину" (the letter itself stays)
    textological_notes: bool = True  # "Начато: ...", "Вместо: ...", "<Далее зачеркнуто: ...>"
    archive_codes: bool = True  # "ЦГАЛИ, ф. 549, оп. 1, ед. хр. 12", "Печатается по автографу (ГБЛ)"
    volume_refs: bool = True  # "(т. 5, с. 123)", "ПСС, т. XII"
    bib_footnotes: bool = True  # "3 Рядом с «...», т. I, с. 45." (numbered bibliographic notes)
    index_entries: bool = True  # name-index lines "Лейкин Н. А. (1841-1906) — 127, 438"
    note_markers: bool = True  # [1], {1}, (сноска 1), superscripts, "слово*", "слово.(5)"
    separator_lines: bool = True  # lines of ----- / ===== / _____ (the blocks they framed are gone)
    section_titles: list[str] = field(default_factory=_section_titles)
    # A short line opening with one of these ends an apparatus section (the work resumes).
    section_resume_words: list[str] = field(default_factory=lambda: [
        "часть", "глава", "книга", "том", "действие", "эпилог", "пролог",
    ])
    section_resume_max_chars: int = 40
    textological_prefixes: list[str] = field(default_factory=_textological_prefixes)
    archive_code_names: list[str] = field(default_factory=_archive_codes)
    # Lines longer than these are prose, never a letter header / a footnote / an index entry.
    letter_header_max_chars: int = 80
    bib_footnote_max_chars: int = 400
    edition_line_max_chars: int = 200
    index_entry_max_chars: int = 300
    # A ---- block longer than this is text between two rules, not a credit or footnote block.
    block_max_chars: int = 6000
    # A footnote body runs from its mark to the next blank line, but never past this many lines.
    footnote_max_lines: int = 40


@dataclass
class CleanLibrusConfig:
    raw_dir: str = "data/raw/librus"
    output: str = "data/clean/librus.parquet"
    report_dir: str = "data/reports/clean_librus"
    # Process pool size over documents (1: in-process, handy for debugging).
    workers: int = 2
    # Documents shorter than this after cleaning are dropped (reported).
    min_doc_chars: int = 200
    # Drop a document whose cleaned text equals an earlier one's (the same work in both formats).
    drop_duplicates: bool = True
    parse: LibrusParseConfig = field(default_factory=LibrusParseConfig)
    reflow: ReflowConfig = field(default_factory=ReflowConfig)
    rules: LibrusRulesConfig = field(default_factory=LibrusRulesConfig)
    # `python -m src.bench.clean_librus` defaults: the corpus under ../shared/data.
    bench_subdir: str = "corpus_ru"
