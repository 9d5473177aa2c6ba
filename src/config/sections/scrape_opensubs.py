from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ScrapeOpensubsConfig:
    """Placeholder: the owner of the `scrape_opensubs` section fills in its keys."""

    enabled: bool = True
