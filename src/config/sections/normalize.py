"""`normalize`: the text normalization shared by every cleaner and the tokenizer (src/text/normalize.py)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# Quote and dash conventions `typography` may name (src/text/normalize.py applies them):
# ru = «outer» „inner“ quotes; dialogue, spaced and doubled hyphens -> "—";
# en = “…” quotes (a quote re-opened inside an open one stays “: English continues quotations that
#      way); doubled and spaced hyphens between words -> "—", dialogue hyphens and en dashes stay;
# en_straight = en's dashes, every double quote "…" and ’ ‘ -> ';
# keep = quotes and dashes as written.
TYPOGRAPHY_STYLES = ("ru", "en", "en_straight", "keep")


@dataclass
class NormalizeConfig:
    """Each step can be switched off; the order they run in is fixed by `normalize_text`."""

    enabled: bool = True
    # Repair text decoded with the wrong Cyrillic codec (cp1251 / koi8-r / latin-1 / utf-8).
    repair_mojibake: bool = True
    # How many characters of a text the codec guess looks at (the repair itself covers all of it).
    mojibake_sample_chars: int = 20000
    # A candidate decoding must beat the text as given by this much (0..1 plausibility score).
    mojibake_min_gain: float = 0.25
    # Shorter texts (in letters) are never "repaired": too little evidence.
    mojibake_min_letters: int = 40
    nfc: bool = True
    yo_to_e: bool = True
    # Quotes by the text's typography (Russian: „…“, “…”, "…" -> «…», and with nested_quotes a quote
    # inside «…» becomes „…“).
    quotes: bool = True
    nested_quotes: bool = True
    # Dashes by the text's typography (Russian: " - ", " -- ", " – " and dialogue "- " at line
    # start -> "—"); hyphens inside words stay in every style.
    dashes: bool = True
    # Typography (one of TYPOGRAPHY_STYLES) by the language of the text; a caller that knows it
    # passes it (the subtitle cleaner: each file's detected language), others get "ru".
    typography: dict[str, str] = field(
        default_factory=lambda: {"ru": "ru", "uk": "ru", "be": "ru", "en": "en"}
    )
    # For languages `typography` does not list (and "unknown").
    typography_default: str = "keep"
    # "..." -> "…" (exactly three dots; longer rows of dots mark omissions and stay).
    ellipsis: bool = True
    # Collapse runs of spaces, strip each line, drop invisible characters, limit blank lines.
    whitespace: bool = True
    max_blank_lines: int = 1

    @staticmethod
    def problems(values: Mapping[str, Any]) -> list[tuple[str, str]]:
        out = [(f"typography.{lang}", f"must be one of {list(TYPOGRAPHY_STYLES)}, got {style!r}")
               for lang, style in (values.get("typography") or {}).items() if style not in TYPOGRAPHY_STYLES]
        default = values.get("typography_default")
        if default is not None and default not in TYPOGRAPHY_STYLES:
            out.append(("typography_default", f"must be one of {list(TYPOGRAPHY_STYLES)}, got {default!r}"))
        return out
