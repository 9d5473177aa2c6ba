from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TokenizerConfig:
    """Placeholder: the owner of the `tokenizer` section fills in its keys."""

    enabled: bool = True
