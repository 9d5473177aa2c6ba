"""The `pretrain` stage: train a GPT on the tokenize stage's memmaps with Lightning.

Reads `pretrain.data_dir` (train.bin, val.bin, meta.json); writes `pretrain.ckpt_dir` (best.ckpt,
last.ckpt, val_curve.json, samples.txt) and `pretrain.report_dir/metrics.json`. Running the same
config again continues from last.ckpt (exactly, on the CPU with `trainer.deterministic`).
"""

from __future__ import annotations

import json
import shutil
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.strategies import DDPStrategy, FSDPStrategy, Strategy
from omegaconf import DictConfig, OmegaConf

from src.config import ConfigError
from src.paths import resolve
from src.stage import StageRun
from src.training.callbacks import (
    THROUGHPUT_FILE,
    EvalPlan,
    Evaluator,
    SampleSettings,
    TrainingMonitor,
    read_throughput,
)
from src.training.checkpoint import (
    BEST,
    LAST,
    AtomicCheckpointIO,
    CheckpointError,
    identity_diff,
    move_aside,
    read_resumable,
    training_code_sha256,
)
from src.training.data import (
    TokenDataModule,
    TokenMeta,
    check_token_range,
    even_val_batches,
    read_meta,
)
from src.training.flops import peak_flops
from src.training.mlflow_logger import StageRunLogger
from src.training.module import PretrainModule

# Validation runs in the Evaluator callback (at optimizer-step intervals, through the strategy), not in
# Lightning's epoch-based loop; the module's validation_step is what it calls.
warnings.filterwarnings("ignore", message=".*validation_step.* but have no `val_dataloader`")


class PretrainConfigError(ConfigError):
    """Settings that cannot work together; the message names the keys."""


@dataclass(frozen=True)
class BatchPlan:
    micro_batch_size: int
    accum: int
    world_size: int
    block_size: int

    @property
    def tokens_per_step(self) -> int:
        return self.micro_batch_size * self.accum * self.world_size * self.block_size


def plan_batch(p: DictConfig, block_size: int, world_size: int) -> BatchPlan:
    """Gradient accumulation from `pretrain.tokens_per_step` (when > 0) or `grad_accum_steps`."""
    if p.micro_batch_size < 1:
        raise PretrainConfigError(f"pretrain.micro_batch_size must be >= 1, got {p.micro_batch_size}")
    if p.tokens_per_step <= 0:
        if p.grad_accum_steps < 1:
            raise PretrainConfigError(f"pretrain.grad_accum_steps must be >= 1, got {p.grad_accum_steps}")
        return BatchPlan(p.micro_batch_size, p.grad_accum_steps, world_size, block_size)
    per_micro = p.micro_batch_size * block_size * world_size
    if p.tokens_per_step % per_micro:
        raise PretrainConfigError(
            f"pretrain.tokens_per_step={p.tokens_per_step} is not a multiple of pretrain.micro_batch_size "
            f"x model.block_size x world size = {p.micro_batch_size} x {block_size} x {world_size} = "
            f"{per_micro}; pick tokens_per_step = k x {per_micro}"
        )
    return BatchPlan(p.micro_batch_size, p.tokens_per_step // per_micro, world_size, block_size)


def model_config(cfg: DictConfig, meta: TokenMeta) -> dict[str, Any]:
    model = OmegaConf.to_container(cfg.model, resolve=True)
    assert isinstance(model, dict)
    if model["vocab_size"] == 0:
        model["vocab_size"] = meta.vocab_size
    elif model["vocab_size"] < meta.vocab_size:
        raise PretrainConfigError(
            f"model.vocab_size={model['vocab_size']} is smaller than the data's vocabulary "
            f"({meta.vocab_size} in {cfg.pretrain.data_dir}/meta.json); set it to 0 to follow the data")
    return model


# Recipe keys that change what is trained; the rest (where files go, how often to log, validate, save
# or sample) may differ between a run and its resumption.
# Recipe keys that do not change the trained weights: a run may resume across changes to these.
# Every other `pretrain` key (including any added later) is part of the run's identity.
NOT_IDENTITY_KEYS = frozenset({
    "name", "data_dir", "tokenizer_dir", "ckpt_dir", "report_dir", "resume", "log_every",
    "val_every", "val_batches", "val_batch_size", "save_every", "sample_tokens",
    "sample_temperature", "sample_top_k", "sample_prompts"})
RUN_FILES = (BEST, LAST, "val_curve.json", "samples.txt", "metrics.json")


def run_identity(cfg: DictConfig, model: dict[str, Any], meta: TokenMeta, world: int) -> dict[str, Any]:
    return {
        "seed": cfg.seed,
        "code_sha256": training_code_sha256(),
        # Each rank draws its own batches, so another process count trains on other data.
        "world_size": world,
        "model": model,
        "pretrain": {k: v for k, v in cfg.pretrain.items() if k not in NOT_IDENTITY_KEYS},
        "data": {"vocab_size": meta.vocab_size, "tokenizer_sha256": meta.tokenizer_sha256,
                 **{f"{name}_tokens": split.n_tokens for name, split in meta.splits.items()}},
    }


def note(run: StageRun, text: str) -> None:
    run.summary.notes.append(text)
    print(text, file=sys.stderr)


def readable_checkpoints(paths: tuple[Path, ...], run: StageRun) -> tuple[dict[Path, dict[str, Any]], int]:
    """The checkpoints among `paths` that can be resumed, and how many were unreadable: those are
    moved aside (so no later run trips over them) and the summary says so."""
    found, damaged = {}, 0
    for path in paths:
        if not path.exists():
            continue
        try:
            found[path] = read_resumable(path)
        except CheckpointError as exc:
            damaged += 1
            note(run, f"{exc}; moved aside to {move_aside(path).name}")
    return found, damaged


def resume_point(cfg: DictConfig, identity: dict[str, Any], ckpt_dir: Path, run: StageRun) -> Path | None:
    """The checkpoint that continues this very run: last.ckpt, or best.ckpt when last.ckpt is
    unreadable. None otherwise, after clearing the old run's files (a checkpoint of another config or
    training code is not resumed: that would silently mix two runs). Unreadable checkpoints are moved aside."""
    if cfg.pretrain.resume:
        # best.ckpt is checked too: chat and export read it, and a resumed run keeps it.
        found, damaged = readable_checkpoints((ckpt_dir / LAST, ckpt_dir / BEST), run)
        if found:
            path, ckpt = next(iter(found.items()))  # last.ckpt first
            step, diff = identity_diff(ckpt, identity)
            if not diff and step >= cfg.pretrain.max_steps and not (ckpt_dir / "metrics.json").exists():
                diff = ["the run is finished but its metrics.json is gone"]
            if not diff:
                fallback = f" ({LAST} was unreadable)" if path.name != LAST else ""
                note(run, f"resumed from {path} at step {step}{fallback}")
                return path
            note(run, f"{path} is from another run ({'; '.join(diff[:5])}); starting over")
        elif damaged:
            note(run, "no readable checkpoint of this run is left; starting over")
    for name in RUN_FILES:
        (ckpt_dir / name).unlink(missing_ok=True)
    return None


def make_strategy(t: DictConfig, model: torch.nn.Module, optimizer: str) -> Strategy | str:
    if t.strategy == "fsdp":
        if optimizer == "muon":
            raise PretrainConfigError("pretrain.optimizer=muon needs whole matrices; it does not work "
                                      "with trainer.strategy=fsdp (use ddp, or adamw)")
        wrap = {type(m) for m in model.modules() if type(m).__name__ in set(t.fsdp_wrap)}
        if not wrap:
            raise PretrainConfigError(f"trainer.fsdp_wrap={list(t.fsdp_wrap)}: no such module class in the model")
        # use_orig_params keeps per-parameter groups (weight decay only on matrices) under sharding.
        return FSDPStrategy(auto_wrap_policy=wrap, sharding_strategy=t.fsdp_sharding,
                            state_dict_type="full", use_orig_params=True)
    if t.strategy == "ddp":
        # Every parameter gets a gradient each step; skipping the unused-parameter search saves time.
        return DDPStrategy(find_unused_parameters=False, gradient_as_bucket_view=True)
    return t.strategy


def load_sampler(cfg: DictConfig, tokenizer_dir: str, run: StageRun) -> SampleSettings | None:
    p = cfg.pretrain
    if p.sample_tokens <= 0 or not p.sample_prompts:
        return None
    try:
        from src.tokenizers import load_tokenizer

        tokenizer = load_tokenizer(resolve(tokenizer_dir))
    except (ImportError, OSError, ValueError) as exc:
        run.summary.notes.append(f"no sample generations: tokenizer {tokenizer_dir!r} unusable ({exc})")
        return None
    return SampleSettings(list(p.sample_prompts), p.sample_tokens, p.sample_temperature,
                          p.sample_top_k, cfg.seed, tokenizer)


def world_size(t: DictConfig) -> int:
    """Processes taking part in each step: devices per node (-1: every visible GPU) x nodes."""
    devices = t.devices
    if devices < 0:
        devices = max(1, torch.cuda.device_count()) if t.accelerator in {"gpu", "cuda", "auto"} else 1
    return devices * t.num_nodes


def set_torch_globals(t: DictConfig) -> None:
    if t.num_threads > 0:
        torch.set_num_threads(t.num_threads)
    torch.set_float32_matmul_precision(t.matmul_precision)


def lightning_trainer(p: DictConfig, t: DictConfig, gpt: torch.nn.Module, batch: BatchPlan,
                      callbacks: list[L.Callback], run: StageRun) -> L.Trainer:
    """The Lightning trainer for recipe `p` (pretrain, or sft which has the same keys) on `t`:
    strategy, precision, accumulation, MLflow logger, checkpoint IO; `callbacks` do the evaluation."""
    logger = None
    if run.run_id is not None:
        import mlflow

        logger = StageRunLogger(mlflow.get_tracking_uri(), run.run_id)
    # null = a bar on a terminal only: in DVC/CI logs it would repeat once per step.
    progress_bar = sys.stderr.isatty() if t.enable_progress_bar is None else t.enable_progress_bar
    trainer = L.Trainer(
        accelerator=t.accelerator, devices=t.devices, num_nodes=t.num_nodes,
        strategy=make_strategy(t, gpt, p.optimizer), precision=t.precision,
        deterministic=t.deterministic, max_steps=p.max_steps, accumulate_grad_batches=batch.accum,
        # Validation runs in the Evaluator at step intervals, not in Lightning's epoch loop.
        limit_val_batches=0, num_sanity_val_steps=0, use_distributed_sampler=False,
        logger=logger or False, log_every_n_steps=p.log_every,
        callbacks=[*callbacks, *([TQDMProgressBar()] if progress_bar else [])],
        enable_checkpointing=False, enable_model_summary=False,
        enable_progress_bar=progress_bar, plugins=[AtomicCheckpointIO()],
        default_root_dir=str(resolve(p.ckpt_dir)),
    )
    if trainer.world_size != batch.world_size:
        raise PretrainConfigError(
            f"Lightning runs {trainer.world_size} processes but trainer.devices x trainer.num_nodes "
            f"gives {batch.world_size}; set them to match the launcher")
    return trainer


def build_trainer(cfg: DictConfig, module: PretrainModule, meta: TokenMeta, run: StageRun
                  ) -> tuple[L.Trainer, TokenDataModule]:
    """The Lightning trainer (strategy, precision, accumulation, callbacks) and the data module."""
    p, t = cfg.pretrain, cfg.trainer
    gpt = module.model
    batch = plan_batch(p, gpt.config_dict()["block_size"], world_size(t))
    try:
        val_batches = even_val_batches(p.val_batches, batch.world_size)
    except ValueError as exc:
        raise PretrainConfigError(str(exc)) from None
    if val_batches < p.val_batches:
        note(run, f"validating on {val_batches} of pretrain.val_batches={p.val_batches} batches: "
                  f"the rest does not split evenly over {batch.world_size} processes")
        run.summary.add("dropped", "val_batches_uneven_over_ranks", p.val_batches - val_batches)
    datamodule = TokenDataModule(meta, batch.block_size, batch.micro_batch_size,
                                 p.val_batch_size or batch.micro_batch_size, val_batches,
                                 batch.accum, cfg.seed, t.num_workers, t.pin_memory)
    if datamodule.val_block_size < batch.block_size:
        run.summary.notes.append(
            f"val split has {meta.split('val').n_tokens} tokens: validating on windows of "
            f"{datamodule.val_block_size} tokens instead of model.block_size={batch.block_size}")
    on_gpu = t.accelerator in {"gpu", "cuda"} or (t.accelerator == "auto" and torch.cuda.is_available())
    peak = peak_flops(torch.device("cuda" if on_gpu else "cpu"), t.precision, t.peak_tflops)
    monitor = TrainingMonitor(p.log_every, batch.tokens_per_step, gpt.flops_per_token(), peak,
                              batch.world_size)
    static = {"params": gpt.num_params(), "params_non_embedding": gpt.num_params(non_embedding=True),
              "flops_per_token": gpt.flops_per_token(), "tokens_per_step": batch.tokens_per_step,
              "world_size": batch.world_size}
    plan = EvalPlan(p.val_every, p.save_every, p.max_steps, resolve(p.ckpt_dir),
                    resolve(p.report_dir) / "metrics.json", meta.split("val").tokens_per_byte, static)
    evaluator = Evaluator(datamodule, plan, monitor, load_sampler(cfg, module.hparams["tokenizer_dir"], run))
    trainer = lightning_trainer(p, t, gpt, batch, [monitor, evaluator], run)
    run.log_metrics({"model.params": gpt.num_params(), "train.tokens_per_step": batch.tokens_per_step,
                     "train.grad_accum_steps": batch.accum})
    return trainer, datamodule


def pretrain(cfg: DictConfig, run: StageRun) -> None:
    # Ranges of single values were checked when the config was loaded (src/config/checks.py).
    p, t = cfg.pretrain, cfg.trainer
    meta = read_meta(resolve(p.data_dir))
    check_token_range(meta)
    set_torch_globals(t)
    L.seed_everything(cfg.seed, workers=True, verbose=False)

    model = model_config(cfg, meta)
    identity = run_identity(cfg, model, meta, world_size(t))
    module = PretrainModule(model, OmegaConf.to_container(p, resolve=True),
                            OmegaConf.to_container(t, resolve=True),
                            p.tokenizer_dir or meta.tokenizer_dir, identity,
                            normalize=OmegaConf.to_container(cfg.normalize, resolve=True))
    gpt = module.model
    print(f"model {cfg.model.name}: {gpt.num_params():,} parameters "
          f"({gpt.num_params(non_embedding=True):,} without embeddings)", file=sys.stderr)
    trainer, datamodule = build_trainer(cfg, module, meta, run)
    ckpt_dir = resolve(p.ckpt_dir)
    resume_from = resume_point(cfg, identity, ckpt_dir, run)
    report_file = resolve(p.report_dir) / "metrics.json"
    report_file.with_name(THROUGHPUT_FILE).unlink(missing_ok=True)
    trainer.fit(module, datamodule=datamodule, ckpt_path=str(resume_from) if resume_from else None)

    restore_finished_report(ckpt_dir, report_file, run)
    report = json.loads(report_file.read_text(encoding="utf-8"))
    run.log_metrics({f"final.{k}": v for k, v in report.items() if isinstance(v, (int, float))})
    run.log_artifact(report_file)
    record_summary(run, meta, report, ckpt_dir)
    run.summary.timings.update(read_throughput(report_file))


def restore_finished_report(ckpt_dir: Path, report_file: Path, run: StageRun) -> None:
    """Rerunning a finished run (e.g. `dvc repro` after DVC deleted metrics.json) trains nothing and
    Lightning calls no end-of-training hooks, so the report comes from the copy kept beside the
    checkpoints, which belongs to the very run that was resumed."""
    saved = ckpt_dir / "metrics.json"
    if report_file.exists() or not saved.exists():
        return
    report_file.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(saved, report_file)
    run.summary.notes.append(f"run was already complete; metrics restored from {saved}")


def record_summary(run: StageRun, meta: TokenMeta, report: dict[str, Any], ckpt_dir: Path) -> None:
    run.summary.add("read", "train_tokens", meta.split("train").n_tokens)
    run.summary.add("read", "val_tokens", meta.split("val").n_tokens)
    run.summary.add("wrote", "optimizer_steps", report["steps"])
    run.summary.add("wrote", "checkpoints", sum(1 for _ in ckpt_dir.glob("*.ckpt")))
    for key in ("val_loss", "val_bpb"):
        if report.get(key) is not None:
            run.summary.add("wrote", key, report[key])
