from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TokenizeConfig:
    """Placeholder: the owner of the `tokenize` section fills in its keys."""

    enabled: bool = True
