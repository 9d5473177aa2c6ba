"""Direct speech in prose: which paragraphs are spoken, and what was said without the author's words.

Russian prose opens a spoken paragraph with a dash and sets the author's remark off with spaced
dashes: `— Да, — сказал он, — пойдём.` is the speech `Да, пойдём.`. A spaced dash right after
punctuation (`, — ` `! — ` `. — `) opens a remark, and the next spaced dash closes it; a dash after a
word (`Я — человек`) belongs to the speech. English prose (and older Russian prose) puts the speech
in quotation marks, the remark outside them: `"Yes," said he, "let us go."`. Older texts also bring
speech into a narrative paragraph after a colon and a dash (`Он сказал: — Иди.`).

A comma that closed a speech part before a remark ending its sentence (`— Не могу, — сказал он. — Иди.`)
becomes a full stop, so the spoken text reads as one utterance: `Не могу. Иди.`
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

# A paragraph that opens with a dash: em dash, en dash, or the typewriter's "--" / "-".
_LEAD_DASH = re.compile(r"^[ \t]*(?:—|–|--|-(?=\s))[ \t]*")
# A dash between spaces: the boundary between speech and the author's remark.
_SPACED_DASH = re.compile(r"\s+(?:—|–|--|-)\s+")
# Speech introduced inside a narrative paragraph: "... сказал он: — Иди."
_COLON_DASH = re.compile(r":\s+(?:—|–|--)\s+")
# Punctuation after which a spaced dash opens the author's remark.
_REMARK_OPENERS = (",", ".", "!", "?", "…", ";", ":")
# Closing quote for each opening one ("„" is closed by "“" in Russian, "”" in some texts).
_QUOTE_PAIRS = {"«": "»", "“": "”", "„": "“", '"': '"'}
_LETTER = re.compile(r"\w")


@dataclass(frozen=True)
class Speech:
    text: str  # what was said, the author's remarks removed (may be "" when nothing was left)
    kind: str  # dash | quote | inline
    remark_chars: int  # characters of the author's words removed


def _segments_of_dash_body(body: str) -> list[tuple[bool, str]]:
    """(is_speech, text) parts of a dash paragraph's text after its opening dash."""
    parts = _SPACED_DASH.split(body)
    segments: list[tuple[bool, str]] = [(True, parts[0])]
    for part in parts[1:]:
        is_speech, previous = segments[-1]
        if is_speech and not previous.rstrip().endswith(_REMARK_OPENERS):
            segments[-1] = (True, f"{previous} — {part}")  # a dash inside the speech
        else:
            segments.append((not is_speech, part))  # speech -> remark -> speech ...
    return segments


def _render(segments: list[tuple[bool, str]]) -> tuple[str, int]:
    """Join the speech parts; a comma before a remark that ends a sentence (or ends the paragraph)
    becomes a full stop. Returns (speech, characters of remarks removed)."""
    spoken: list[str] = []
    remark_chars = 0
    for i, (is_speech, text) in enumerate(segments):
        text = text.strip()
        if not is_speech:
            remark_chars += len(text)
            continue
        if not text:
            continue
        if text.endswith(","):
            following = [t.strip() for s, t in segments[i + 1:] if not s]
            more_speech = any(s and t.strip() for s, t in segments[i + 1:])
            remark = following[0] if following else ""
            if remark and (not more_speech or remark.endswith((".", "!", "?", "…", ":"))):
                text = text[:-1] + "."
        spoken.append(text)
    return " ".join(spoken), remark_chars


def quoted_spans(text: str) -> list[tuple[int, int]] | None:
    """(start, end) of each top-level quotation's contents; None when a quote is left open."""
    spans: list[tuple[int, int]] = []
    i, n = 0, len(text)
    while i < n:
        opener = text[i]
        closer = _QUOTE_PAIRS.get(opener)
        if closer is None:
            i += 1
            continue
        depth, j = 1, i + 1
        while j < n:
            c = text[j]
            if c == closer:
                depth -= 1
                if depth == 0:
                    break
            elif c == opener and opener != closer:
                depth += 1
            elif opener == "„" and c == "”":  # „...” in some editions
                break
            j += 1
        if j >= n:
            return None
        spans.append((i + 1, j))
        i = j + 1
    return spans


def _segments_of_quotes(par: str, spans: list[tuple[int, int]]) -> list[tuple[bool, str]]:
    segments: list[tuple[bool, str]] = []
    last = 0
    for start, end in spans:
        segments.append((False, par[last:max(last, start - 1)]))
        inner = par[start:end]
        # Remarks inside the quotes too: «О, как я несчастна! — думала она. — Зачем?»
        segments.extend(_segments_of_dash_body(inner))
        last = end + 1
    segments.append((False, par[last:]))
    return segments


def paragraph_speech(par: str, min_quoted_share: float = 0.5, inline_colon_dash: bool = True) -> Speech | None:
    """The speech of one paragraph, or None for narrative."""
    lead = _LEAD_DASH.match(par)
    if lead and _LETTER.search(par, lead.end()):
        text, removed = _render(_segments_of_dash_body(par[lead.end():]))
        return Speech(text, "dash", removed)
    stripped = par.strip()
    if any(q in stripped for q in _QUOTE_PAIRS):
        spans = quoted_spans(stripped)
        # Speech when the paragraph opens with the quotation or is mostly quoted (a quoted title
        # inside narrative is neither).
        if spans and (spans[0][0] == 1 or sum(e - s for s, e in spans) >= min_quoted_share * len(stripped)):
            text, removed = _render(_segments_of_quotes(stripped, spans))
            return Speech(text, "quote", removed)
    if inline_colon_dash:
        m = _COLON_DASH.search(par)
        if m and _LETTER.search(par, m.end()):
            text, removed = _render(_segments_of_dash_body(par[m.end():]))
            return Speech(text, "inline", removed + m.start())
    return None


def split_paragraphs(text: str) -> list[str]:
    """Paragraphs of a plain text: one per line (our cleaned corpora, most .txt classics), or
    blank-line separated blocks of hard-wrapped lines (Project Gutenberg), joined with spaces."""
    blocks = [b for b in re.split(r"\n[ \t]*\n", text) if b.strip()]
    wrapped = sum(1 for b in blocks if "\n" in b.strip())
    if len(blocks) > 1 and wrapped * 2 > len(blocks):
        return [" ".join(line.strip() for line in b.split("\n") if line.strip()) for b in blocks]
    return [line.strip() for line in text.split("\n") if line.strip()]


def speech_runs(
    text: str, counts: Counter[str], min_quoted_share: float = 0.5, inline_colon_dash: bool = True,
    max_turn_chars: int = 1000,
) -> Iterator[list[str]]:
    """Runs of consecutive speech paragraphs (each run: the spoken texts in order). A narrative
    paragraph, an empty speech or an over-long one ends a run; `counts` says how often each happened."""
    run: list[str] = []
    for par in split_paragraphs(text):
        speech = paragraph_speech(par, min_quoted_share, inline_colon_dash)
        if speech is None:
            counts["paragraphs_narrative"] += 1
            if run:
                yield run
                run = []
            continue
        counts[f"paragraphs_speech_{speech.kind}"] += 1
        counts["remark_chars_removed"] += speech.remark_chars
        reason = None
        if not speech.text or not _LETTER.search(speech.text):
            reason = "speech_empty_after_remarks"
        elif len(speech.text) > max_turn_chars:
            reason = "speech_too_long"
        if reason:
            counts[f"dropped_{reason}"] += 1
            if run:
                yield run
                run = []
            continue
        run.append(speech.text)
    if run:
        yield run
