"""`python -m src.config compose [OVERRIDES...]`: write params.yaml from conf/ (as `dvc exp run` does).
`python -m src.config check`: validate params.yaml against the schema and report drift from conf/."""

from __future__ import annotations

import sys

from src.config import ConfigError, composed_params_text, load_config, write_params
from src.paths import PARAMS_FILE


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"compose", "check"}:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        if argv[0] == "compose":
            print(f"wrote {write_params(argv[1:])}")
            return 0
        load_config()
        if PARAMS_FILE.read_text(encoding="utf-8") != composed_params_text():
            print("params.yaml differs from conf/: run `python -m src.config compose`", file=sys.stderr)
            return 1
        print("params.yaml is valid and matches conf/")
        return 0
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
