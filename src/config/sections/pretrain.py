from __future__ import annotations

from dataclasses import dataclass


@dataclass
class PretrainConfig:
    """Placeholder: the owner of the `pretrain` section fills in its keys."""

    enabled: bool = True
