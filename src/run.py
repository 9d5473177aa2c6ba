"""`python -m src.run STAGE [HYDRA_OVERRIDES...]`: run one stage outside DVC on a Hydra-composed config.

Calls the same function as `python -m stages.STAGE` (which reads params.yaml), e.g.
`python -m src.run clean_librus clean_librus.rules.archive_codes=false tracking.enabled=false`.
"""

from __future__ import annotations

import sys

from src.config import ConfigError, compose
from src.pipeline import STAGES
from src.stage import execute_stage


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in STAGES:
        print(f"usage: python -m src.run STAGE [overrides]; STAGE is one of {', '.join(STAGES)}",
              file=sys.stderr)
        return 2
    try:
        cfg = compose(argv[1:])
        execute_stage(argv[0], cfg)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
