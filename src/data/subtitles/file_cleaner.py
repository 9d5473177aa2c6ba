"""One subtitle file's bytes -> utterances with times, language and a record of what was removed and why."""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Protocol

from src.config.sections.clean_subs import CleanSubsConfig
from src.data.subtitles.decode import UndecodableError, decode_subtitle
from src.data.subtitles.dedup import Fingerprint, fingerprint
from src.data.subtitles.fluff import (
    FluffPatterns,
    clean_cues,
    dominant_script,
    prepare_cues,
    upper_ratio,
)
from src.data.subtitles.langid import LangGuess, detect_language
from src.data.subtitles.lines import CleanCue, Utterance, build_utterances
from src.data.subtitles.srt_parse import parse_subtitle


class Normalizer(Protocol):
    """Text -> normalized text, quotes and dashes in the typography of `language`."""

    def __call__(self, text: str, language: str = ...) -> str: ...


# A single "." (not the end of "..."), "!" or "?" ends a sentence; an ellipsis usually does not.
_SENTENCE_START = re.compile(r"(^|(?:(?<!\.)\.|[!?])\s+|^[-–—]\s*)([^\W\d_])")
_ENGLISH_I = re.compile(r"\bi\b(?=(?:['’](?:m|ll|ve|d))?\b)")


@dataclass
class FileResult:
    """What cleaning one file produced; `status` is "ok" or the reason nothing usable came out."""

    name: str
    status: str = "ok"
    error: str | None = None
    encoding: str | None = None
    parser: str | None = None
    language: str = "unknown"
    language_share: float = 0.0
    all_caps: bool = False
    bytes: int = 0
    cues_in: int = 0
    cue_counts: dict[str, int] = field(default_factory=dict)
    utterances: list[Utterance] = field(default_factory=list)
    rules: Counter[str] = field(default_factory=Counter)
    warnings: list[str] = field(default_factory=list)
    fingerprint: Fingerprint | None = None


def sentence_case(text: str, language: str) -> str:
    """ALL CAPS -> sentence case: lower everything, capitalize sentence starts (and English "I")."""
    text = _SENTENCE_START.sub(lambda m: m.group(1) + m.group(2).upper(), text.lower())
    if language == "en":
        text = _ENGLISH_I.sub("I", text)
    return text


def _clean_cues(text: str, cfg: CleanSubsConfig, pat: FluffPatterns, result: FileResult) -> list[CleanCue]:
    parsed = parse_subtitle(text, cfg.parse)
    result.parser = parsed.parser
    result.cues_in = len(parsed.cues)
    result.cue_counts = parsed.counts
    result.warnings.extend(parsed.warnings)
    if parsed.counts.get("timing_repaired"):  # in the report's rule table too, not only its warnings
        result.rules["timing_line_repaired"] += parsed.counts["timing_repaired"]
    timed = parsed.cues
    if cfg.parse.drop_zero_duration and parsed.counts.get("zero_duration"):
        timed = [cue for cue in parsed.cues if cue.end_ms > cue.start_ms]
        result.rules["zero_duration"] += len(parsed.cues) - len(timed)
    texts = prepare_cues([c.text for c in timed], result.rules, cfg.lines.pipe_is_line_break)
    nonblank = [k for k, body in enumerate(texts) if body and not body.isspace()]  # = body.strip()
    if len(nonblank) < len(texts):
        result.rules["empty_cue"] += len(texts) - len(nonblank)
        timed, texts = [timed[k] for k in nonblank], [texts[k] for k in nonblank]
    sample = "\n".join(texts)[: cfg.langid.sample_chars]
    result.all_caps = upper_ratio(sample) >= cfg.rules.all_caps_ratio
    script = dominant_script(sample)
    lines = clean_cues(texts, pat, result.rules, not result.all_caps, script)
    return [CleanCue(cue.start_ms, cue.end_ms, kept) for cue, kept in zip(timed, lines, strict=True) if kept]


def _normalize_all(texts: list[str], normalize: Normalizer, result: FileResult) -> list[str]:
    """Normalize a file's lines in one call (the mojibake check wants the whole file, and one call
    is much cheaper than thousands), in the file's language's typography; per line only if the
    normalizer changed the line count."""
    language = result.language
    joined = normalize("\n".join(texts), language).split("\n")
    if len(joined) == len(texts):
        return joined
    result.warnings.append("normalizer changed the line count; normalized line by line")
    return [normalize(t, language) for t in texts]


def _finish_lines(
    utts: list[Utterance], guess: LangGuess, cfg: CleanSubsConfig, normalize: Normalizer | None,
    result: FileResult,
) -> list[Utterance]:
    texts = [u.text for u in utts]
    if result.all_caps and cfg.rules.case_normalize_all_caps:
        texts = [sentence_case(t, guess.language) for t in texts]
        result.rules["all_caps_recased"] += len(texts)
    if normalize is not None and texts:
        texts = _normalize_all(texts, normalize, result)
    out = []
    for utt, text in zip(utts, texts, strict=True):
        text = text.strip()  # spaces were collapsed by the fluff rules and the normalizer
        if not text:
            result.rules["empty_after_normalize"] += 1
            continue
        utt.text = text
        out.append(utt)
    return out


def clean_subtitle_bytes(
    data: bytes, name: str, cfg: CleanSubsConfig, normalize: Normalizer | None = None,
    patterns: FluffPatterns | None = None,
) -> FileResult:
    """Decode, parse, clean and shape one file. Never raises on bad input: see `status` and `warnings`."""
    result = FileResult(name=name, bytes=len(data))
    pat = patterns or FluffPatterns.build(cfg.rules)
    try:
        decoded = decode_subtitle(data, cfg.decode)
    except UndecodableError as exc:
        result.status, result.error = "unreadable", str(exc)
        return result
    result.encoding = decoded.encoding
    result.warnings.extend(decoded.warnings)
    cues = _clean_cues(decoded.text, cfg, pat, result)
    if result.cues_in == 0:
        result.status, result.error = "unreadable", "no SRT timing line found (not a subtitle file?)"
        return result
    utts = build_utterances(cues, cfg.lines, result.rules)
    guess = detect_language("\n".join(u.text for u in utts), cfg.langid)
    result.language, result.language_share = guess.language, round(guess.share, 3)
    result.utterances = _finish_lines(utts, guess, cfg, normalize, result)
    if not result.utterances:
        result.status, result.error = "empty", f"all {result.cues_in} cues were fluff or empty"
    result.fingerprint = fingerprint([u.text for u in result.utterances], cfg.dedup)
    return result


def load_normalizer(
    normalize_cfg: Any, repair_mojibake: bool | None = None
) -> tuple[Normalizer | None, str | None]:
    """`src.text.normalize.normalize_text` bound to its config, or None with the reason it is missing.

    `repair_mojibake` (when not None) overrides the section's switch of that name: our decoder has
    already chosen the code page from the bytes, and re-guessing it from text is most of the cost.
    """
    try:
        from src.text.normalize import as_normalize_config, normalize_text
    except ImportError as exc:
        return None, f"src.text.normalize unavailable ({exc}); utterances not normalized"
    if repair_mojibake is not None:
        normalize_cfg = dataclasses.replace(
            as_normalize_config(normalize_cfg), repair_mojibake=repair_mojibake
        )

    def normalize(text: str, language: str = "ru") -> str:
        return normalize_text(text, normalize_cfg, language=language)

    return normalize, None
