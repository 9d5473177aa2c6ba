"""SRT text -> cues. The `srt` library first; our own line-based parser for whatever it rejects.

Most files are canonical SRT (index line, timing line, text lines, one blank line between cues); for
those a strict pattern of our own finds the same cues as the library's grammar at a fraction of the
cost (that grammar matches a cue's text lazily, character by character). The strict reading is taken
only when it accounts for every character of the file and no text line could be read as an index,
the one place where the library's grammar would cut a cue short; anything else goes to the library.

The fallback trusts nothing but timing lines: a cue is everything between one timing line and the next,
minus an index number right before the next timing. That survives missing or out-of-order indexes,
blank lines inside cues, stacked timing lines, coordinates after the timing and mangled timings
such as `00: 00: 49,412 -> 00: 00: 52,404`, `00:00:01 --> 00:00:10` or `00:00:01.266`.

Machine translation and HTML round trips mangle the arrow too: `-&gt;`, `- & gt;`, an en dash, em
dash or minus sign for the hyphen, spaces inside the stamps. Neither grammar reads such a line, so
it lands in a cue's text (or before the first cue) and the file is rejected; then every timing line
is rewritten in the canonical form first and the strict reading, the library and the fallback all
get the repaired text. Untouched files never pay for that pass.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import srt

from src.config.sections.clean_subs import SubsParseConfig

# Spaces that appear inside mangled stamps (translation tools put no-break and thin spaces there too).
_SP = "[ \t\u00a0\u2009\u202f]"
# A timestamp as written or mangled: hours, minutes, seconds and an optional fraction.
_TS = rf"(\d{{1,3}}){_SP}*[:.]{_SP}*(\d{{1,2}}){_SP}*[:.]{_SP}*(\d{{1,2}})(?:{_SP}*[,.:]{_SP}*(\d{{1,3}}))?"
# Characters written where the arrow's hyphen was: hyphen-minus, Unicode hyphens and dashes, minus sign.
_DASH_CHARS = "\\-\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe63\uff0d"
# The arrow's ">": itself, HTML-escaped (also twice, or with spaces inside the entity), or a look-alike.
_ARROW_HEAD = rf"(?:[>\uff1e\u203a]|&(?:amp;)?{_SP}*[gG][tT]{_SP}*;?|&#0*62;|&#[xX]0*3[eE];)"
_ARROW_LIKE = rf"(?:(?:[{_DASH_CHARS}]{_SP}*){{1,3}}{_ARROW_HEAD}|\u2192)"
TIMING_LINE = re.compile(rf"^{_SP}*{_TS}{_SP}*{_ARROW_LIKE}{_SP}*{_TS}(.*)$", re.MULTILINE)
# Two timestamp-like groups (H:MM:SS with an optional fraction, spaces allowed) on one line, whatever
# stands between: never a line of dialogue, arrow or not.
_TS_LIKE = rf"[0-9]{{1,3}}{_SP}*:{_SP}*[0-9]{{1,2}}{_SP}*:{_SP}*[0-9]{{1,2}}(?:{_SP}*[,.:]{_SP}*[0-9]{{1,3}})?"
TIMING_LIKE = re.compile(rf"{_TS_LIKE}[^\n\x00]*?{_TS_LIKE}")
# Cheap gates: text without "x:NN:" and without "-" before ">" can hold neither kind of line
# (both patterns start with a literal; a digit-led pattern would stop at every digit of the text).
_HMS_GATE = re.compile(rf":{_SP}*[0-9]{{1,2}}{_SP}*:")
_HYPHEN_ARROW = re.compile(r"-\s*>")
# A timing line the library's grammar reads as it stands (repairs are counted against it).
_LIBRARY_TIMING = re.compile(rf"{srt.RGX_TIMESTAMP} *-[ -] *> *{srt.RGX_TIMESTAMP}")
_INDEX_LINE = re.compile(r"^\s*-?\d+\s*$")
_EOL = re.compile(r"\r\n?")
# The srt library's timestamp: three numbers and an optional fraction, with any of its delimiters.
_LIBRARY_STAMP = re.compile(r"(\d+)\D(\d+)\D(\d+)(?:\D(\d*))?")
# A canonical cue: index, timing (anything after the second stamp is ignored, as by the library),
# non-blank text lines, then blank lines or the end. [0-9], not \d: the library's digits are ASCII.
# Every part is captured: their lengths add up to the file's when the cues follow each other exactly.
_STRICT_STAMP = r"[0-9]+:[0-9]+:[0-9]+[,.][0-9]+"
_STRICT_CUE = re.compile(
    rf"([0-9]+)(\n)({_STRICT_STAMP})( *--> *)({_STRICT_STAMP})([^\n]*)((?:\n[^\n]+)*)(\n\n+|\n?\Z)"
)
_STAMP_FIELDS = re.compile(r"([0-9]+):([0-9]+):([0-9]+)[,.]([0-9]+)")
# Stamps as nearly all files write them; a file's worth of them is converted at once with numpy.
_FIXED_STAMPS = re.compile(r"(?:[0-9]{2}:[0-9]{2}:[0-9]{2}[,.][0-9]{3})*")
_FIXED_STAMP_CHARS = 12
# Digit positions in "HH:MM:SS,mmm" and their weights in milliseconds.
_FIXED_STAMP_WEIGHTS = np.array([36_000_000, 3_600_000, 0, 600_000, 60_000, 0, 10_000, 1000, 0, 100, 10, 1],
                                dtype=np.int64)
# Where the library's grammar starts a cue after a line break: an index, whitespace, a timestamp.
_LIBRARY_DELIM = "[,.:，．。：]"
_CUE_START = re.compile(rf"\n-?[0-9]+\.?[0-9]*\s*\n[0-9]+{_LIBRARY_DELIM}[0-9]+{_LIBRARY_DELIM}[0-9]+")


class LibraryRejected(ValueError):
    """The `srt` library's grammar does not cover the file; the fallback parser takes over."""


@dataclass(slots=True)
class Cue:
    index: int | None
    start_ms: int
    end_ms: int
    text: str


@dataclass
class Parsed:
    cues: list[Cue]
    parser: str  # "srt" or "fallback"
    warnings: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)


def _ms(h: str, m: str, s: str, frac: str | None) -> int:
    # A fraction is read as decimals ("5" -> 500 ms), which is what players do with short fields.
    millis = int((frac or "0").ljust(3, "0")[:3])
    return ((int(h) * 60 + int(m)) * 60 + int(s)) * 1000 + millis


def parse_timing(line: str) -> tuple[int, int, str] | None:
    """`(start_ms, end_ms, trailing text)` of a timing line, or None when the line is not one."""
    m = TIMING_LINE.match(line)
    if m is None:
        return None
    g = m.groups()
    return _ms(*g[0:4]), _ms(*g[4:8]), g[8].strip()


def _stamp(ms: int) -> str:
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d},{ms:03d}"


def canonicalize_timing_lines(text: str) -> tuple[str, int]:
    """Every timing line rewritten as `HH:MM:SS,mmm --> HH:MM:SS,mmm` (trailing text kept), and the
    number of lines the library's grammar could not have read as they stood (the repairs)."""
    repaired = 0

    def canonical(m: re.Match[str]) -> str:
        nonlocal repaired
        g = m.groups()
        if _LIBRARY_TIMING.match(m.group().lstrip()) is None:
            repaired += 1
        trailing = g[8].strip()
        return f"{_stamp(_ms(*g[0:4]))} --> {_stamp(_ms(*g[4:8]))}" + (f" {trailing}" if trailing else "")

    return TIMING_LINE.sub(canonical, text), repaired


def _library_ms(stamp: str) -> int:
    m = _LIBRARY_STAMP.match(stamp)
    if m is None:  # the library's grammar admits it, so it has three numbers at least
        raise ValueError(f"unreadable timestamp {stamp!r}")
    h, mi, sec, frac = m.groups()
    millis = int(frac.ljust(3, "0")[:3]) if frac else 0
    return ((int(h) * 60 + int(mi)) * 60 + int(sec)) * 1000 + millis


def _parse_with_library(text: str) -> list[Cue]:
    """The `srt` library's grammar (its compiled SRT_REGEX, contiguity rule and index handling), with
    our own timestamp conversion: `srt.parse` builds timedelta objects for every timestamp, which
    made it the slowest step of cleaning."""
    cues = []
    expected = 0
    for m in srt.SRT_REGEX.finditer(text):
        if m.start() != expected and text[expected:m.start()].strip():
            raise LibraryRejected(f"unparsed text at char {expected}: {text[expected:m.start()][:50]!r}")
        raw_index, raw_start, raw_end, _proprietary, content = m.groups()
        index = int(raw_index.split(".")[0]) if raw_index else None
        cues.append(Cue(index, _library_ms(raw_start), _library_ms(raw_end), content))
        expected = m.end()
    if text[expected:].strip():
        raise LibraryRejected(f"unparsed text at char {expected}: {text[expected:][:50]!r}")
    return cues


def _stamps_ms(stamps: tuple[str, ...]) -> list[int]:
    """Milliseconds of `HH:MM:SS,mmm`-like stamps (a short fraction is decimals, as in `_library_ms`)."""
    joined = "".join(stamps)
    # Each stamp 12 characters long (not just all of them together), then each in the fixed layout.
    if set(map(len, stamps)) == {_FIXED_STAMP_CHARS} and _FIXED_STAMPS.fullmatch(joined):
        digits = np.frombuffer(joined.encode("ascii"), dtype=np.uint8).reshape(len(stamps), -1)
        return ((digits.astype(np.int64) - ord("0")) @ _FIXED_STAMP_WEIGHTS).tolist()
    out = []
    for stamp in stamps:
        h, m, s, frac = _STAMP_FIELDS.fullmatch(stamp).groups()  # type: ignore[union-attr]
        out.append(((int(h) * 60 + int(m)) * 60 + int(s)) * 1000 + int(frac.ljust(3, "0")[:3]))
    return out


def _parse_strict(text: str) -> list[Cue] | None:
    """The cues of a canonical SRT file, exactly as `_parse_with_library` reads them, or None when
    the file is not canonical (then the library decides). Column-wise: no Python work per field."""
    pos = len(text) - len(text.lstrip())  # the library skips leading whitespace too
    rows = _STRICT_CUE.findall(text, pos)
    if not rows:
        return None
    columns = list(zip(*rows, strict=True))
    if sum(sum(map(len, col)) for col in columns) != len(text) - pos:
        return None  # something between or after the cues that the strict pattern does not cover
    # The library would end a cue early at a text line that reads as the next cue's index line.
    if len(_CUE_START.findall(text, pos)) != len(rows) - 1:
        return None
    indexes, _, starts, _, ends, _, bodies, separators = columns
    texts = [body[1:] for body in bodies]
    if "\n\n\n" in text:
        for k, sep in enumerate(separators):
            if len(sep) > 2:
                # The library keeps all but two of the line breaks after a cue's text in the text
                # (all but three when there is no text: then the first one ends the timing line).
                texts[k] += "\n" * (len(sep) - (2 if texts[k] else 3))
    return list(map(Cue, map(int, indexes), _stamps_ms(starts), _stamps_ms(ends), texts))


def might_hold_timing(text: str) -> bool:
    """False when `text` surely holds no timing line (TIMING_LINE) and no TIMING_LIKE line."""
    return _HMS_GATE.search(text) is not None or _HYPHEN_ARROW.search(text) is not None


def is_timing_like(line: str) -> bool:
    """A line that is (or holds) a timing line, however mangled: two timestamps, or a TIMING_LINE."""
    return TIMING_LIKE.search(line) is not None or TIMING_LINE.match(line) is not None


def _swallowed_timing(cues: list[Cue]) -> Cue | None:
    """The first cue whose text holds a timing line. One search over all texts joined by a line the
    pattern cannot cross (it stays on its own lines and never matches NUL) instead of one per cue."""
    joined = "\n\x00\n".join(c.text for c in cues)
    if not might_hold_timing(joined) or TIMING_LINE.search(joined) is None:
        return None
    return next((c for c in cues if TIMING_LINE.search(c.text)), None)


def _parse_fallback(text: str) -> tuple[list[Cue], list[str]]:
    lines = text.split("\n")
    timings = [(i, t) for i, line in enumerate(lines) if (t := parse_timing(line)) is not None]
    warnings: list[str] = []
    if not timings:
        return [], warnings
    preamble = [ln for ln in lines[: timings[0][0]] if ln.strip() and not _INDEX_LINE.match(ln)]
    if preamble:
        warnings.append(f"{len(preamble)} line(s) before the first timing ignored: {preamble[0][:60]!r}")
    cues = []
    for k, (line_no, (start, end, _trailing)) in enumerate(timings):
        stop = timings[k + 1][0] if k + 1 < len(timings) else len(lines)
        body = lines[line_no + 1: stop]
        while body and not body[-1].strip():
            body.pop()
        # An index number right before the next timing line belongs to the next cue.
        if k + 1 < len(timings) and body and _INDEX_LINE.match(body[-1]) and (
            len(body) == 1 or not body[-2].strip()
        ):
            body.pop()
        index_line = lines[line_no - 1] if line_no > 0 else ""
        index = int(index_line.strip()) if _INDEX_LINE.match(index_line) else None
        cues.append(Cue(index, start, end, "\n".join(body).strip("\n")))
    return cues, warnings


def _counts(cues: list[Cue]) -> dict[str, int]:
    missing_index = sum(1 for c in cues if c.index is None)
    out_of_order = sum(1 for a, b in zip(cues, cues[1:], strict=False) if b.start_ms < a.start_ms)
    overlapping = sum(1 for a, b in zip(cues, cues[1:], strict=False) if a.start_ms <= b.start_ms < a.end_ms)
    empty = sum(1 for c in cues if not c.text.strip())
    zero = sum(1 for c in cues if c.end_ms <= c.start_ms)
    return {"cues": len(cues), "missing_index": missing_index, "out_of_order": out_of_order,
            "overlapping": overlapping, "empty": empty, "zero_duration": zero}


def _parse_grammar(text: str) -> list[Cue]:
    """The cues as the `srt` library's grammar reads them (our strict reading when it applies);
    raises LibraryRejected when the grammar does not cover the file."""
    strict = _parse_strict(text)
    cues = strict if strict is not None else _parse_with_library(text)
    if not cues:
        raise LibraryRejected("no cue in the library's grammar")
    # The library reads a cue it cannot parse as part of the previous cue's text (it allows
    # blank lines inside cues); a timing line inside a cue's text means exactly that happened.
    swallowed = _swallowed_timing(cues)
    if swallowed is not None:
        raise LibraryRejected(f"a timing line inside the text of cue {swallowed.index}")
    return cues


def parse_subtitle(text: str, cfg: SubsParseConfig) -> Parsed:
    """Parse decoded SRT text (any line endings) into cues; never raises on malformed input."""
    text = _EOL.sub("\n", text).lstrip("\ufeff")
    warnings: list[str] = []
    repaired = 0
    try:
        cues, parser = _parse_grammar(text), "srt"
    except (LibraryRejected, ValueError) as exc:
        reason = str(exc)
        if TIMING_LINE.search(text) is None:
            return Parsed([], "srt", ["no SRT timing line found"], _counts([]))
        # Mangled timing lines are what the grammar most often trips on: repair them, then let the
        # grammar try again (a file whose only defect they were reads as if written right).
        text, repaired = canonicalize_timing_lines(text)
        try:
            if not repaired:
                raise LibraryRejected(reason) from None  # the same text: the same answer
            cues, parser = _parse_grammar(text), "srt"
        except (LibraryRejected, ValueError) as again:
            cues, warnings = _parse_fallback(text)
            parser = "fallback"
            warnings.insert(0, f"srt library rejected the file ({again}); used the fallback parser")
    counts = _counts(cues)
    counts["timing_repaired"] = repaired
    if repaired:
        warnings.append(f"{repaired} mangled timing line(s) repaired (HTML-escaped arrow, other dashes, spaces)")
    for key in ("missing_index", "out_of_order", "overlapping", "empty", "zero_duration"):
        if counts[key]:
            warnings.append(f"{counts[key]} {key.replace('_', ' ')} cue(s)")
    if cfg.sort_by_time and counts["out_of_order"]:
        cues = sorted(cues, key=lambda c: c.start_ms)
    return Parsed(cues, parser, warnings, counts)
