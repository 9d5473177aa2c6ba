from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TrainerConfig:
    """Placeholder: the owner of the `trainer` section fills in its keys."""

    enabled: bool = True
