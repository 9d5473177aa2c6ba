"""What ties the MLflow runs of one pipeline run together: a shared id, a readable name, a params hash.

DVC gives a stage no id of the `dvc repro` / `dvc exp run` that started it, so one is derived from the
nearest ancestor process that is DVC: its pid and start time (from /proc) name that invocation, and
every stage it runs below it (through the shell DVC starts) gets the same id. `HOMUNCULUS_PIPELINE_RUN`
overrides it (a scheduler running the stages itself sets it once for all of them); a process with
neither (`python -m src.run STAGE`) gets a fresh id of its own.

No MLflow here: these are plain functions the runner (src/stage.py) and src/tracking.py call.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PIPELINE_ENV = "HOMUNCULUS_PIPELINE_RUN"
# Set by DVC for the stage commands of `dvc exp run` (dvc/repo/experiments/queue/base.py), not by `dvc repro`.
DVC_EXP_ENV = "DVC_EXP_NAME"

PIPELINE_TAG = "pipeline.run_id"
PARAMS_HASH_TAG = "params.hash"
DVC_EXP_TAG = "dvc.exp_name"
STAGE_TAG = "stage"
PRESET_TAG = "model.preset"
OVERRIDES_TAG = "run.overrides"

NAME_SEPARATOR = " · "
MAX_RUN_NAME = 250  # MLflow's run-name column
MAX_ANCESTORS = 64  # a loop guard: pid 1 is reached long before
# Overrides that do not change what a stage computes stay out of the run name.
QUIET_OVERRIDE_PREFIXES = ("tracking.", "hydra.", "trainer.enable_progress_bar")

_FRESH_ID: list[str] = []


@dataclass(frozen=True)
class ProcessInfo:
    pid: int
    ppid: int
    start_ticks: int  # field 22 of /proc/<pid>/stat: start time in clock ticks since boot
    argv: tuple[str, ...]


def read_process(pid: int, proc: Path = Path("/proc")) -> ProcessInfo | None:
    """The parent, start time and command line of `pid` from a Linux /proc, None when unreadable."""
    try:
        stat = (proc / str(pid) / "stat").read_text(encoding="utf-8", errors="replace")
        cmdline = (proc / str(pid) / "cmdline").read_bytes()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may itself contain spaces or ')'.
    fields = stat[stat.rfind(")") + 2 :].split()
    try:
        ppid, start = int(fields[1]), int(fields[19])
    except (IndexError, ValueError):
        return None
    argv = tuple(a.decode("utf-8", "replace") for a in cmdline.split(b"\0") if a)
    return ProcessInfo(pid, ppid, start, argv)


def is_dvc(argv: Sequence[str]) -> bool:
    """`dvc ...` (the console script, exec'd directly or by its Python) or `python -m dvc ...`."""
    if not argv:
        return False
    if Path(argv[0]).name == "dvc":
        return True
    if not Path(argv[0]).name.startswith("python") or len(argv) < 2:
        return False
    return Path(argv[1]).name == "dvc" or tuple(argv[1:3]) == ("-m", "dvc")


def dvc_ancestor(pid: int | None = None, read: Callable[[int], ProcessInfo | None] | None = None,
                 ) -> ProcessInfo | None:
    """The nearest ancestor of `pid` (default: this process) that is DVC, or None."""
    read = read or read_process
    current = read(pid or os.getpid())
    for _ in range(MAX_ANCESTORS):
        if current is None or current.ppid <= 0:
            return None
        current = read(current.ppid)
        if current is not None and is_dvc(current.argv):
            return current
    return None


def _boot_id(proc: Path = Path("/proc")) -> str:
    # pid + start ticks are unique per boot; the boot id keeps two machines (or reboots) apart.
    try:
        return (proc / "sys" / "kernel" / "random" / "boot_id").read_text().strip()
    except OSError:
        return ""


def current_pipeline_run_id(env: Mapping[str, str] | None = None,
                            read: Callable[[int], ProcessInfo | None] | None = None) -> str:
    """The id shared by every stage of one `dvc repro` / `dvc exp run`: `HOMUNCULUS_PIPELINE_RUN` if
    set, else a hash of the nearest DVC ancestor process (pid, start time, boot), else an id fresh
    to this process (the same on every call in it)."""
    env = os.environ if env is None else env
    if env.get(PIPELINE_ENV):
        return env[PIPELINE_ENV]
    ancestor = dvc_ancestor(read=read)
    if ancestor is not None:
        key = f"{_boot_id()}:{ancestor.pid}:{ancestor.start_ticks}"
        return "dvc-" + hashlib.sha256(key.encode()).hexdigest()[:12]
    if not _FRESH_ID:
        _FRESH_ID.append("run-" + uuid.uuid4().hex[:12])
    return _FRESH_ID[0]


def params_hash(params: Mapping[str, Any]) -> str:
    """sha256 of a stage's params as sorted JSON: equal exactly when every param value is equal."""
    text = json.dumps(dict(params), sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def shown_overrides(overrides: Iterable[str]) -> list[str]:
    """The overrides worth naming a run after: not the tracking/Hydra plumbing, `~group` deletions
    (they drop config sections the stage does not read) or paths (the run's inputs show the data;
    all overrides are in the `run.overrides` tag)."""
    return [o for o in overrides if not o.startswith("~") and "/" not in o.partition("=")[2]
            and not o.lstrip("+").startswith(QUIET_OVERRIDE_PREFIXES)]


def run_name(stage: str, preset: str | None, section_name: str | None,
             overrides: Sequence[str] = (), exp_name: str | None = None) -> str:
    """`<stage> · <model preset> · <recipe name> · <overrides or DVC experiment name>`, parts that
    are unknown or repeat the one before left out, e.g. `pretrain · tiny · sample · model.n_layer=2`."""
    parts = [stage]
    for part in (preset, section_name):
        if part and part != "???" and part not in parts:
            parts.append(part)
    variant = ",".join(shown_overrides(overrides)) or exp_name
    if variant:
        parts.append(variant)
    name = NAME_SEPARATOR.join(parts)
    return name if len(name) <= MAX_RUN_NAME else name[: MAX_RUN_NAME - 1] + "…"
