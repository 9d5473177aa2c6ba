"""One document through the cleaner: parse -> mojibake repair -> reflow -> rules -> normalize.

Kept apart from the stage so that process-pool workers import only this (no pyarrow, no MLflow).
Workers build the rules once, in `init_worker`, from the picklable config dataclasses.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from src.config.sections.clean_librus import CleanLibrusConfig
from src.config.sections.normalize import NormalizeConfig
from src.data.librus.parse import INDEX, ParseError, parse_page
from src.data.librus.rules import Rule, apply_rules, build_rules
from src.text.mojibake import repair_mojibake
from src.text.normalize import normalize_text
from src.text.reflow import reflow_hard_wrap


@dataclass
class Cleaner:
    conf: CleanLibrusConfig
    normalize: NormalizeConfig
    rules: list[Rule] = field(default_factory=list)

    @classmethod
    def build(cls, conf: CleanLibrusConfig, normalize: NormalizeConfig) -> Cleaner:
        return cls(conf, normalize, build_rules(conf.rules))


@dataclass
class CleanedDocument:
    """What cleaning one page gave: the text, or the reason there is none."""

    ok: bool
    reason: str = ""
    text: str = ""
    kind: str = ""
    format: str = ""
    title: str | None = None
    author: str | None = None
    chars_in: int = 0  # decoded page, markup included
    chars_extracted: int = 0  # the work as extracted, before rules and normalization
    n_chars: int = 0
    encoding: str | None = None
    mojibake_fixed: str | None = None  # "koi8-r read as windows-1251" when repaired
    reflowed: bool = False
    rules: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> (matches, chars)
    note: str = ""


def clean_page(page: str, cleaner: Cleaner, name: str) -> CleanedDocument:
    """Clean one decoded page (HTML of either lib.ru format, or plain text)."""
    try:
        parsed = parse_page(page, cleaner.conf.parse, name)
    except ParseError as exc:
        return CleanedDocument(False, f"unparsable: {exc}", chars_in=len(page))
    base: dict[str, Any] = {
        "kind": parsed.kind, "format": parsed.format, "title": parsed.title,
        "author": parsed.author, "chars_in": parsed.page_chars, "note": parsed.note,
    }
    if parsed.kind == INDEX:
        return CleanedDocument(False, f"not a work: {parsed.note}", **base)
    text = parsed.text
    ncfg = cleaner.normalize
    fixed = None
    if ncfg.enabled and ncfg.repair_mojibake:
        fix = repair_mojibake(
            text, ncfg.mojibake_sample_chars, ncfg.mojibake_min_gain, ncfg.mojibake_min_letters
        )
        text = fix.text
        if fix.wrong_codec:
            fixed = f"{fix.true_codec} read as {fix.wrong_codec}"
    reflowed = False
    rcfg = cleaner.conf.reflow
    if rcfg.enabled:
        text, reflowed = reflow_hard_wrap(
            text, rcfg.min_wrap_width, rcfg.max_wrap_width, rcfg.full_line_ratio,
            rcfg.min_wrapped_share, rcfg.min_lines, rcfg.width_quantile,
        )
    chars_extracted = len(text)
    text, counts = apply_rules(text, cleaner.rules)
    text = normalize_text(text, dataclasses.replace(ncfg, repair_mojibake=False))
    doc = CleanedDocument(
        True, text=text, chars_extracted=chars_extracted, n_chars=len(text), mojibake_fixed=fixed,
        reflowed=reflowed, rules={k: (v.matches, v.chars_removed) for k, v in counts.items()}, **base,
    )
    if len(text) < cleaner.conf.min_doc_chars:
        doc.ok = False
        doc.reason = f"too short after cleaning: {len(text)} < min_doc_chars={cleaner.conf.min_doc_chars}"
    return doc


# --- process-pool plumbing -------------------------------------------------------------------

_WORKER: Cleaner | None = None


def init_worker(conf: CleanLibrusConfig, normalize: NormalizeConfig) -> None:
    global _WORKER
    _WORKER = Cleaner.build(conf, normalize)


def _cleaner() -> Cleaner:
    if _WORKER is None:
        raise RuntimeError("init_worker() was not called in this process")
    return _WORKER


def clean_stored_page(path: str) -> CleanedDocument:
    """Worker task: a page the crawler stored as UTF-8."""
    try:
        page = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return CleanedDocument(False, f"unreadable stored page {path}: {exc}")
    return clean_page(page, _cleaner(), path)


def clean_local_file(path: str) -> CleanedDocument:
    """Worker task: a file of a local directory, in whatever encoding it came."""
    from src.data.librus.decode import decode_bytes

    try:
        data = Path(path).read_bytes()
        page, encoding = decode_bytes(data)
    except (OSError, ValueError) as exc:
        return CleanedDocument(False, f"undecodable {path}: {exc}")
    doc = clean_page(page, _cleaner(), path)
    doc.encoding = encoding
    return doc
