"""`normalize`: the text normalization shared by every cleaner and the tokenizer (src/text/normalize.py)."""

from __future__ import annotations

from dataclasses import dataclass


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
    # „…“, “…”, "…" -> «…»; with nested_quotes a quote inside «…» becomes „…“.
    quotes: bool = True
    nested_quotes: bool = True
    # " - ", " -- ", " – " and dialogue "- " at line start -> "—"; hyphens inside words stay.
    dashes: bool = True
    # "..." -> "…" (exactly three dots; longer rows of dots mark omissions and stay).
    ellipsis: bool = True
    # Collapse runs of spaces, strip each line, drop invisible characters, limit blank lines.
    whitespace: bool = True
    max_blank_lines: int = 1
