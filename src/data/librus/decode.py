"""Bytes to text for Russian pages whose declared charset cannot be trusted.

Order of evidence: a BOM, the HTTP header charset, a `<meta charset>` in the page, then detection
(strict UTF-8, then charset-normalizer). Whatever wins is then checked against the other Cyrillic
encodings by letter frequencies, because lib.ru mirrors are known to send koi8-r bytes under a
windows-1251 header (and the reverse): both decode without error, only one reads as Russian.
"""

from __future__ import annotations

import codecs
import math
import re
from dataclasses import dataclass

# Relative frequency (per mille) of lowercase Russian letters in ordinary prose. Only the ranking
# matters: a wrong single-byte decoding turns frequent letters into rare ones and lowercase into
# uppercase, which costs far more than any plausible sampling error in these figures.
RUSSIAN_LETTER_FREQ: dict[str, float] = {
    "о": 109.7, "е": 84.5, "а": 80.1, "и": 73.5, "н": 67.0, "т": 62.6, "с": 54.7, "р": 47.3,
    "в": 45.4, "л": 44.0, "к": 34.9, "м": 32.1, "д": 29.8, "п": 28.1, "у": 26.2, "я": 20.1,
    "ы": 19.0, "ь": 17.4, "г": 17.0, "з": 16.5, "б": 15.9, "ч": 14.4, "й": 12.1, "х": 9.7,
    "ж": 9.4, "ш": 7.3, "ю": 6.4, "ц": 4.8, "щ": 3.6, "э": 3.2, "ф": 2.6, "ъ": 0.4, "ё": 0.4,
}
# Capitals start sentences and names: about one letter in twenty-five in prose.
UPPERCASE_SHARE = 0.04
# Candidates the frequency check compares a decoding against.
DEFAULT_RIVALS: tuple[str, ...] = ("utf-8", "koi8-r", "windows-1251")
# Mean log-probability gain per Cyrillic letter a rival needs before it overrides the evidence.
DEFAULT_MARGIN = 0.5
# Fewer Cyrillic letters than this and the frequency check has nothing to say.
DEFAULT_MIN_LETTERS = 20
# Mean log-probability per letter below which text does not read as Russian: real prose scores
# about -3.2, koi8-r/windows-1251 mojibake about -6.9, UTF-8 read as windows-1251 about -8.4.
DEFAULT_MIN_SCORE = -4.5
# Enough of a page to detect or sniff its charset; the rest only costs time.
SNIFF_BYTES = 4096
DETECT_BYTES = 65536
# The frequency check reads this much of a page: plenty for a verdict, cheap on a 2 MB novel.
SCORE_BYTES = 65536

_META_CHARSET = re.compile(rb"""<meta[^>]*?charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.I)
_LOG_FREQ = {
    **{c: math.log(f / 1000) for c, f in RUSSIAN_LETTER_FREQ.items()},
    **{c.upper(): math.log(f / 1000 * UPPERCASE_SHARE) for c, f in RUSSIAN_LETTER_FREQ.items()},
}


@dataclass(frozen=True)
class Decoded:
    text: str
    encoding: str  # canonical name, e.g. "koi8-r", "windows-1251", "utf-8"
    source: str  # which evidence won: bom | header | meta | detected | corrected | empty


def canonical_encoding(label: str | None) -> str | None:
    """A charset label as Python knows it, spelled the way HTTP does; None when unknown/absent."""
    if not label:
        return None
    try:
        name = codecs.lookup(label.strip().strip("\"'")).name
    except LookupError:
        return None
    if name.startswith("cp125"):
        return "windows-" + name[2:]
    return {"utf-8-sig": "utf-8"}.get(name, name)


def meta_charset(data: bytes) -> str | None:
    """The charset named by a `<meta>` tag near the top of an HTML page, if any."""
    match = _META_CHARSET.search(data[:SNIFF_BYTES])
    return canonical_encoding(match.group(1).decode("ascii")) if match else None


def russian_score(text: str) -> tuple[float, int]:
    """(mean log-probability per Cyrillic letter, number of Cyrillic letters) under a unigram model.

    Mojibake maps Cyrillic letters onto other Cyrillic letters (koi8-r <-> windows-1251) or onto
    symbols and 'Р'/'С' pairs (UTF-8 read as windows-1251), so it scores far lower than Russian.
    """
    total, n = 0.0, 0
    floor = math.log(0.1 / 1000 * UPPERCASE_SHARE)  # letters outside the table (Ѣ, і, Ђ, ...)
    for ch in text:
        if "\u0400" <= ch <= "\u04ff":
            total += _LOG_FREQ.get(ch, floor)
            n += 1
    return (total / n if n else 0.0), n


def _strict(data: bytes, encoding: str) -> str | None:
    try:
        return data.decode(encoding)
    except (UnicodeDecodeError, LookupError):
        return None


def _strict_prefix(data: bytes, encoding: str, limit: int) -> str | None:
    """Strictly decode the first `limit` bytes; a multibyte character cut by the limit is dropped."""
    head = data[:limit]
    try:
        return head.decode(encoding)
    except UnicodeDecodeError as exc:
        if len(head) == len(data) or exc.start < len(head) - 4:
            return None
        return _strict(head[: exc.start], encoding)
    except LookupError:
        return None


def _detect(data: bytes, rivals: tuple[str, ...], min_letters: int, min_score: float) -> str | None:
    """UTF-8 if it is valid UTF-8; else the rival that reads best as Russian; else charset-normalizer.

    The rivals go before the generic detector because on short pages it happily calls koi8-r bytes
    shift_jis or mac-roman, and this crawler reads Russian sites.
    """
    if _strict(data, "utf-8") is not None:
        return "utf-8"
    best = _best_rival(data, rivals, min_letters, min_score)
    if best is not None:
        return best[1]
    from charset_normalizer import from_bytes

    best = from_bytes(data[:DETECT_BYTES]).best()
    return canonical_encoding(best.encoding) if best else None


def decode_html(
    data: bytes,
    header_charset: str | None = None,
    rivals: tuple[str, ...] = DEFAULT_RIVALS,
    margin: float = DEFAULT_MARGIN,
    min_letters: int = DEFAULT_MIN_LETTERS,
    min_score: float = DEFAULT_MIN_SCORE,
) -> Decoded:
    """Decode a page; raise ValueError saying why when no candidate decodes it."""
    if not data:
        return Decoded("", canonical_encoding(header_charset) or "utf-8", "empty")
    for bom, enc in ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16-le"),
                     (codecs.BOM_UTF16_BE, "utf-16-be")):
        if data.startswith(bom):
            text = _strict(data[len(bom):], enc.replace("-sig", ""))
            if text is None:
                raise ValueError(f"starts with a {enc} byte-order mark but is not valid {enc}")
            return Decoded(text, canonical_encoding(enc) or enc, "bom")
    nul = data.count(b"\x00")
    if nul:
        raise ValueError(f"binary data, not a text page ({nul} NUL bytes in {len(data)})")

    tried: list[str] = []
    chosen: tuple[str, str, str] | None = None  # (text, encoding, source)
    for source, label in (("header", header_charset), ("meta", None), ("detected", None)):
        if source == "meta":
            label = meta_charset(data)
        elif source == "detected":
            label = _detect(data, rivals, min_letters, min_score)
        encoding = canonical_encoding(label)
        if encoding is None:
            if label:
                tried.append(f"{source}={label!r} (unknown charset)")
            continue
        text = _strict(data, encoding)
        if text is None:
            tried.append(f"{source}={encoding} (invalid bytes)")
            continue
        chosen = (text, encoding, source)
        break

    if chosen is None:
        # Evidence failed; a page that reads as one of the rivals is still worth keeping.
        best = _best_rival(data, rivals, min_letters, min_score)
        if best is None:
            raise ValueError("undecodable: " + (", ".join(tried) or "no charset evidence")
                             + f"; none of {', '.join(rivals)} decodes it as Russian text")
        return Decoded(best[0], best[1], "corrected")

    text, encoding, source = chosen
    score, letters = russian_score(text[:SCORE_BYTES])
    if letters < min_letters:
        # Nothing Cyrillic to judge (an ISO-8859-1 header on a Russian page reads as Latin junk):
        # any rival that does read as Russian is better.
        score = -math.inf
    for rival in rivals:
        rival = canonical_encoding(rival) or rival
        if rival == encoding:
            continue
        rival_head = _strict_prefix(data, rival, SCORE_BYTES)
        if rival_head is None:
            continue
        rival_score, rival_letters = russian_score(rival_head)
        if (rival_letters >= min_letters and rival_score >= min_score
                and rival_score > score + margin):
            rival_text = _strict(data, rival)
            if rival_text is not None:
                text, encoding, source, score = rival_text, rival, "corrected", rival_score
    return Decoded(text, encoding, source)


def _best_rival(
    data: bytes, rivals: tuple[str, ...], min_letters: int, min_score: float
) -> tuple[str, str] | None:
    """(text, encoding) of the rival that reads best as Russian, if any reads as Russian at all."""
    best: tuple[float, str, str] | None = None
    for rival in rivals:
        encoding = canonical_encoding(rival) or rival
        text = _strict(data, encoding)
        if text is None:
            continue
        score, letters = russian_score(text[:SCORE_BYTES])
        if letters >= min_letters and score >= min_score and (best is None or score > best[0]):
            best = (score, text, encoding)
    return (best[1], best[2]) if best else None


def decode_bytes(data: bytes, declared: str | None = None) -> tuple[str, str]:
    """(text, encoding) of a page or file; `declared` is the charset someone claimed for it.

    Raises ValueError naming the problem (binary data, a broken BOM, no charset that decodes it).
    """
    decoded = decode_html(data, declared)
    return decoded.text, decoded.encoding
