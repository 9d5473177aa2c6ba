"""`python -m src.train +experiment=NAME [overrides]`: training outside the DVC pipeline.

Calls the same stage function as `dvc repro pretrain` (or `dvc repro sft` / `dvc repro kto` when the
config's `task` is sft or kto, as in the sft_* and kto_* experiments) through `execute_stage`, so
each run is an MLflow run with its full config. Hydra sweeps give one run per point:

    python -m src.train -m +experiment=cpu_smoke model.n_layer=1,2

Checkpoints and metrics go to the job's Hydra directory, named after its overrides
(outputs/train/<overrides>/ or outputs/sweep/<overrides>/), not to the pipeline's data/models/pretrain:
running the same command again finds its own last.ckpt there and resumes.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from src.config import ConfigError, compose, hydra_reason, load_config
from src.errors import InputError
from src.paths import CONF_DIR

# The stages `task` may name: they take the same trainer and a recipe section of the same shape.
TASKS = ("pretrain", "sft", "kto")

# The job directory depends only on the command's overrides (no timestamp), so a rerun resumes.
DEFAULT_DIRS = {
    "hydra.run.dir": "outputs/train/${hydra.job.override_dirname}",
    "hydra.sweep.dir": "outputs/sweep",
    "hydra.sweep.subdir": "${hydra.job.override_dirname}",
    # Settings that do not change what is trained stay out of the directory name.
    "hydra.job.config.override_dirname.exclude_keys":
        "[tracking.uri,tracking.enabled,tracking.experiment_prefix,trainer.enable_progress_bar]",
}


def job_config(cfg: DictConfig) -> DictConfig:
    """The composed config with checkpoints and reports redirected into this job's directory,
    unless the command sets them itself."""
    hc = HydraConfig.get()
    out = Path(hc.runtime.output_dir)
    given = {o.split("=", 1)[0].lstrip("+~") for o in hc.overrides.task}
    data = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(data, dict)
    task = data.get("task", "pretrain")
    if task not in TASKS:
        raise ConfigError(f"bad config value 'task': must be one of {list(TASKS)}, got {task!r}")
    if f"{task}.ckpt_dir" not in given:
        data[task]["ckpt_dir"] = str(out / "checkpoints")
    if f"{task}.report_dir" not in given:
        data[task]["report_dir"] = str(out)
    return load_config(data)


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base=None)
def train(cfg: DictConfig) -> None:
    from src.stage import execute_stage, exit_status

    # Lightning's DDP launcher re-runs this command for the other ranks from sys.argv (adding its own
    # hydra.run.dir); hand it the user's arguments, not ours, so the overrides do not clash.
    sys.argv[:] = USER_ARGV or sys.argv
    try:
        job = job_config(cfg)
        # The run is named after the stage, model and these overrides (src/tracking_pipeline.py).
        execute_stage(job.task, job, overrides=list(HydraConfig.get().overrides.task))
    except InputError as exc:
        sys.exit(exit_status(str(cfg.get("task", "pretrain")), exc))


USER_ARGV: list[str] = []
# Hydra's own command-line flags that take a value (the value is not an override).
VALUE_FLAGS = {"--config-name", "-cn", "--config-path", "-cp", "--config-dir", "-cd", "--cfg", "-c",
               "--package", "-p", "--experimental-rerun"}
HELP_FLAGS = {"--help", "-h", "--hydra-help", "--info", "-i", "--shell-completion", "-sc"}


def sweep_points(args: list[str]) -> list[list[str]]:
    """Override lists that together use every value of every sweep: the first value of each sweep,
    then each further value of one sweep with the others at their first (not the whole product)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    overrides, skip = [], False
    for arg in args:
        if skip or arg.startswith("-"):
            skip = not skip and arg in VALUE_FLAGS
            continue
        overrides.append(arg)
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as exc:
        raise ConfigError(f"overrides {overrides}: {hydra_reason(exc)}") from None
    parsed = [o for o in parsed if not o.key_or_group.startswith("hydra")]
    fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
    sweeps = [(o.get_key_element(), list(o.sweep_string_iterator()))
              for o in parsed if o.is_sweep_override()]
    first = [f"{key}={values[0]}" for key, values in sweeps]
    points = [fixed + first]
    for i, (key, values) in enumerate(sweeps):
        points += [fixed + first[:i] + [f"{key}={value}"] + first[i + 1:] for value in values[1:]]
    return points


def check_overrides(args: list[str]) -> None:
    """Compose and validate every sweep value before Hydra starts, so a typo or a bad value ends
    like any other config error (one line naming the key, status 2) and not in Hydra's own report,
    nor halfway through a sweep."""
    if HELP_FLAGS & set(args):
        return
    for point in sweep_points(args):
        load_config(compose(point), origin=f"conf/ with overrides {point}")


def main() -> None:
    USER_ARGV[:] = sys.argv
    try:
        check_overrides(sys.argv[1:])
    except InputError as exc:
        from src.stage import exit_status

        sys.exit(exit_status("pretrain", exc))
    given = {arg.split("=", 1)[0] for arg in sys.argv[1:]}
    sys.argv = sys.argv + [f"{key}={value}" for key, value in DEFAULT_DIRS.items() if key not in given]
    train()


if __name__ == "__main__":
    main()
