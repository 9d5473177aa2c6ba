"""Builders of small SRT texts for the subtitle tests (each test writes exactly the defect it checks)."""

from __future__ import annotations

from src.config.sections.clean_subs import CleanSubsConfig


def ts(ms: int, sep: str = ",") -> str:
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def srt(*cues: tuple[int, int, str], eol: str = "\n", indexes: bool = True) -> str:
    """An SRT text from (start_ms, end_ms, text) cues."""
    blocks = []
    for i, (start, end, text) in enumerate(cues, 1):
        head = [str(i)] if indexes else []
        blocks.append(eol.join([*head, f"{ts(start)} --> {ts(end)}", *text.split("\n")]))
    return (eol + eol).join(blocks) + eol


def config(**overrides: object) -> CleanSubsConfig:
    cfg = CleanSubsConfig()
    for key, value in overrides.items():
        section, _, name = key.rpartition(".")
        setattr(getattr(cfg, section) if section else cfg, name, value)
    return cfg


# Timing lines as machine translation and HTML round trips leave them: {a} and {b} are the stamps.
MANGLED_TIMINGS = {
    "html_escaped": "{a} -&gt; {b}",
    "html_escaped_long_arrow": "{a} --&gt; {b}",
    "entity_with_spaces": "{a} - & gt; {b}",
    "entity_space_before_semicolon": "{a} -&gt ; {b}",
    "entity_escaped_twice": "{a} --&amp;gt; {b}",
    "numeric_entity": "{a} --&#62; {b}",
    "en_dash": "{a} –> {b}",
    "em_dash": "{a} —> {b}",
    "two_en_dashes": "{a} ––> {b}",
    "minus_sign": "{a} −−> {b}",
    "unicode_hyphen": "{a} ‐‐> {b}",
    "fullwidth_hyphen": "{a} －－> {b}",
    "arrow_sign": "{a} → {b}",
    "spaced_stamps": "{a_spaced} --> {b_spaced}",
    "dot_for_comma": "{a_dot} --> {b_dot}",
    "spaced_dot_en_dash_entity": "{a_spaced_dot} – &gt; {b_spaced_dot}",
    "no_break_spaces_minus": "{a_nbsp} −> {b_nbsp}",
}


def mangled_timing(form: str, start: int, end: int) -> str:
    """One timing line in a mangled form of MANGLED_TIMINGS."""
    stamps = {}
    for name, ms in (("a", start), ("b", end)):
        plain = ts(ms)
        stamps[name] = plain
        stamps[f"{name}_spaced"] = plain.replace(":", " : ").replace(",", " , ")
        stamps[f"{name}_dot"] = ts(ms, ".")
        stamps[f"{name}_spaced_dot"] = ts(ms, ".").replace(":", " : ")
        stamps[f"{name}_nbsp"] = plain.replace(":", "\u00a0:\u00a0")
    return MANGLED_TIMINGS[form].format(**stamps)


def mangled_srt(form: str, texts: list[str], which: str = "every", preamble: str = "") -> str:
    """An SRT text whose timing lines are mangled in `form`: `which` = "every", "first" or "second"
    line; `preamble` is put before the first cue (the grammar then rejects the file)."""
    blocks = []
    for i, text in enumerate(texts, 1):
        start, end = i * 2000, i * 2000 + 1500
        mangle = which == "every" or (which == "first" and i == 1) or (which == "second" and i == 2)
        timing = mangled_timing(form, start, end) if mangle else f"{ts(start)} --> {ts(end)}"
        blocks.append("\n".join([str(i), timing, *text.split("\n")]))
    return preamble + "\n\n".join(blocks) + "\n"
