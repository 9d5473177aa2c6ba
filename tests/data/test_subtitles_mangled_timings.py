"""Timing lines mangled by machine translation or an HTML round trip: every form is read as a timing
line by every parser path, and a line holding two timestamps never comes out as dialogue."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from src.config.sections.clean_subs import SubsParseConfig
from src.data.subtitles.file_cleaner import clean_subtitle_bytes
from src.data.subtitles.srt_parse import TIMING_LIKE, canonicalize_timing_lines, parse_subtitle
from src.paths import PROJECT_ROOT
from tests.data.subtitle_fixtures import MANGLED_TIMINGS, config, mangled_srt, mangled_timing, srt

FORMS = sorted(MANGLED_TIMINGS)


def _texts(form: str) -> list[str]:
    # Each ends a sentence, so no cue is merged into the next as a continuation.
    return [f"First line of {form}.", f"Second line,\nwrapped in {form}.", f"Third of {form}!"]


@pytest.mark.parametrize("form", FORMS)
def test_every_form_is_a_timing_line(form: str) -> None:
    line = mangled_timing(form, 1_234, 65_432)
    canonical, repaired = canonicalize_timing_lines(f"{line}\nText.")
    assert canonical == "00:00:01,234 --> 00:01:05,432\nText."
    assert repaired == (0 if form == "dot_for_comma" else 1)  # the library reads "." as it stands


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize(("which", "preamble", "parser"), [
    ("every", "", "srt"),            # all mangled: the grammar reads the repaired file
    ("second", "", "srt"),           # one swallowed into the cue before it, then repaired
    ("first", "", "srt"),            # text before the first cue the grammar knows
    ("every", "Converted by a translation site\n\n", "fallback"),  # the grammar refuses even then
])
def test_each_parser_path_keeps_the_cues_apart(form: str, which: str, preamble: str, parser: str) -> None:
    texts = _texts(form)
    parsed = parse_subtitle(mangled_srt(form, texts, which, preamble), SubsParseConfig())
    assert parsed.parser == parser
    assert [c.text for c in parsed.cues] == texts
    assert [(c.start_ms, c.end_ms) for c in parsed.cues] == [(2000, 3500), (4000, 5500), (6000, 7500)]


def test_clean_files_are_not_rewritten() -> None:
    parsed = parse_subtitle(srt((0, 1000, "One."), (1000, 2000, "Two.")), SubsParseConfig())
    assert parsed.parser == "srt" and parsed.counts["timing_repaired"] == 0 and not parsed.warnings


@pytest.mark.parametrize("line", [
    "00:00:05,000 00:00:06,000",               # no arrow at all
    "00:00:05,000 ==> 00:00:06,000",           # an arrow no parser takes
    "- 00:00:05,000 --> 00:00:06,000 -",       # decorated
    "<b>00:00:05,000</b> -<i>&gt;</i> 00:00:06,000",  # tags inside
])
def test_a_line_with_two_timestamps_is_never_dialogue(line: str) -> None:
    text = srt((0, 1000, "Before it."), (1000, 3000, f"Kept line.\n{line}"), (3000, 4000, "After it."))
    res = clean_subtitle_bytes(text.encode(), "guard.srt", config())
    out = [u.text for u in res.utterances]
    assert out == ["Before it.", "Kept line.", "After it."]
    assert res.rules["timing_like_line"] == 1


def test_dialogue_with_one_time_of_day_stays() -> None:
    text = srt((0, 1000, "Meet me at 10:30:00 sharp."), (1000, 2000, "Not at 9.30, at 10:30."))
    res = clean_subtitle_bytes(text.encode(), "times.srt", config())
    assert [u.text for u in res.utterances] == ["Meet me at 10:30:00 sharp.", "Not at 9.30, at 10:30."]
    assert res.rules["timing_like_line"] == 0


def test_probe_output_has_no_timing_line_on_any_mangled_form(tmp_path: Path) -> None:
    files, expected = [], []
    for form in FORMS:
        for which in ("every", "second"):
            texts = _texts(form)
            path = tmp_path / f"{form}_{which}.srt"
            path.write_text(mangled_srt(form, texts, which), encoding="utf-8")
            files.append(str(path))
            expected += [" ".join(t.split("\n")) for t in texts]
    done = subprocess.run([sys.executable, "-m", "src.data.subtitles", "clean", *files],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line for line in lines if TIMING_LIKE.search(line)] == []
    assert lines == expected  # one utterance per cue: none merged with the next cue's index or text
    repaired = [line for line in done.stderr.splitlines() if "timing_line_repaired=" in line]
    assert len(repaired) == len(files) - 2  # every file but the two "dot_for_comma" ones
