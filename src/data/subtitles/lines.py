"""Cleaned cues -> utterances: one speaker turn per line, with start/end times and a scene counter.

Subtitle lines are wrapped for the screen, not by sentence: a cue may hold two speakers ("- ...\\n- ...")
and one sentence may run over several cues ("FOR MY NEXT TRICK," + "NOTICE I HAVE NOTHING UP MY
SLEEVES..."). We split on speaker dashes and merge cues that continue a sentence.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from src.config.sections.clean_subs import SubsLinesConfig

_DASHES = "-–—‐"
_DASH = re.compile(rf"^[{_DASHES}]+\s*(?=\S)")
_CLOSERS = "\"'»”’)]"
_FINAL = ".!?…"
_CONTINUATION_MARKS = (",", ";", ":", "-", "–", "—", "...", "…")
_LEADING_DOTS = re.compile(r"^(?:\.{2,}|…)\s*")
_FIRST_LETTER = re.compile(r"[^\W\d_]")


@dataclass(slots=True)
class CleanCue:
    start_ms: int
    end_ms: int
    lines: list[str]


@dataclass(slots=True)
class Utterance:
    start_ms: int
    end_ms: int
    text: str
    dashed: bool = False  # began with a speaker dash: never glued to the previous line
    scene: int = 0


def split_turns(cue: CleanCue, cfg: SubsLinesConfig, counts: Counter[str]) -> list[Utterance]:
    """One utterance per speaker turn of a cue; wrapped lines of one turn are joined by a space.

    Cue lines come stripped and non-empty from the fluff rules."""
    lines = cue.lines
    # One speaker, most cues (the one-line test first: a generator per cue costs more than the rest).
    if not cfg.split_speaker_dashes or (
        lines[0][:1] not in _DASHES if len(lines) == 1 else not any(line[:1] in _DASHES for line in lines)
    ):
        return [Utterance(cue.start_ms, cue.end_ms, lines[0] if len(lines) == 1 else " ".join(lines))]
    turns: list[list[str]] = []
    dashed: list[bool] = []
    for line in cue.lines:
        stripped = _DASH.sub("", line) if line[:1] in _DASHES else line
        is_dash = stripped != line
        if not turns or is_dash:
            turns.append([stripped])
            dashed.append(is_dash)
        else:
            turns[-1].append(stripped)
    if len(turns) > 1:
        counts["speaker_split"] += len(turns) - 1
    return [
        Utterance(cue.start_ms, cue.end_ms, " ".join(t).strip(), d)
        for t, d in zip(turns, dashed, strict=True)
        if any(s.strip() for s in t)
    ]


def _ending(text: str) -> tuple[bool, bool]:
    """(open, marked): the text does not end a sentence; it ends in , ; : - or an ellipsis."""
    last = text[-1:]
    if last == "!" or last == "?" or (last == "." and not text.endswith("...")):
        return False, False  # most lines: decided without building the stripped tail
    tail = text.rstrip().rstrip(_CLOSERS)
    if not tail:
        return False, False
    marked = tail.endswith(_CONTINUATION_MARKS)
    return marked or tail[-1] not in _FINAL, marked


def _starts_continued(text: str) -> bool:
    """Starts lower-case or with an ellipsis ("...as six single people?")."""
    if text[:1] in ".…" and _LEADING_DOTS.match(text):
        return True
    m = _FIRST_LETTER.search(text[:4])
    return bool(m and m.group().islower())


def _should_merge(prev: Utterance, nxt: Utterance, cfg: SubsLinesConfig) -> bool:
    if nxt.dashed or len(prev.text) + len(nxt.text) + 1 > cfg.max_merged_chars:
        return False
    gap = nxt.start_ms - prev.end_ms
    if gap > cfg.merge_max_gap_ms:
        return False
    is_open, marked = _ending(prev.text)
    if marked and gap <= cfg.merge_short_gap_ms:
        return True
    return is_open and _starts_continued(nxt.text)


def _join(prev: str, nxt: str) -> str:
    if prev.rstrip().endswith(("...", "…")):
        nxt = _LEADING_DOTS.sub("", nxt)
    return f"{prev.rstrip()} {nxt.lstrip()}"


def build_utterances(
    cues: list[CleanCue], cfg: SubsLinesConfig, counts: Counter[str]
) -> list[Utterance]:
    """Split speaker turns, merge sentence continuations, drop repeats, number scenes."""
    out: list[Utterance] = []
    prev: Utterance | None = None  # out[-1]
    merge, drop_repeats, split = cfg.merge_continuations, cfg.drop_repeated_lines, cfg.split_speaker_dashes
    for cue in cues:
        lines = cue.lines
        if len(lines) == 1 and not (split and lines[0][:1] in _DASHES):
            turns: Iterable[Utterance] = (Utterance(cue.start_ms, cue.end_ms, lines[0]),)  # = split_turns
        else:
            turns = split_turns(cue, cfg, counts)
        for i, turn in enumerate(turns):
            if prev is None:
                out.append(prev := turn)
                continue
            if i == 0 and merge and _should_merge(prev, turn, cfg):
                prev.text = _join(prev.text, turn.text)
                prev.end_ms = max(prev.end_ms, turn.end_ms)
                counts["merged_continuation"] += 1
                continue
            if drop_repeats and prev.text.casefold() == turn.text.casefold():
                prev.end_ms = max(prev.end_ms, turn.end_ms)
                counts["repeated_line"] += 1
                continue
            out.append(prev := turn)
    scene = 0
    for i, cur in enumerate(out):
        if i and cur.start_ms - out[i - 1].end_ms > cfg.scene_gap_ms:
            scene += 1
        cur.scene = scene
    return out
