"""The `reranker` stage: train the next-line cross-encoder on the reranker_data samples.

Reads `reranker.data_dir/samples.parquet` and, for the `own` backbone, the project tokenizer
`reranker.tokenizer_dir` (for `hf`, the local encoder directory `reranker.hf_dir`). Writes
`reranker.ckpt_dir` (best.ckpt, last.ckpt, val_curve.json, metrics.json), the loadable export
`reranker.export_dir` (src/generation/reranker.py: `load_reranker`; for hf also a
sentence-transformers CrossEncoder directory) from the best checkpoint, and
`reranker.report_dir/metrics.json` (val loss, accuracy, ROC AUC, average precision, AUC per negative
kind, MRR@k, hit@1). The trainer, strategies, precision, resume, MLflow logging and the non-finite
guard are pretraining's.
"""

from __future__ import annotations

import json
import sys
from dataclasses import fields
from types import SimpleNamespace
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from src.config.sections.pretrain import PretrainConfig
from src.data.readers import read_parquet
from src.errors import InputError
from src.generation.loading import file_sha256
from src.generation.reranker import export_hf, export_own
from src.models.cross_encoder import HFCrossEncoder, OwnCrossEncoder
from src.paths import resolve
from src.stage import StageRun
from src.training.callbacks import THROUGHPUT_FILE, EvalPlan, TrainingMonitor, read_throughput
from src.training.checkpoint import BEST, LAST, read_checkpoint, training_code_sha256
from src.training.flops import peak_flops
from src.training.pretrain import (
    NOT_IDENTITY_KEYS,
    PretrainConfigError,
    lightning_trainer,
    plan_batch,
    restore_finished_report,
    resume_point,
    set_torch_globals,
    world_size,
)
from src.training.reranker_init import copy_weights, encoder_config, read_init_checkpoint
from src.training.reranker_metrics import ranking_groups
from src.training.reranker_module import (
    PairDataModule,
    PairSplit,
    RerankerEvaluator,
    RerankerModule,
)

SAMPLES_FILE = "samples.parquet"
SAMPLE_COLUMNS = ("context", "candidate", "label", "kind", "file_id", "language", "split")
RECIPE_KEYS = tuple(f.name for f in fields(PretrainConfig))
RERANKER_NOT_IDENTITY_KEYS = NOT_IDENTITY_KEYS | {"export_dir", "rank_k", "rank_max_groups"}


class RerankerDataError(InputError, ValueError):
    """A samples file that cannot be trained on; the message names the file."""


def read_samples(path: Any) -> tuple[PairSplit, PairSplit, dict[str, list]]:
    """Train and val pairs, and the val columns the ranking groups need."""
    table = read_parquet(path, list(SAMPLE_COLUMNS), hint="rebuild it with the reranker_data stage")
    cols = {c: table.column(c).to_pylist() for c in SAMPLE_COLUMNS}
    bad = sorted({s for s in cols["split"] if s not in ("train", "val")})
    if bad:
        raise RerankerDataError(f"{path}: unknown split value(s) {bad}; expected train or val")
    splits = {}
    for name in ("train", "val"):
        rows = [i for i, s in enumerate(cols["split"]) if s == name]
        splits[name] = {c: [cols[c][i] for i in rows] for c in SAMPLE_COLUMNS}
    train = splits["train"]
    if not train["label"] or len(set(train["label"])) < 2:
        raise RerankerDataError(f"{path}: the train split needs positive and negative samples "
                                f"(labels found: {sorted(set(train['label']))})")
    make = lambda d: PairSplit(d["context"], d["candidate"], [int(x) for x in d["label"]], d["kind"])  # noqa: E731
    return make(train), make(splits["val"]), splits["val"]


def build_cross_encoder(p: DictConfig, run: StageRun | None = None) -> tuple[torch.nn.Module, str, int]:
    """(model, tokenizer sha256 or "", the longest pair in tokens); `own` starts from
    `reranker.init_from` when set (src/training/reranker_init.py)."""
    if p.backbone == "hf":
        source = resolve(p.hf_dir)
        if not (source / "config.json").is_file():
            raise InputError(f"{source}: not a Hugging Face model directory (no config.json; reranker.hf_dir)")
        try:
            model = HFCrossEncoder(source, p.hf_max_length)
            model.train()  # from_pretrained leaves the model in eval mode: dropout off
        except (OSError, ValueError) as exc:
            raise InputError(f"{source}: cannot load it as an encoder ({exc}) (reranker.hf_dir)") from None
        return model, "", model.max_length
    from src.tokenizers import load_tokenizer

    tokenizer = load_tokenizer(resolve(p.tokenizer_dir))
    config = OmegaConf.to_container(p.model, resolve=True)
    assert isinstance(config, dict)
    if config["vocab_size"] == 0:
        config["vocab_size"] = tokenizer.vocab_size
    elif config["vocab_size"] < tokenizer.vocab_size:
        raise PretrainConfigError(f"reranker.model.vocab_size={config['vocab_size']} is smaller than the "
                                  f"tokenizer's {tokenizer.vocab_size}; set it to 0 to follow the tokenizer")
    init = None
    if p.init_from:
        path = resolve(p.init_from)
        checkpoint_model, state = read_init_checkpoint(path, p.tokenizer_dir)
        config = encoder_config(checkpoint_model, config, tokenizer.vocab_size, path)
        init = (path, state)
    model = OwnCrossEncoder(config, p.pooling)
    model.attach_tokenizer(tokenizer)
    if init is not None:
        report = copy_weights(model.encoder, init[1])
        if run is not None:
            run.summary.notes.extend(report.notes(init[0]))
            run.summary.add("read", "init_tensors_copied", len(report.copied))
    return model, tokenizer.sha256, int(config["block_size"])


def positive_weight(p: DictConfig, labels: list[int], run: StageRun) -> float:
    if p.pos_weight != -1:
        return float(p.pos_weight)
    n_pos = sum(labels)
    ratio = (len(labels) - n_pos) / max(1, n_pos)
    weight = ratio if abs(ratio - 1) > 0.1 else 1.0
    run.summary.notes.append(f"train: {n_pos} positive, {len(labels) - n_pos} negative pairs; pos_weight {weight:.3f}")
    return weight


def export_best(model: Any, ckpt_dir: Any, export_dir: Any, extra: dict[str, Any], run: StageRun) -> str:
    """Load the best checkpoint's weights (the last one when no validation ran) and export them."""
    path = ckpt_dir / BEST if (ckpt_dir / BEST).is_file() else ckpt_dir / LAST
    state = read_checkpoint(path)["state_dict"]
    model.load_state_dict({k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")})
    model.eval()
    if isinstance(model, HFCrossEncoder):
        export_hf(model, export_dir, extra)
    else:
        export_own(model, model.tokenizer, export_dir, extra)
    run.summary.add("wrote", f"export_from_{path.stem}", 1)
    return path.name


def reranker(cfg: DictConfig, run: StageRun) -> None:
    p, t = cfg.reranker, cfg.trainer
    set_torch_globals(t)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    samples = resolve(p.data_dir) / SAMPLES_FILE
    train, val, val_cols = read_samples(samples)
    model, tokenizer_sha, max_tokens = build_cross_encoder(p, run)
    pos_weight = positive_weight(p, train.labels, run)
    world = world_size(t)
    identity = {
        "seed": cfg.seed, "code_sha256": training_code_sha256(), "world_size": world,
        "reranker": {k: v for k, v in OmegaConf.to_container(p, resolve=True).items()
                     if k not in RERANKER_NOT_IDENTITY_KEYS},
        "data": {"samples_sha256": file_sha256(samples), "tokenizer_sha256": tokenizer_sha,
                 "init_sha256": file_sha256(resolve(p.init_from)) if p.init_from and p.backbone == "own" else ""},
    }
    recipe = {k: v for k, v in OmegaConf.to_container(p, resolve=True).items() if k in RECIPE_KEYS}
    module = RerankerModule(model, recipe, OmegaConf.to_container(t, resolve=True), p.tokenizer_dir,
                            pos_weight, identity)
    print(f"reranker ({p.backbone}): {model.num_params():,} parameters; {len(train)} train, "
          f"{len(val)} val pairs", file=sys.stderr)

    batch = plan_batch(p, max_tokens, world)
    val_batch = p.val_batch_size or batch.micro_batch_size
    datamodule = PairDataModule(train, val, model, batch.micro_batch_size, val_batch, p.val_batches, cfg.seed)
    groups = ranking_groups(val_cols["context"], val_cols["candidate"], val.labels, val_cols["file_id"],
                            val_cols["language"], p.rank_k, cfg.seed, kinds=val.kinds)
    if p.rank_max_groups and len(groups) > p.rank_max_groups:
        run.summary.notes.append(f"ranking metrics on {p.rank_max_groups} of {len(groups)} val positives "
                                 "(reranker.rank_max_groups)")
        groups = groups[:p.rank_max_groups]
    on_gpu = t.accelerator in {"gpu", "cuda"} or (t.accelerator == "auto" and torch.cuda.is_available())
    monitor = TrainingMonitor(p.log_every, batch.tokens_per_step, model.flops_per_token(),
                              peak_flops(torch.device("cuda" if on_gpu else "cpu"), t.precision, t.peak_tflops),
                              batch.world_size)
    static = {"params": model.num_params(), "train_pairs": len(train), "val_pairs": len(val),
              "train_positive_share": sum(train.labels) / len(train), "pos_weight": pos_weight,
              "rank_groups": len(groups), "world_size": batch.world_size}
    ckpt_dir, report_file = resolve(p.ckpt_dir), resolve(p.report_dir) / "metrics.json"
    plan = EvalPlan(p.val_every, p.save_every, p.max_steps, ckpt_dir, report_file, float("nan"), static)
    evaluator = RerankerEvaluator(datamodule, plan, monitor, val=val, groups=groups, rank_k=p.rank_k)
    trainer = lightning_trainer(p, t, model, batch, [monitor, evaluator], run)
    run.log_metrics({"model.params": model.num_params(), "train.pairs": len(train), "val.pairs": len(val)})
    resume_from = resume_point(SimpleNamespace(pretrain=p), identity, ckpt_dir, run)
    report_file.with_name(THROUGHPUT_FILE).unlink(missing_ok=True)
    if not val.labels:
        run.summary.notes.append(f"{samples}: no val samples; metrics are null and the last weights are exported")
    trainer.fit(module, datamodule=datamodule, ckpt_path=str(resume_from) if resume_from else None)

    restore_finished_report(ckpt_dir, report_file, run)
    report = json.loads(report_file.read_text(encoding="utf-8"))
    source = export_best(model, ckpt_dir, resolve(p.export_dir),
                         {"trained_steps": report["steps"], "best_step": report.get("best_step")}, run)
    run.log_metrics({f"final.{k}": v for k, v in report.items() if isinstance(v, (int, float))})
    run.log_artifact(report_file)
    run.summary.add("read", "train_pairs", len(train))
    run.summary.add("read", "val_pairs", len(val))
    run.summary.add("wrote", "optimizer_steps", report["steps"])
    for key in ("val_loss", "accuracy", "roc_auc", "average_precision", "auc_swap", f"mrr_at_{p.rank_k}", "hit_at_1"):
        if report.get(key) is not None:
            run.summary.add("wrote", key, report[key])
    run.summary.notes.append(f"exported {source} to {resolve(p.export_dir)}")
    run.summary.timings.update(read_throughput(report_file))
