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
