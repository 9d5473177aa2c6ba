"""`python -m src.train +experiment=NAME [overrides]`: pretraining outside the DVC pipeline.

Calls the same stage function as `dvc repro pretrain` (through `execute_stage`, so each run is an
MLflow run with its full config). Hydra sweeps give one run per point:

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

from src.config import load_config
from src.errors import InputError
from src.paths import CONF_DIR

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
    if "pretrain.ckpt_dir" not in given:
        data["pretrain"]["ckpt_dir"] = str(out / "checkpoints")
    if "pretrain.report_dir" not in given:
        data["pretrain"]["report_dir"] = str(out)
    return load_config(data)


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base=None)
def train(cfg: DictConfig) -> None:
    from src.stage import execute_stage, exit_status

    # Lightning's DDP launcher re-runs this command for the other ranks from sys.argv (adding its own
    # hydra.run.dir); hand it the user's arguments, not ours, so the overrides do not clash.
    sys.argv[:] = USER_ARGV or sys.argv
    try:
        job = job_config(cfg)
        execute_stage("pretrain", job, run_name=HydraConfig.get().job.override_dirname or "defaults")
    except InputError as exc:
        sys.exit(exit_status("pretrain", exc))


USER_ARGV: list[str] = []


def main() -> None:
    USER_ARGV[:] = sys.argv
    given = {arg.split("=", 1)[0] for arg in sys.argv[1:]}
    sys.argv = sys.argv + [f"{key}={value}" for key, value in DEFAULT_DIRS.items() if key not in given]
    train()


if __name__ == "__main__":
    main()
