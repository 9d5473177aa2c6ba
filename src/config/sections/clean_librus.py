from __future__ import annotations

from dataclasses import dataclass


@dataclass
class CleanLibrusConfig:
    """Placeholder: the owner of the `clean_librus` section fills in its keys."""

    enabled: bool = True
