"""The `kto` stage: preference-tune the SFT model with KTO on the kto_pairs stage's unpaired replies.

Reads `kto.data_dir/pairs.parquet`, the tokenizer `kto.tokenizer_dir` and the chat checkpoint
`kto.init_checkpoint` (its weights and architecture, dropout off; fresh optimizer and schedule).
Writes `kto.ckpt_dir` (best.ckpt, last.ckpt, chat models; val_curve.json, samples.txt) and
`kto.report_dir/metrics.json`. Trainer, precision, DDP, exact resume, MLflow logging and the
non-finite guard are pretraining's (pretrain.lightning_trainer, resume_point); the loss is
kto.py, the data kto_data.py, the module kto_module.py, the evaluation and collapse guard
kto_guard.py. FSDP is refused: the guard scores and samples with whole weights on each rank.
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from dataclasses import fields
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from src.config.sections.pretrain import PretrainConfig
from src.errors import InputError
from src.generation.loading import (
    LoadError,
    build_model,
    file_sha256,
    recorded_tokenizer_sha256,
    verify_tokenizer,
)
from src.generation.sampling import SamplingParams
from src.models.gpt import GPT
from src.paths import resolve
from src.stage import StageRun
from src.training.callbacks import THROUGHPUT_FILE, EvalPlan, TrainingMonitor, read_throughput
from src.training.checkpoint import read_checkpoint, training_code_sha256
from src.training.flops import peak_flops
from src.training.kto import balance_warning
from src.training.kto_data import (
    PAIRS_FILE,
    KTODataModule,
    PairsDataError,
    arrange,
    encode_pairs,
    read_pairs,
)
from src.training.kto_guard import GuardSettings, KTOEvaluator, ValidationPairs
from src.training.kto_module import KTOModule, LossSettings, ReferenceLogps
from src.training.pretrain import (
    NOT_IDENTITY_KEYS,
    PretrainConfigError,
    lightning_trainer,
    note,
    plan_batch,
    restore_finished_report,
    resume_point,
    set_torch_globals,
    world_size,
)
from src.training.sft import load_sft_tokenizer
from src.training.sft_module import ChatSampleSettings

RECIPE_KEYS = tuple(f.name for f in fields(PretrainConfig))
# The replies sampled at step 0 are the guard's baseline, so the sampling settings are part of the run.
KTO_NOT_IDENTITY_KEYS = (NOT_IDENTITY_KEYS - {"sample_prompts", "sample_tokens", "sample_temperature",
                                              "sample_top_k"}) | {"init_checkpoint", "score_batch_size"}
KTO_LR_RANGE = (5e-7, 5e-6)


class KTOInitError(InputError, ValueError):
    """A starting checkpoint that is not a chat model of the pairs' tokenizer; the message names both."""


def load_chat_checkpoint(path: Path, tokenizer_dir: str) -> tuple[dict[str, Any], dict[str, torch.Tensor], dict]:
    """(model config with dropout off, weights, hyper_parameters) of the SFT checkpoint at `path`."""
    if not path.is_file():
        raise KTOInitError(f"{path}: starting checkpoint not found (kto.init_checkpoint); run the sft stage first")
    try:
        ckpt = read_checkpoint(path)
        hparams = dict(ckpt["hyper_parameters"])
        model = dict(hparams["model"])
        state = {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    except InputError:
        raise
    except Exception as exc:  # a damaged file raises many types
        raise KTOInitError(f"{path}: not a readable training checkpoint ({type(exc).__name__}: {exc})") from None
    if not hparams.get("chat"):
        raise KTOInitError(f"{path}: not a chat model (no \"chat\": true); KTO starts from an sft checkpoint")
    try:
        verify_tokenizer(recorded_tokenizer_sha256(hparams) or None, tokenizer_dir, path)
        weights = build_model(model, state, path).state_dict()
    except LoadError as exc:
        raise KTOInitError(f"{exc} (kto.init_checkpoint, kto.tokenizer_dir)") from None
    model["dropout"] = 0.0  # the policy's and the reference's log-probs must be comparable
    return model, weights, hparams


def scoring_device(t: DictConfig) -> torch.device:
    on_gpu = t.accelerator in {"gpu", "cuda"} or (t.accelerator == "auto" and torch.cuda.is_available())
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0"))) if on_gpu else torch.device("cpu")


def kto(cfg: DictConfig, run: StageRun) -> None:
    p, t = cfg.kto, cfg.trainer
    if t.strategy == "fsdp":
        raise PretrainConfigError("trainer.strategy=fsdp is not supported by kto: its collapse guard scores and "
                                  "samples with whole weights; use ddp")
    set_torch_globals(t)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    tokenizer = load_sft_tokenizer(p.tokenizer_dir)
    init_path = resolve(p.init_checkpoint)
    model, weights, init_hparams = load_chat_checkpoint(init_path, p.tokenizer_dir)
    block_size = int(model["block_size"])

    pairs_path = resolve(p.data_dir) / PAIRS_FILE
    rows, has_ended = read_pairs(pairs_path)
    if not has_ended:
        run.summary.notes.append(f"{pairs_path}: no completion_ended column; every reply counted as ended")
    encoded = {}
    for split, split_rows in rows.items():
        dropped: Counter = Counter()
        encoded[split] = enc = encode_pairs(tokenizer, split_rows, block_size, dropped)
        run.summary.add("read", f"{split}_pairs", len(split_rows))
        run.summary.add("read", f"{split}_desirable", enc.n_desirable)
        run.summary.add("read", f"{split}_undesirable", enc.n_undesirable)
        for reason, n in sorted(dropped.items()):
            run.summary.add("dropped", f"{split}_{reason}", n)
    train, val = encoded["train"], encoded["val"]
    mismatched = p.loss_type == "kto"
    if len(train) < (2 if mismatched else 1):
        raise PairsDataError(f"{pairs_path}: {len(train)} usable train pair(s); KTO needs at least 2 (each "
                             "prompt is paired with another example's completion for the reference point)")
    warning = balance_warning(train.n_desirable, train.n_undesirable, p.desirable_weight, p.undesirable_weight)
    if warning:
        note(run, f"warning: class balance {warning}")
    if not KTO_LR_RANGE[0] <= p.lr <= KTO_LR_RANGE[1]:
        note(run, f"warning: kto.lr={p.lr:g} is outside KTO's working range {KTO_LR_RANGE[0]:g}..{KTO_LR_RANGE[1]:g}")
    arrangement = arrange(train, p.micro_batch_size, cfg.seed, mismatched)
    if arrangement.same_prompt_pairs:
        run.summary.add("dropped", "z0_pairs_with_the_same_prompt", arrangement.same_prompt_pairs)
    val_size = max(2, p.val_batch_size or p.micro_batch_size)
    val_arrangement = arrange(val, val_size, cfg.seed, mismatched) if len(val) >= 2 else None
    if val_arrangement is None:
        note(run, f"{pairs_path}: fewer than 2 usable val pairs: no val loss, reward accuracy or desirable drift")

    world = world_size(t)
    identity = {
        "seed": cfg.seed, "code_sha256": training_code_sha256(), "world_size": world, "model": model,
        "kto": {k: v for k, v in OmegaConf.to_container(p, resolve=True).items() if k not in KTO_NOT_IDENTITY_KEYS},
        "data": {"pairs_sha256": file_sha256(pairs_path), "tokenizer_sha256": tokenizer.sha256,
                 "init_checkpoint_sha256": file_sha256(init_path)},
    }
    recipe = {k: v for k, v in OmegaConf.to_container(p, resolve=True).items() if k in RECIPE_KEYS}
    loss = LossSettings(p.beta, p.desirable_weight, p.undesirable_weight, p.loss_type, p.clamp_z0)
    module = KTOModule(model, recipe, OmegaConf.to_container(t, resolve=True), p.tokenizer_dir, tokenizer.sha256,
                       loss, identity, world, init_hparams.get("normalize"))
    module.model.load_state_dict(weights)

    # The reference: the SFT weights, scoring on the training device (bf16 autocast when training in bf16).
    reference = GPT.from_config_dict(model)
    reference.load_state_dict(weights)
    device = scoring_device(t)
    reference.to(device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=str(t.precision).startswith("bf16")
                              and device.type == "cuda")
    with autocast:
        val_reference = (ReferenceLogps.compute(reference, val, val_arrangement.partner, p.score_batch_size)
                         if val_arrangement is not None else None)
        train_reference = (ReferenceLogps.compute(reference, train, arrangement.partner, p.score_batch_size)
                           if p.reference == "precompute" else None)
    frozen = None
    if p.reference == "frozen":
        frozen = reference
    else:
        del reference
    module.attach(train, arrangement, train_reference, frozen)
    gpt = module.model
    print(f"kto: {len(train)} train pairs ({train.n_desirable} desirable) in {len(arrangement.batches)} "
          f"micro-batches, {len(val)} val; {gpt.num_params():,} parameters, reference={p.reference}",
          file=sys.stderr)

    batch = plan_batch(p, block_size, world)
    examples_per_step = p.micro_batch_size * batch.accum * world
    # tokens read per step: each example's pair plus (kto) its mismatched pair
    tokens_per_step = int(train.mean_tokens() * examples_per_step * (2 if p.loss_type == "kto" else 1))
    monitor = TrainingMonitor(p.log_every, tokens_per_step, gpt.flops_per_token(),
                              peak_flops(device, t.precision, t.peak_tflops), world)
    stats = {"params": gpt.num_params(), "examples_per_step": examples_per_step, "world_size": world,
             "train_pairs": len(train), "train_desirable": train.n_desirable, "val_pairs": len(val)}
    ckpt_dir, report_file = resolve(p.ckpt_dir), resolve(p.report_dir) / "metrics.json"
    plan = EvalPlan(p.val_every, p.save_every, p.max_steps, ckpt_dir, report_file, float("nan"), stats)
    chat = None
    if p.sample_tokens > 0 and p.sample_prompts:
        chat = ChatSampleSettings(list(p.sample_prompts),
                                  SamplingParams(temperature=p.sample_temperature, top_k=p.sample_top_k,
                                                 max_new_tokens=p.sample_tokens),
                                  cfg.seed, tokenizer)
    guard = GuardSettings(p.guard, p.min_desirable_drift, p.max_loop_rate_rise, p.max_eot_rate_drop,
                          p.max_distinct2_drop, p.max_length_ratio, p.max_canned_rate_rise,
                          p.max_markdown_wall_rate_rise)
    evaluator = KTOEvaluator(plan, monitor, ValidationPairs(val, val_arrangement, val_reference), loss, guard,
                             chat, p.score_batch_size, p.log_every,
                             dict(OmegaConf.to_container(p.detectors, resolve=True)))
    trainer = lightning_trainer(p, t, gpt, batch, [monitor, evaluator], run)
    resume_from = resume_point(SimpleNamespace(pretrain=p), identity, ckpt_dir, run)
    report_file.with_name(THROUGHPUT_FILE).unlink(missing_ok=True)
    trainer.fit(module, datamodule=KTODataModule(arrangement, batch.accum),
                ckpt_path=str(resume_from) if resume_from else None)

    restore_finished_report(ckpt_dir, report_file, run)
    summarize(run, report_file)


def summarize(run: StageRun, report_file: Path) -> None:
    report = json.loads(report_file.read_text(encoding="utf-8"))
    run.log_metrics({f"final.{k}": float(v) for k, v in report.items()
                     if isinstance(v, (int, float)) and v is not None})
    run.log_artifact(report_file)
    run.summary.add("wrote", "optimizer_steps", report["steps"])
    for key in ("val_loss", "reward_accuracy", "desirable_drift", "eot_rate", "loop_rate", "canned_rate",
                "markdown_wall_rate", "distinct2", "mean_reply_tokens", "best_step"):
        if report.get(key) is not None:
            run.summary.add("wrote", key, report[key])
    if report.get("collapsed"):
        run.summary.add("wrote", "stopped_by_collapse_guard_at_step", report["collapse_step"])
        run.summary.notes.append(f"collapse guard stopped training at step {report['collapse_step']}: "
                                 f"{report['collapse_reason']}; best.ckpt is step {report['best_step']}")
        if run.tracking_active:
            import mlflow

            mlflow.set_tag("kto.collapse", f"step {report['collapse_step']}: {report['collapse_reason']}")
    run.summary.timings.update(read_throughput(report_file))
