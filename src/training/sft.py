"""The `sft` stage: fine-tune a GPT on conversations with the loss on the assistant's replies only.

Reads `sft.data_dir/dialogues.parquet` (the build_dialogues stage), the tokenizer `sft.tokenizer_dir`
and, with `sft.init=pretrain`, the weights of `sft.init_checkpoint` (fresh optimizer and schedule;
a checkpoint of another tokenizer, or without the chat tokens, is refused). Writes `sft.ckpt_dir`
(best.ckpt, last.ckpt marked as chat models, val_curve.json, samples.txt) and
`sft.report_dir/metrics.json`. The trainer, strategies, precision, exact resume, MLflow logging and
non-finite guard are pretraining's (src/training/pretrain.py, module.py); what differs is in
sft_data.py (packing) and sft_module.py (loss, evaluation).
"""

from __future__ import annotations

import json
import sys
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
from src.paths import resolve
from src.stage import StageRun
from src.tokenizers.base import CHAT_TOKENS
from src.training.callbacks import THROUGHPUT_FILE, EvalPlan, TrainingMonitor, read_throughput
from src.training.checkpoint import read_checkpoint, training_code_sha256
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
from src.training.sft_data import (
    DIALOGUES_FILE,
    DialogueDataError,
    EncodeReport,
    PackedWindows,
    SFTDataModule,
    encode_conversation,
    pack_windows,
    read_dialogues,
)
from src.training.sft_module import ChatSampleSettings, SFTEvaluator, SFTModule

# sft keys that do not change the trained weights, besides pretraining's: a run may resume across them.
SFT_NOT_IDENTITY_KEYS = NOT_IDENTITY_KEYS | {"init_checkpoint", "loop_max_period", "loop_min_repeats",
                                             "loop_min_span"}
RECIPE_KEYS = tuple(f.name for f in fields(PretrainConfig))


class SFTInitError(InputError, ValueError):
    """A starting checkpoint that does not fit the dialogues' tokenizer; the message names both."""


def load_sft_tokenizer(directory: str) -> Any:
    from src.tokenizers import load_tokenizer

    path = resolve(directory)
    tok = load_tokenizer(path)
    missing = [t for t in CHAT_TOKENS if t not in tok.special_tokens]
    if missing:
        raise SFTInitError(f"tokenizer {path} has no chat token(s) {missing}; retrain it with this "
                           "project's tokenizer stage (it adds them)")
    return tok


def check_compatible(ckpt_path: Path, hparams: dict[str, Any], tokenizer: Any, tokenizer_dir: str) -> None:
    """Refuse a starting checkpoint trained with another tokenizer (by sha256) than the dialogues'
    or whose vocabulary has no room for the chat tokens; the message names both sides. The hash
    check is the one every load does (`loading.verify_tokenizer`), except that a checkpoint
    recording no hash is refused here rather than warned about: fine-tuning it could only be
    checked by its output."""
    ours = f"tokenizer {resolve(tokenizer_dir)} (sha256 {tokenizer.sha256[:12]})"
    theirs = recorded_tokenizer_sha256(hparams)
    if not theirs:
        raise SFTInitError(f"{ckpt_path}: records no tokenizer sha256, so it cannot be checked against "
                           f"{ours}; retrain it with this version of the pretrain stage")
    try:
        verify_tokenizer(theirs, tokenizer_dir, ckpt_path)
    except LoadError as exc:
        raise SFTInitError(f"{exc} (sft.init_checkpoint, sft.tokenizer_dir)") from None
    vocab = int(hparams["model"]["vocab_size"])
    outside = {t: i for t, i in tokenizer.special_tokens.items() if t in CHAT_TOKENS and i >= vocab}
    if outside:
        raise SFTInitError(f"{ckpt_path}: vocabulary of {vocab} lacks the chat token(s) {outside} of {ours}")


def initial_model(cfg: DictConfig, tokenizer: Any, run: StageRun) -> tuple[dict[str, Any], dict | None, str]:
    """(model config, starting weights or None, sha256 of the starting checkpoint or "")."""
    p = cfg.sft
    if p.init == "scratch":
        model = OmegaConf.to_container(cfg.model, resolve=True)
        assert isinstance(model, dict)
        if model["vocab_size"] == 0:
            model["vocab_size"] = tokenizer.vocab_size
        elif model["vocab_size"] < tokenizer.vocab_size:
            raise PretrainConfigError(f"model.vocab_size={model['vocab_size']} is smaller than the tokenizer's "
                                      f"{tokenizer.vocab_size}; set it to 0 to follow the tokenizer")
        return model, None, ""
    path = resolve(p.init_checkpoint)
    if not path.is_file():
        raise SFTInitError(f"{path}: starting checkpoint not found (sft.init_checkpoint); run the pretrain "
                           "stage first, or set sft.init=scratch")
    try:
        ckpt = read_checkpoint(path)
        hparams, raw_state = dict(ckpt["hyper_parameters"]), ckpt["state_dict"]
        model = dict(hparams["model"])
    except InputError:
        raise
    except Exception as exc:  # torch.load raises many types for a damaged file
        raise SFTInitError(f"{path}: not a readable training checkpoint ({type(exc).__name__}: {exc})") from None
    check_compatible(path, hparams, tokenizer, p.tokenizer_dir)
    state = {k.removeprefix("model."): v for k, v in raw_state.items() if k.startswith("model.")}
    weights = build_model(model, state, path).state_dict()  # checks names and shapes
    if dict(OmegaConf.to_container(cfg.model, resolve=True)) != model:
        run.summary.notes.append(f"model architecture from {path.name} ({model.get('name')}), not the model section")
    return model, weights, file_sha256(path)


def encode_split(conversations: list[list[dict]], tokenizer: Any, block_size: int, too_long: str,
                 what: str) -> tuple[PackedWindows, EncodeReport]:
    from tqdm import tqdm

    report = EncodeReport()
    kept = []
    for messages in tqdm(conversations, desc=f"encode {what}", unit="conv", disable=not sys.stderr.isatty()):
        enc = encode_conversation(tokenizer, messages, block_size, too_long, report)
        if enc is not None:
            kept.append(enc)
    return pack_windows(kept, block_size), report


def data_summary(run: StageRun, packs: dict[str, tuple[PackedWindows, EncodeReport]]) -> dict[str, float]:
    stats: dict[str, float] = {}
    for split, (windows, rep) in packs.items():
        run.summary.add("read", f"{split}_conversations", rep.conversations)
        run.summary.add("wrote", f"{split}_windows", len(windows))
        if rep.truncated:
            run.summary.add("dropped", f"{split}_truncated_at_turn", rep.truncated)
        for reason, n in sorted(rep.dropped.items()):
            run.summary.add("dropped", f"{split}_{reason}", n)
        stats.update({f"{split}_conversations": rep.kept, f"{split}_windows": len(windows),
                      f"{split}_padding_share": windows.padding_share,
                      f"{split}_loss_token_share": rep.loss_tokens / rep.tokens if rep.tokens else 0.0,
                      f"{split}_truncated": rep.truncated, f"{split}_dropped": sum(rep.dropped.values())})
    return stats


def sft(cfg: DictConfig, run: StageRun) -> None:
    p, t = cfg.sft, cfg.trainer
    set_torch_globals(t)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    tokenizer = load_sft_tokenizer(p.tokenizer_dir)
    model, weights, init_sha = initial_model(cfg, tokenizer, run)
    block_size = int(model["block_size"])

    dialogues = resolve(p.data_dir) / DIALOGUES_FILE
    splits = read_dialogues(dialogues)
    packs = {split: encode_split(convs, tokenizer, block_size, p.too_long, split) for split, convs in splits.items()}
    if not len(packs["train"][0]):
        raise DialogueDataError(f"{dialogues}: no trainable train conversation "
                                f"(dropped: {dict(packs['train'][1].dropped)})")
    stats = data_summary(run, packs)
    if not len(packs["val"][0]):
        val = packs["val"][1]
        why = (f"{val.conversations} val conversation(s), none fits the context of {block_size} "
               f"(dropped: {dict(val.dropped)})" if val.conversations else "no val conversation")
        run.summary.notes.append(f"{dialogues}: {why}: val_loss and val_bpb are null in metrics.json and no "
                                 "best.ckpt is written (last.ckpt is); build_dialogues.val_min_conversations "
                                 "sets a floor on the val split")
    print(f"sft data: {stats['train_conversations']} train conversations in {stats['train_windows']} windows "
          f"({100 * stats['train_padding_share']:.1f}% padding), {stats['val_conversations']} val", file=sys.stderr)

    world = world_size(t)
    identity = {
        "seed": cfg.seed, "code_sha256": training_code_sha256(), "world_size": world, "model": model,
        "sft": {k: v for k, v in p.items() if k not in SFT_NOT_IDENTITY_KEYS},
        "data": {"dialogues_sha256": file_sha256(dialogues), "tokenizer_sha256": tokenizer.sha256,
                 "init_checkpoint_sha256": init_sha},
    }
    recipe = {k: v for k, v in OmegaConf.to_container(p, resolve=True).items() if k in RECIPE_KEYS}
    module = SFTModule(model, recipe, OmegaConf.to_container(t, resolve=True), p.tokenizer_dir,
                       tokenizer.sha256, identity, world)
    if weights is not None:
        module.model.load_state_dict(weights)
    gpt = module.model
    print(f"sft model {model.get('name')}: {gpt.num_params():,} parameters, init={p.init}", file=sys.stderr)

    batch = plan_batch(p, block_size, world)
    datamodule = SFTDataModule(packs["train"][0], packs["val"][0], batch.micro_batch_size,
                               p.val_batch_size or batch.micro_batch_size, p.val_batches, batch.accum,
                               cfg.seed, t.pin_memory)
    on_gpu = t.accelerator in {"gpu", "cuda"} or (t.accelerator == "auto" and torch.cuda.is_available())
    monitor = TrainingMonitor(p.log_every, batch.tokens_per_step, gpt.flops_per_token(),
                              peak_flops(torch.device("cuda" if on_gpu else "cpu"), t.precision, t.peak_tflops),
                              batch.world_size)
    static = {"params": gpt.num_params(), "tokens_per_step": batch.tokens_per_step,
              "world_size": batch.world_size, **stats}
    ckpt_dir, report_file = resolve(p.ckpt_dir), resolve(p.report_dir) / "metrics.json"
    plan = EvalPlan(p.val_every, p.save_every, p.max_steps, ckpt_dir, report_file, float("nan"), static)
    chat = None
    if p.sample_tokens > 0 and p.sample_prompts:
        chat = ChatSampleSettings(list(p.sample_prompts),
                                  SamplingParams(temperature=p.sample_temperature, top_k=p.sample_top_k,
                                                 max_new_tokens=p.sample_tokens),
                                  cfg.seed, tokenizer,
                                  {"max_period": p.loop_max_period, "min_repeats": p.loop_min_repeats,
                                   "min_span": p.loop_min_span})
    evaluator = SFTEvaluator(datamodule, plan, monitor, None, chat=chat)
    trainer = lightning_trainer(p, t, gpt, batch, [monitor, evaluator], run)
    run.log_metrics({"model.params": gpt.num_params(), "train.tokens_per_step": batch.tokens_per_step,
                     "train.grad_accum_steps": batch.accum})
    # resume_point reads the recipe's `resume` and `max_steps`, which sft has under the same names.
    resume_from = resume_point(SimpleNamespace(pretrain=p), identity, ckpt_dir, run)
    report_file.with_name(THROUGHPUT_FILE).unlink(missing_ok=True)
    trainer.fit(module, datamodule=datamodule, ckpt_path=str(resume_from) if resume_from else None)

    restore_finished_report(ckpt_dir, report_file, run)
    report = json.loads(report_file.read_text(encoding="utf-8"))
    run.log_metrics({f"final.{k}": v for k, v in report.items() if isinstance(v, (int, float))})
    run.log_artifact(report_file)
    run.summary.add("wrote", "optimizer_steps", report["steps"])
    for key in ("val_loss", "val_bpb", "eot_rate", "loop_rate", "mean_reply_tokens"):
        if report.get(key) is not None:
            run.summary.add("wrote", key, report[key])
    run.summary.timings.update(read_throughput(report_file))
