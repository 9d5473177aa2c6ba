"""Where things live: the project root and the shared real-data folder."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CONF_DIR = PROJECT_ROOT / "conf"
PARAMS_FILE = PROJECT_ROOT / "params.yaml"


def main_checkout_root(root: Path = PROJECT_ROOT) -> Path:
    """The user's checkout, even when DVC runs us in a temporary copy.

    `dvc exp run --temp/--queue` executes in `<repo>/.dvc/tmp/exps/...`; runs there must still be
    tracked in the repository's own `mlruns/`, so we climb back out of that copy.
    """
    parts = root.parts
    for i in range(len(parts) - 2):
        if parts[i] == ".dvc" and parts[i + 1] == "tmp" and parts[i + 2] == "exps":
            return Path(*parts[:i])
    return root


def shared_data_dir() -> Path:
    """`../shared/data` beside the checkout (override with HOMUNCULUS_SHARED_DATA)."""
    env = os.environ.get("HOMUNCULUS_SHARED_DATA")
    if env:
        return Path(env)
    return main_checkout_root().parent / "shared" / "data"


def display_path(path: str | Path) -> str:
    """Project-relative (posix) when inside the project, absolute otherwise: what reports and stage
    outputs record, so they do not depend on where the project is checked out."""
    absolute = resolve(path).resolve()
    try:
        return absolute.relative_to(PROJECT_ROOT.resolve()).as_posix()
    except ValueError:
        return absolute.as_posix()


def resolve(path: str | Path) -> Path:
    """A config path: absolute as given, relative to the project root otherwise."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else PROJECT_ROOT / p
