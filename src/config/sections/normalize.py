from __future__ import annotations

from dataclasses import dataclass


@dataclass
class NormalizeConfig:
    """Placeholder: the owner of the `normalize` section fills in its keys."""

    enabled: bool = True
