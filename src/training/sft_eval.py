"""`python -m src.training.sft_eval CHECKPOINT [HYDRA_OVERRIDES...]`: the SFT evaluation of any model.

What the sft stage measures at every validation, for a checkpoint or export outside training:
loss and bits per byte on the assistant tokens of the val conversations (`sft.data_dir`, encoded,
fitted to the model's context under `sft.too_long` and batched exactly as the stage does, up to
`sft.val_batches`), and replies to `sft.sample_prompts` with their end-of-turn rate, mean length and
loop rate. Run on the pretrained checkpoint it gives the "before SFT" figures of a fine-tuning run
(the prompts are wrapped in the chat template although the model never saw it). The code is the
stage's (sft.encode_split, sft_module.masked_loss_sums, sft_module.chat_replies).

Prints the replies and a summary to stderr, one JSON object of metrics to stdout; `--out FILE`
also writes the metrics and replies to FILE (JSON).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from src.atomic_io import write_json_atomic
from src.config import compose, load_config
from src.errors import InputError
from src.generation.loading import load_for_generation
from src.generation.sampling import SamplingParams
from src.paths import resolve
from src.training.sft_data import DIALOGUES_FILE, ValPacks, read_dialogues
from src.training.sft_module import ChatSampleSettings, chat_replies, loss_and_bpb, masked_loss_sums


def chat_settings(cfg: DictConfig, tokenizer: Any) -> ChatSampleSettings:
    """The stage's reply settings (prompts, sampling, seed, loop thresholds) from the sft section."""
    p = cfg.sft
    return ChatSampleSettings(list(p.sample_prompts),
                              SamplingParams(temperature=p.sample_temperature, top_k=p.sample_top_k,
                                             max_new_tokens=p.sample_tokens),
                              cfg.seed, tokenizer,
                              {"max_period": p.loop_max_period, "min_repeats": p.loop_min_repeats,
                               "min_span": p.loop_min_span})


@torch.no_grad()
def evaluate_checkpoint(path: Path, cfg: DictConfig) -> dict[str, Any]:
    """Val loss/bpb on assistant tokens and reply metrics of the model at `path` (CPU, fp32)."""
    from src.training.sft import encode_split, load_sft_tokenizer

    loaded = load_for_generation(path)
    tokenizer = load_sft_tokenizer(cfg.sft.tokenizer_dir)
    if loaded.tokenizer_sha256 and loaded.tokenizer_sha256 != tokenizer.sha256:
        raise InputError(f"{path} was trained with tokenizer sha256 {loaded.tokenizer_sha256[:12]}, but "
                         f"sft.tokenizer_dir={cfg.sft.tokenizer_dir} holds {tokenizer.sha256[:12]}")
    model = loaded.model.eval()
    block_size = model.config_dict()["block_size"]
    dialogues = resolve(cfg.sft.data_dir) / DIALOGUES_FILE
    windows, report = encode_split(read_dialogues(dialogues)["val"], tokenizer, block_size,
                                   cfg.sft.too_long, "val")
    batch_size = cfg.sft.val_batch_size or cfg.sft.micro_batch_size
    sums = torch.zeros(3, dtype=torch.float64)
    for batch in ValPacks(windows, batch_size, cfg.sft.val_batches):
        sums += masked_loss_sums(model, batch)
    val_loss, val_bpb = loss_and_bpb(*(float(v) for v in sums))
    metrics: dict[str, Any] = {
        "checkpoint": str(path), "val_loss": val_loss, "val_bpb": val_bpb,
        "val_conversations": report.kept, "val_truncated": report.truncated,
        "val_dropped": dict(report.dropped), "val_loss_tokens": int(sums[1]),
    }
    replies = ""
    if cfg.sft.sample_tokens > 0 and cfg.sft.sample_prompts:
        reply_metrics, replies = chat_replies(model, chat_settings(cfg, tokenizer), path.name)
        metrics.update(reply_metrics)
    return {"metrics": metrics, "replies": replies}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m src.training.sft_eval", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path, help="a Lightning checkpoint or an export directory")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. +experiment=sft_ru_classics_cpu")
    parser.add_argument("--out", type=Path, help="also write metrics and replies to this JSON file")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(compose(args.overrides), origin=f"conf/ with overrides {args.overrides}")
        torch.set_num_threads(max(1, int(cfg.trainer.num_threads or torch.get_num_threads())))
        result = evaluate_checkpoint(args.checkpoint, cfg)
    except InputError as exc:
        print(f"error: sft_eval: {exc}", file=sys.stderr)
        return 1
    print(result["replies"], file=sys.stderr)
    print(json.dumps(result["metrics"], ensure_ascii=False))
    if args.out:
        write_json_atomic(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
