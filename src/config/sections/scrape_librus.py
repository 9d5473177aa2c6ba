from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ScrapeLibrusConfig:
    """Placeholder: the owner of the `scrape_librus` section fills in its keys."""

    enabled: bool = True
