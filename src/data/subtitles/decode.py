"""Bytes of a subtitle file -> text, whatever encoding it was saved in.

Order: BOM; BOM-less UTF-16 (NUL-byte pattern); strict UTF-8; then single-byte code pages, where
charset-normalizer's guess is checked by our own statistics because Cyrillic code pages are easy to
confuse: cp1251 text read as koi8-r still "looks Cyrillic", only its letter case comes out inverted.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass, field

from src.config.sections.clean_subs import SubsDecodeConfig

_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),  # before UTF-16 LE: its BOM starts with the same two bytes
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0e-\x1f]")
_CYRILLIC_LOWER = re.compile(r"[а-яёіїєґў]")
_HIGH_BYTES = bytes(range(0x80, 0x100))
_ASCII_LETTERS = bytes(range(0x41, 0x5B)) + bytes(range(0x61, 0x7B))


class UndecodableError(ValueError):
    """The bytes are not text in any encoding we know (binary, empty, or garbage)."""


@dataclass
class Decoded:
    text: str
    encoding: str
    bom: bool = False
    warnings: list[str] = field(default_factory=list)


def _utf16_without_bom(sample: bytes, cfg: SubsDecodeConfig) -> str | None:
    """UTF-16 of mostly ASCII/Cyrillic text has a NUL (or 0x04) byte in every other position."""
    if len(sample) < 4:
        return None
    even, odd = sample[0::2], sample[1::2]
    if odd.count(0) / len(odd) >= cfg.utf16_nul_ratio:
        return "utf-16-le"
    if even.count(0) / len(even) >= cfg.utf16_nul_ratio:
        return "utf-16-be"
    return None


def _cyrillic_score(text: str) -> float:
    """Share of non-ASCII characters that are lower-case letters of the common Cyrillic alphabets.

    Real Cyrillic text is mostly lower-case letters; the wrong code page turns the same bytes into
    upper-case letters (cp1251 read as koi8-r), rare letters or symbols (mac_cyrillic, cp866).
    """
    non_ascii = len(text) - len(text.encode("ascii", errors="ignore"))
    return len(_CYRILLIC_LOWER.findall(text)) / non_ascii if non_ascii else 0.0


def _best_cyrillic(data: bytes, cfg: SubsDecodeConfig) -> str:
    best, best_score = cfg.cyrillic_encodings[0], -1.0
    for enc in cfg.cyrillic_encodings:
        score = _cyrillic_score(data.decode(enc, errors="replace"))
        if score > best_score:
            best, best_score = enc, score
    return best


def _high_byte_ratio(sample: bytes) -> float:
    """Share of bytes >= 0x80 among letter-like bytes (ASCII letters + high bytes)."""
    high = len(sample) - len(sample.translate(None, _HIGH_BYTES))
    ascii_letters = len(sample) - len(sample.translate(None, _ASCII_LETTERS))
    total = high + ascii_letters
    return high / total if total else 0.0


def _single_byte(data: bytes, cfg: SubsDecodeConfig) -> tuple[str, list[str]]:
    from charset_normalizer import from_bytes

    sample = data[: cfg.sample_bytes]
    warnings: list[str] = []
    if _high_byte_ratio(sample) >= cfg.cyrillic_high_byte_ratio:
        chosen = _best_cyrillic(sample, cfg)
        guess = from_bytes(sample, cp_isolation=cfg.candidate_encodings).best()
        if guess is not None and guess.encoding != chosen:
            warnings.append(f"charset-normalizer said {guess.encoding}, Cyrillic case check chose {chosen}")
        return chosen, warnings
    guess = from_bytes(sample, cp_isolation=cfg.candidate_encodings).best()
    if guess is None:
        # Every byte decodes in cp1252 except five; a last resort that keeps the text readable.
        warnings.append("no code page fits; decoded as cp1252 with replacement characters")
        return "cp1252", warnings
    return guess.encoding, warnings


def _check_text(text: str, encoding: str, cfg: SubsDecodeConfig) -> None:
    if not text.strip():
        raise UndecodableError("empty file")
    sample = text[: cfg.sample_bytes]
    controls = len(_CONTROL_CHARS.findall(sample))
    if controls / len(sample) > cfg.max_control_ratio:
        raise UndecodableError(
            f"binary data: {controls} control characters in the first {len(sample)} (read as {encoding})"
        )


def decode_subtitle(data: bytes, cfg: SubsDecodeConfig) -> Decoded:
    """Decode subtitle bytes; raise UndecodableError for empty or binary input."""
    if not data:
        raise UndecodableError("empty file")
    for bom, enc in _BOMS:
        if data.startswith(bom):
            text = data[len(bom):].decode(enc, errors="replace")
            warnings = ["invalid bytes replaced"] if "\ufffd" in text else []
            _check_text(text, enc, cfg)
            return Decoded(text, enc, bom=True, warnings=warnings)
    utf16 = _utf16_without_bom(data[: cfg.sample_bytes], cfg)
    if utf16 is not None:
        text = data.decode(utf16, errors="replace")
        _check_text(text, utf16, cfg)
        return Decoded(text, utf16, warnings=["UTF-16 without BOM"])
    try:
        text = data.decode("utf-8")
        encoding = "utf-8"
        warnings: list[str] = []
    except UnicodeDecodeError:
        encoding, warnings = _single_byte(data, cfg)
        text = data.decode(encoding, errors="replace")
    _check_text(text, encoding, cfg)
    return Decoded(text, encoding, warnings=warnings)
