"""Part 7, quality at scale on the time left: classics46m (conf/model/classics46m.yaml) pretrained on
corpus_ru tokenized with BPE 16k (token files made on the CPU by src/bench/gpu_prepare.py and carried
to the device), the classics_bpe16k recipe at micro-batch 64 (its 32,768 tokens per step in one
micro-batch), through the real trainer (src/training/pretrain.py `lightning_trainer`, PretrainModule,
TokenDataModule). Validation loss, bits per byte and nats per character at fixed wall-clock
checkpoints (every 30 s of training, counted from the end of the first step, which compiles), the
last one at the deadline.

The background's 46M model reached 3.36 nats/token at 3.49 chars/token (about 0.96 nats/char) after
13 hours on a laptop GPU. In the dry run: the tiny model on synthetic tokens, a checkpoint a second.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from omegaconf import OmegaConf

from src.bench import train as bench_train
from src.bench.gpu_suite.common import TINY, fresh_compile_state, on_gpu
from src.bench.gpu_suite.config import compose_lite
from src.bench.gpu_suite.runner import PartContext
from src.config import load_config
from src.errors import InputError
from src.stage import StageRun
from src.training.callbacks import EvalPlan, Evaluator, TrainingMonitor, _sync
from src.training.data import TokenDataModule, bits_per_byte, read_meta
from src.training.module import PretrainModule
from src.training.pretrain import lightning_trainer, model_config, plan_batch, set_torch_globals

BACKGROUND_NATS_PER_CHAR = 0.96
# Kept at the end of the part for the last validation and Lightning's teardown.
FINAL_MARGIN_S = 12.0


class ClockEvaluator(Evaluator):
    """Validation every `interval_s` of training wall time, and once more at `deadline` (then stops
    training). Time spent validating is left out of the training clock and of tokens/s."""

    def __init__(self, datamodule: TokenDataModule, plan: EvalPlan, monitor: TrainingMonitor,
                 interval_s: float, deadline: float, tokens_per_step: int, chars_per_token: float | None,
                 on_point: Any) -> None:
        super().__init__(datamodule, plan, monitor, None)
        self.interval_s, self.deadline, self.tokens_per_step = interval_s, deadline, tokens_per_step
        self.chars_per_token, self.on_point = chars_per_token, on_point
        self.train_s = 0.0
        self.first_step_s: float | None = None
        self.next_at = interval_s

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        self._t = time.perf_counter()

    def on_step(self, trainer: L.Trainer, pl_module: L.LightningModule, step: int) -> None:
        if step == 1:  # the clock starts after the first step, which compiles the model
            _sync(pl_module.device)
            self.first_step_s = time.perf_counter() - self._t
            self._t = time.perf_counter()
            return
        now = time.perf_counter()
        final = now >= self.deadline or step >= trainer.max_steps
        if self.train_s + (now - self._t) < self.next_at and not final:
            return
        _sync(pl_module.device)
        now = time.perf_counter()
        self.train_s += now - self._t
        val_loss = self.validation_loss(trainer, pl_module)
        point = {"train_s": round(self.train_s, 1), "step": step, "tokens": step * self.tokens_per_step,
                 "train_loss": float(pl_module.last_loss), "val_loss": val_loss,
                 "val_bpb": bits_per_byte(val_loss, self.plan.tokens_per_byte),
                 "val_nats_per_char": val_loss / self.chars_per_token if self.chars_per_token else None}
        self.curve.append(point)
        self.on_point(self.curve)
        while self.next_at <= self.train_s:
            self.next_at += self.interval_s
        if final or not math.isfinite(val_loss):
            trainer.should_stop = True
        self.monitor.exclude(time.perf_counter() - now)
        self._t = time.perf_counter()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pass  # no reports or checkpoints: the curve is the result


def dry_run_tokens(directory: Path) -> Path:
    """Synthetic tokens plus the tokenize stage's report.json (2 bytes a character, as in Russian)."""
    directory.mkdir(parents=True, exist_ok=True)
    bench_train.write_synthetic(directory, 512, 50_000, seed=0)
    meta = json.loads((directory / "meta.json").read_text(encoding="utf-8"))
    splits = {name: {**s, "n_chars": s["n_bytes"] // 2} for name, s in meta["splits"].items()}
    (directory / "report.json").write_text(json.dumps({"splits": splits}), encoding="utf-8")
    return directory


def chars_per_token(data_dir: Path) -> float | None:
    """The val split's characters per token, from the tokenize stage's report.json beside meta.json."""
    try:
        val = json.loads((data_dir / "report.json").read_text(encoding="utf-8"))["splits"]["val"]
        return val["n_chars"] / val["n_tokens"]
    except (OSError, ValueError, KeyError, ZeroDivisionError):
        return None


def estimated_steps(ctx: PartContext, seconds: float, tokens_per_step: int) -> int:
    """Steps the schedule spans: the pretrain part's dialog48m rate (a model of about this size and
    cost per token) over the time left, a fifth more so the run ends on the clock, not at max_steps;
    1.0M tokens/s when there is no rate."""
    best = ((ctx.previous.get("pretrain") or {}).get("dialog48m") or {}).get("best") or {}
    rate = best.get("tokens_per_s") or 1.0e6
    return max(100, int(1.2 * seconds * rate / tokens_per_step))


def run(ctx: PartContext) -> dict[str, Any]:
    gpu = on_gpu(ctx)
    if ctx.dry_run:
        data_dir = dry_run_tokens(ctx.scratch / "tokens")
    else:
        data_dir = Path(ctx.options.get("quality_data") or "")
        if not (data_dir / "meta.json").is_file():
            raise InputError(f"{data_dir}/meta.json: no token files for the quality part; make them with "
                             "`python -m src.bench.gpu_prepare` and carry .device")
    meta = read_meta(data_dir)
    train_s = ctx.left() - FINAL_MARGIN_S - (60.0 if gpu else 3.0)  # compilation and the first steps
    interval = 30.0 if gpu else 1.0
    micro = 64 if gpu else 4
    overrides = [*(f"~{g}" for g in bench_train.DATA_STAGE_GROUPS), "model=classics46m",
                 f"trainer={'gpu' if gpu else 'cpu'}", "pretrain=classics_bpe16k", f"pretrain.data_dir={data_dir}",
                 f"pretrain.ckpt_dir={ctx.scratch / 'ckpt'}", f"pretrain.report_dir={ctx.scratch / 'report'}",
                 f"pretrain.micro_batch_size={micro}", "pretrain.tokens_per_step=0", "pretrain.grad_accum_steps=1",
                 "trainer.deterministic=false", "trainer.enable_progress_bar=false", "pretrain.log_every=50"]
    if ctx.dry_run:
        overrides += [*TINY, "model.vocab_size=0", "pretrain.val_batches=2", "pretrain.warmup_steps=2",
                      "trainer.num_threads=1"]
    cfg = load_config(compose_lite(overrides))
    block = int(cfg.model.block_size)
    steps = estimated_steps(ctx, train_s, micro * block) if gpu else 10_000
    cfg = load_config(OmegaConf.merge(cfg, {"pretrain": {"max_steps": steps}}))
    p, t = cfg.pretrain, cfg.trainer
    set_torch_globals(t)
    fresh_compile_state()
    L.seed_everything(cfg.seed, verbose=False)
    module = PretrainModule(model_config(cfg, meta), OmegaConf.to_container(p, resolve=True),
                            OmegaConf.to_container(t, resolve=True), str(data_dir / "tokenizer"))
    gpt = module.model
    batch = plan_batch(p, block, world_size=1)
    dm = TokenDataModule(meta, block, batch.micro_batch_size, batch.micro_batch_size, p.val_batches,
                         batch.accum, cfg.seed, t.num_workers, t.pin_memory)
    cpt = chars_per_token(data_dir)
    out: dict[str, Any] = {"model": cfg.model.name, "params": gpt.num_params(), "data": str(data_dir),
                           "train_tokens": meta.split("train").n_tokens, "val_tokens": meta.split("val").n_tokens,
                           "chars_per_token": cpt, "tokens_per_step": batch.tokens_per_step,
                           "schedule_steps": steps, "lr": p.lr, "checkpoint_every_s": interval}
    ctx.record(**out)
    monitor = TrainingMonitor(p.log_every, batch.tokens_per_step, gpt.flops_per_token(), None, 1)
    plan = EvalPlan(10**9, 10**9, steps, ctx.scratch / "ckpt", ctx.scratch / "report" / "metrics.json",
                    meta.split("val").tokens_per_byte, {})
    # The dry run trains for a few seconds: it checks the path, not the model.
    seconds = min(ctx.left() - FINAL_MARGIN_S, 3.5) if ctx.dry_run else ctx.left() - FINAL_MARGIN_S
    clock = ClockEvaluator(dm, plan, monitor, interval, time.perf_counter() + seconds,
                           batch.tokens_per_step, cpt, lambda curve: ctx.record(curve=curve))
    trainer = lightning_trainer(p, t, gpt, batch, [monitor, clock],
                                StageRun("gpu_suite_quality", cfg, tracking_active=False))
    trainer.fit(module, datamodule=dm)
    if not clock.curve:
        raise RuntimeError("training ended before the first checkpoint")
    best = min(clock.curve, key=lambda c: c["val_loss"] if math.isfinite(c["val_loss"]) else math.inf)
    out.update(curve=clock.curve, best=best, steps=trainer.global_step, first_step_s=clock.first_step_s,
               tokens_per_s=monitor.mean_tokens_per_s if monitor.run_seconds else None,
               epochs=trainer.global_step * batch.tokens_per_step / meta.split("train").n_tokens)
    last = clock.curve[-1]
    out["headline"] = (f"val {best['val_loss']:.3f} nats/token, {best['val_bpb']:.3f} bpb"
                       + (f", {best['val_nats_per_char']:.3f} nats/char" if best["val_nats_per_char"] else "")
                       + f" (best, at {best['train_s']:.0f} s; last {last['val_loss']:.3f} at {last['train_s']:.0f} s)")
    if torch.cuda.is_available():
        out["max_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return out
