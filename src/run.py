"""`python -m src.run STAGE [HYDRA_OVERRIDES...]`: run one stage outside DVC on a Hydra-composed config.

Calls the same function as `python -m stages.STAGE` (which reads params.yaml), e.g.
`python -m src.run clean_librus clean_librus.rules.archive_codes=false tracking.enabled=false`.
"""

from __future__ import annotations

import sys

from src.config import compose, load_config
from src.errors import InputError
from src.pipeline import STAGES
from src.stage import execute_stage, exit_status


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in STAGES:
        print(f"usage: python -m src.run STAGE [overrides]; STAGE is one of {', '.join(STAGES)}",
              file=sys.stderr)
        return 2
    try:
        overrides = argv[1:]
        execute_stage(argv[0], load_config(compose(overrides), origin=f"conf/ with overrides {overrides}"),
                      overrides=overrides)
    except InputError as exc:
        return exit_status(argv[0], exc)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
