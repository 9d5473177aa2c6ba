from __future__ import annotations

from dataclasses import dataclass


@dataclass
class CleanSubsConfig:
    """Placeholder: the owner of the `clean_subs` section fills in its keys."""

    enabled: bool = True
