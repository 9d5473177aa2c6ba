"""Extract the work from a lib.ru page and drop the site furniture around it.

Two page formats, told apart by their markup (a page's declared format is only a hint):
- Moshkov's lib.ru (`/LITRA/<AUTHOR>/<file>.txt`): the text is pre-formatted inside `<pre>`, wrapped
  at ~76 columns, with the site's forms, "Книгу можно купить" links, chapter `<h2>`s, and a footer
  with "Популярность" and "Last-modified" around and inside it.
- az.lib.ru ("Lib.ru/Классика", `text_NNNN.shtml`): the work lies between the
  "Собственно произведение" comment and `<!--Section Ends-->`, one `<dd>` per paragraph, note marks
  in `<sup>`, footnote bodies as `<dd><u>N</u> ...` paragraphs.
Anything without HTML markup is a plain-text file (the local-directory source) and passes through.

HTML is handled with linear regex passes rather than a DOM: lib.ru markup is invalid in ways
(nested `<pre>`, unclosed `<li>`) that make tree builders move text around.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

from src.config.sections.clean_librus import LibrusParseConfig

MOSHKOV, AZ, LOCAL = "moshkov", "az", "local"
TEXT, INDEX = "text", "index"


class ParseError(ValueError):
    """A page that holds no extractable work; the message says why."""


@dataclass(frozen=True)
class ParsedPage:
    kind: str  # text | index
    format: str  # moshkov | az | local (as detected from the markup)
    title: str | None
    author: str | None
    text: str  # the work, furniture removed, line structure kept (not yet reflowed)
    page_chars: int  # characters of the decoded page, markup included
    note: str = ""


_HTML_HINT = re.compile(r"<(?:html|body|pre|head|title|dd|div|p|br)\b", re.IGNORECASE)
_AZ_START = re.compile(r"<!-+\s*Собственно произведение\s*-+>", re.IGNORECASE)
_AZ_BEGINS = re.compile(r"<!--\s*Section Begins\s*-->", re.IGNORECASE)
_AZ_END = re.compile(r"<!--\s*Section Ends\s*-->", re.IGNORECASE)
_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_AZ_TITLE_PREFIX = re.compile(r"^\s*Lib\.ru/Классика:\s*", re.IGNORECASE)

_DROP_ELEMENTS = re.compile(
    r"<head\b.*?</head>|<script\b.*?</script>|<style\b.*?</style>|<form\b.*?</form>|"
    r"<select\b.*?</select>|<!--.*?-->|<title\b.*?</title>",
    re.IGNORECASE | re.DOTALL,
)
# "Книгу можно купить в : <a ...>Biblion.Ru</a> 31р." up to the end of its block.
_BUY_LINK = re.compile(r"Книгу можно купить.*?(?:</div>|\n)", re.IGNORECASE | re.DOTALL)
# The footer: "Популярность: 70, Last-modified: ..." (and counters after it).
_FOOTER_LINE = re.compile(
    r"^[^\n]*(?:Популярность:|Last-modified:|Ваша оценка:|Оставьте свой отзыв)[^\n]*$",
    re.IGNORECASE | re.MULTILINE,
)
_LINK = re.compile(r"<a\b[^>]*>(.*?)</a>", re.IGNORECASE | re.DOTALL)
_HEADING = re.compile(r"<h([1-6])\b[^>]*>(.*?)</h\1\s*>", re.IGNORECASE | re.DOTALL)
_BLOCK_TAG = re.compile(
    r"</?(?:p|div|dd|dt|dl|li|ul|ol|dir|center|table|tr|td|blockquote|hr|pre)\b[^>]*>|<br\s*/?>",
    re.IGNORECASE,
)
_ANY_TAG = re.compile(r"<[/!]?[A-Za-z][^>]*>")
_AZ_FOOTNOTE_BODY = re.compile(
    r"<dd>(?:\s|&nbsp;)*(?:<b>\s*)?<u>\s*(\d{1,4})\s*</u>(?:\s*</b>)?(?:\s|&nbsp;)*", re.IGNORECASE
)
_SUP = re.compile(r"<sup\b[^>]*>(.*?)</sup>", re.IGNORECASE | re.DOTALL)
_NAV_LINE = re.compile(r"^\s*(?:\[[^\]\n]{1,40}\]\s*)+$", re.MULTILINE)
# A line made only of links and separators: breadcrumbs ("Lib.Ru: Русская классика: Автор"), menus.
_LINK_SEPARATORS = r"(?:[:|\[\]>»/·., \t-]|<(?![aA]\b)[^>\n]*>)*"
_LINK_ONLY_LINE = re.compile(
    rf"^(?:{_LINK_SEPARATORS}<a\b[^>\n]*>[^\n]*?</a>)+{_LINK_SEPARATORS}$",
    re.IGNORECASE | re.MULTILINE,
)
# A line that is only a name: "И. К. Грачев", "Павел Андреевич Заречный".
_NAME_LINE = re.compile(r"^(?:[А-ЯЁA-Z][а-яёa-z]*\.?[ \t]*){1,4}$")
_SPACES = re.compile(r"\s+")


def detect_format(page: str) -> str:
    if _AZ_START.search(page) or (_AZ_BEGINS.search(page) and _AZ_END.search(page)):
        return AZ
    if _HTML_HINT.search(page[:65536]):
        return MOSHKOV
    return LOCAL


def parse_page(page: str, cfg: LibrusParseConfig, name: str = "page") -> ParsedPage:
    """The work in `page` (already decoded); raises ParseError when there is none."""
    fmt = detect_format(page)
    if fmt == LOCAL:
        if not page.strip():
            raise ParseError(f"{name}: empty file")
        return ParsedPage(TEXT, LOCAL, None, None, page, len(page))
    author, title = _title_parts(page)
    if fmt == AZ:
        return _parse_az(page, author, title, name, cfg)
    return _parse_moshkov(page, author, title, cfg)


def _visible_chars(fragment: str) -> int:
    return len(_SPACES.sub(" ", html.unescape(_ANY_TAG.sub(" ", fragment))).strip())


def _title_parts(page: str) -> tuple[str | None, str | None]:
    """("Александр Сергеевич Пушкин", "Капитанская дочка") from the page's <title>."""
    match = _TITLE.search(page)
    if not match:
        return None, None
    full = _AZ_TITLE_PREFIX.sub("", _SPACES.sub(" ", html.unescape(_ANY_TAG.sub("", match.group(1)))))
    full = full.strip()
    author, sep, title = full.partition(". ")
    return (author.strip(), title.strip()) if sep else (None, full or None)


def _to_text(fragment: str) -> str:
    fragment = _BLOCK_TAG.sub("\n", fragment)
    text = html.unescape(_ANY_TAG.sub("", fragment)).replace("\u00a0", " ")
    lines = [line.rstrip() for line in text.split("\n")]
    return "\n".join(lines).strip("\n")


def _parse_moshkov(page: str, author: str | None, title: str | None, cfg: LibrusParseConfig) -> ParsedPage:
    body = _DROP_ELEMENTS.sub("", page)
    visible = _visible_chars(body)
    links = _LINK.findall(body)
    link_chars = sum(_visible_chars(link) for link in links)
    if (
        len(links) >= cfg.index_min_links
        and visible
        and link_chars / visible >= cfg.index_link_share
    ):
        return ParsedPage(INDEX, MOSHKOV, title, author, "", len(page),
                          note=f"index page: {len(links)} links, {link_chars / visible:.0%} of its text")
    body = _BUY_LINK.sub("\n", body)
    body = _LINK_ONLY_LINE.sub("", body)

    def heading(match: re.Match[str]) -> str:
        return "\n\n" + _SPACES.sub(" ", html.unescape(_ANY_TAG.sub("", match.group(2)))).strip() + "\n\n"

    text = _to_text(_HEADING.sub(heading, body))
    text = _FOOTER_LINE.sub("", text)
    text = _NAV_LINE.sub("", text)
    if cfg.drop_title_heading and title:
        text = _drop_title_heading(text, author, title, cfg.title_scan_lines)
    if not text.strip():
        raise ParseError("moshkov page: nothing left after removing the site furniture")
    return ParsedPage(TEXT, MOSHKOV, title, author, text.strip("\n"), len(page))


def _drop_title_heading(text: str, author: str | None, title: str, scan_lines: int) -> str:
    """Drop lines among the first `scan_lines` non-blank ones that only repeat the title or author."""
    candidates = {title.casefold(), f"{author}. {title}".casefold() if author else ""}
    author_words = {w.casefold() for w in (author or "").split() if len(w) > 2}
    lines = text.split("\n")
    seen = 0
    for i, line in enumerate(lines):
        squeezed = _SPACES.sub(" ", line).strip().rstrip(".")
        if not squeezed:
            continue
        seen += 1
        if seen > scan_lines:
            break
        is_name = bool(_NAME_LINE.match(squeezed)) and any(
            w.strip(".").casefold() in author_words for w in squeezed.split()
        )
        if squeezed.casefold() in candidates or is_name:
            lines[i] = ""
    return "\n".join(lines)


def _parse_az(
    page: str, author: str | None, title: str | None, name: str, cfg: LibrusParseConfig
) -> ParsedPage:
    start = _AZ_START.search(page) or _AZ_BEGINS.search(page)
    if start is None:
        raise ParseError(f"{name}: az.lib.ru page without the 'Собственно произведение' marker")
    end = _AZ_END.search(page, start.end())
    note = ""
    if end is None:
        note = "no <!--Section Ends--> marker: took the text to the end of the page"
        stop = page.lower().find("</noindex>", start.end())
        work = page[start.end(): stop if stop >= 0 else len(page)]
    else:
        work = page[start.end(): end.start()]
    # HTML line breaks are only whitespace here; paragraphs are the <dd>/<p>/<div> blocks.
    work = _DROP_ELEMENTS.sub("", work).replace("\n", " ")
    # Footnote bodies become "[N] text" paragraphs, note marks "[N]": the rules remove both, counted.
    work = _AZ_FOOTNOTE_BODY.sub(lambda m: f"\n[{m.group(1)}] ", work)

    def sup(match: re.Match[str]) -> str:
        inner = _ANY_TAG.sub("", match.group(1)).strip()
        return f"[{inner}]" if inner.isdigit() else (f"[{inner}]" if set(inner) == {"*"} else inner)

    text = _to_text(_SUP.sub(sup, work))
    text = "\n".join(line.strip() for line in text.split("\n"))
    if cfg.drop_title_heading and title:
        text = _drop_title_heading(text, author, title, cfg.title_scan_lines)
    if not text.strip():
        raise ParseError(f"{name}: az.lib.ru page with an empty work section")
    return ParsedPage(TEXT, AZ, title, author, text.strip("\n"), len(page), note)
