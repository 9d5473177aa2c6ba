"""Training throughput through the real Lightning loop: tokens/s and MFU for a model preset.

    python -m src.bench.train --preset dialog48m --synthetic --device cuda --compile
    python -m src.bench.train --preset tiny --data data/tokens --device cpu --steps 20

Same module, data pipeline, optimizer and precision as the `pretrain` stage; no validation or
checkpoints. The first `--warmup` optimizer steps (compilation, allocator warm-up) are not timed.
`--synthetic` cuts windows from random tokens in a temporary memmap, so the data path is the real one.

`--sft` then runs supervised fine-tuning at the same shape (packed conversations with per-conversation
attention, the masked step-normalized loss: src/training/sft_module.py) and prints its tokens/s
against pretraining's and the share of padded positions. Conversations are synthetic (lengths drawn
around a third of the context) or real with `--dialogues FILE` (JSONL lines with a `conversation`
field, as `python -m src.data.dialogues extract` prints, or a dialogues.parquet) and `--tokenizer DIR`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import lightning as L
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from src.config import compose, load_config
from src.paths import CONF_DIR, resolve
from src.training.callbacks import StepCallback
from src.training.data import TokenDataModule, read_meta
from src.training.flops import mfu, peak_flops
from src.training.module import PretrainModule
from src.training.pretrain import model_config, plan_batch, set_torch_globals
from src.training.sft_data import (
    Encoded,
    EncodeReport,
    PackedWindows,
    SFTDataModule,
    encode_conversation,
    pack_windows,
    read_dialogues,
)
from src.training.sft_module import SFTModule

SYNTHETIC_TOKENS = 4_000_000
# Groups a benchmark run does not need (the schema's defaults stand in); `eval` reads tokenize's keys.
DATA_STAGE_GROUPS = ("normalize", "scrape_librus", "clean_librus", "scrape_opensubs", "clean_subs",
                     "tokenizer", "tokenize", "build_dialogues", "eval")


class StepTimer(StepCallback):
    """Wall time from the end of step `warmup` to the end of the last step (device synchronized)."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.start: float | None = None
        self.end: float | None = None

    def on_step(self, trainer: L.Trainer, pl_module: L.LightningModule, step: int) -> None:
        if step == self.warmup or step == trainer.max_steps:
            if pl_module.device.type == "cuda":
                torch.cuda.synchronize(pl_module.device)
            if step == self.warmup:
                self.start = time.perf_counter()
            else:
                self.end = time.perf_counter()


def write_synthetic(directory: Path, vocab_size: int, n_tokens: int, seed: int) -> Path:
    """Uniform random tokens in the tokenize stage's format (meta.json + train.bin + val.bin)."""
    dtype = np.uint16 if vocab_size <= 2**16 else np.uint32
    rng = np.random.default_rng(seed)
    splits = {}
    for name, n in (("train", n_tokens), ("val", n_tokens // 10)):
        rng.integers(0, vocab_size, size=n, dtype=dtype).tofile(directory / f"{name}.bin")
        splits[name] = {"file": f"{name}.bin", "n_tokens": n, "n_bytes": 4 * n, "n_docs": 1}
    meta = {"vocab_size": vocab_size, "dtype": np.dtype(dtype).name, "eot_id": 0, "splits": splits,
            "tokenizer": {"kind": "synthetic", "dir": "", "sha256": ""}}
    (directory / "meta.json").write_text(json.dumps(meta))
    return directory


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="dialog48m", help="conf/model/<preset>.yaml")
    source = ap.add_mutually_exclusive_group()
    source.add_argument("--synthetic", action="store_true", help="random tokens (the default)")
    source.add_argument("--data", help="a tokenize output directory (meta.json, train.bin)")
    ap.add_argument("--steps", type=int, default=20, help="timed optimizer steps")
    ap.add_argument("--warmup", type=int, default=5, help="untimed optimizer steps first")
    ap.add_argument("--device", choices=["cpu", "cuda"],
                    default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model")
    ap.add_argument("--micro-batch", type=int, default=0, help="0: the pretrain preset's")
    ap.add_argument("--accum", type=int, default=1, help="micro-batches per optimizer step")
    ap.add_argument("--precision", default="", help="default: bf16-mixed on cuda, 32-true on cpu")
    ap.add_argument("--optimizer", choices=["adamw", "muon"], default="adamw")
    ap.add_argument("--vocab", type=int, default=32000,
                    help="synthetic vocabulary when the preset takes it from the data")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch default)")
    ap.add_argument("--sft", action="store_true", help="also time SFT at the same shape and compare")
    ap.add_argument("--dialogues", help="--sft on real conversations: JSONL or dialogues.parquet")
    ap.add_argument("--tokenizer", default="data/tokenizer", help="--dialogues are encoded with it")
    ap.add_argument("overrides", nargs="*", help="extra Hydra overrides, e.g. model.pos_emb=rope")
    return ap.parse_args(argv)


def bench_overrides(args: argparse.Namespace) -> list[str]:
    """The Hydra overrides of a benchmark run: `--preset` on its recipe, no data stages, no warmup."""
    trainer = "gpu" if args.device == "cuda" else "cpu"
    pretrain = args.preset if (CONF_DIR / "pretrain" / f"{args.preset}.yaml").exists() else "sample"
    overrides = [*(f"~{g}" for g in DATA_STAGE_GROUPS), f"model={args.preset}", f"trainer={trainer}",
                 f"pretrain={pretrain}", f"trainer.compile={str(args.compile).lower()}",
                 f"pretrain.optimizer={args.optimizer}", f"trainer.num_threads={args.threads}",
                 "pretrain.tokens_per_step=0", f"pretrain.grad_accum_steps={args.accum}",
                 f"pretrain.max_steps={args.warmup + args.steps}", "pretrain.warmup_steps=0",
                 "trainer.deterministic=false", "trainer.enable_progress_bar=false"]
    if args.micro_batch:
        overrides.append(f"pretrain.micro_batch_size={args.micro_batch}")
    if args.precision:
        overrides.append(f"trainer.precision={args.precision}")
    return overrides + list(args.overrides)


def bench_config(args: argparse.Namespace, composer: Callable[[list[str]], DictConfig] = compose
                 ) -> DictConfig:
    """The typed config of a benchmark run; `composer` is Hydra's compose, or one that needs no
    Hydra (src/bench/gpu_suite/config.py: the GPU device has no hydra-core)."""
    return load_config(composer(bench_overrides(args)))


def sft_windows(args: argparse.Namespace, vocab: int, block_size: int, seed: int) -> PackedWindows:
    """Packed conversations for `--sft`: real ones from `--dialogues`, or synthetic ones."""
    if args.dialogues:
        from src.tokenizers import load_tokenizer

        tokenizer = load_tokenizer(resolve(args.tokenizer))
        path = resolve(args.dialogues)
        if path.suffix == ".parquet":
            conversations = read_dialogues(path)["train"]
        else:
            conversations = [json.loads(line)["conversation"]
                             for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        report = EncodeReport()
        items = [e for c in conversations
                 if (e := encode_conversation(tokenizer, c, block_size, "truncate", report)) is not None]
        print(f"sft: {report.kept} of {report.conversations} conversations ({report.truncated} truncated, "
              f"dropped {dict(report.dropped)}), {100 * report.loss_tokens / max(1, report.tokens):.1f}% "
              "of tokens under loss", file=sys.stderr)
    else:
        rng = np.random.default_rng(seed)
        lengths = np.clip(rng.lognormal(np.log(block_size / 3), 0.8, size=4000), 8, block_size + 1)
        items = []
        for n in lengths.astype(int):
            loss = np.zeros(n, dtype=bool)
            loss[n // 3:] = True  # the reply: about two thirds of the conversation, as in real chats
            items.append(Encoded(rng.integers(0, vocab, size=n), loss, int(n)))
    return pack_windows(items, block_size)


def run(args: argparse.Namespace, data_dir: Path, windows: PackedWindows | None = None,
        cfg: DictConfig | None = None) -> dict[str, float | str]:
    """Time pretraining on `data_dir`, or SFT on `windows` at the same model and batch shape
    (`cfg`: a config built already, by default `bench_config(args)`)."""
    cfg = cfg if cfg is not None else bench_config(args)
    p, t = cfg.pretrain, cfg.trainer
    set_torch_globals(t)
    L.seed_everything(cfg.seed, verbose=False)
    meta = read_meta(data_dir)
    recipe, trainer_cfg = OmegaConf.to_container(p, resolve=True), OmegaConf.to_container(t, resolve=True)
    if windows is None:
        module = PretrainModule(model_config(cfg, meta), recipe, trainer_cfg, "")
    else:
        module = SFTModule(model_config(cfg, meta), recipe, trainer_cfg, "", "")
    gpt = module.model
    batch = plan_batch(p, gpt.config_dict()["block_size"], world_size=1)
    if windows is None:
        dm = TokenDataModule(meta, batch.block_size, batch.micro_batch_size, batch.micro_batch_size, 1,
                             batch.accum, cfg.seed, t.num_workers, t.pin_memory)
    else:
        dm = SFTDataModule(windows, windows, batch.micro_batch_size, batch.micro_batch_size, 1,
                           batch.accum, cfg.seed, t.pin_memory)
    timer = StepTimer(args.warmup)
    trainer = L.Trainer(accelerator="gpu" if args.device == "cuda" else "cpu", devices=1,
                        precision=t.precision, max_steps=args.warmup + args.steps,
                        accumulate_grad_batches=batch.accum, limit_val_batches=0,
                        num_sanity_val_steps=0, logger=False, enable_checkpointing=False,
                        enable_model_summary=False, enable_progress_bar=False, callbacks=[timer])
    trainer.fit(module, datamodule=dm)
    seconds = timer.end - timer.start
    tokens_per_s = args.steps * batch.tokens_per_step / seconds
    device = torch.device(args.device)
    peak = peak_flops(device, t.precision, t.peak_tflops)
    result: dict[str, float | str] = {
        "preset": args.preset, "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "precision": t.precision, "compile": str(t.compile), "params": gpt.num_params(),
        "flops_per_token": gpt.flops_per_token(), "micro_batch": batch.micro_batch_size,
        "tokens_per_step": batch.tokens_per_step, "ms_per_step": 1000 * seconds / args.steps,
        "tokens_per_s": tokens_per_s, "mode": "pretrain" if windows is None else "sft",
    }
    utilization = mfu(gpt.flops_per_token(), tokens_per_s, peak, 1)
    if utilization is not None:
        result["mfu"] = utilization
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but no CUDA device is visible", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        if args.data:
            data_dir = resolve(args.data)
        else:
            cfg = bench_config(args)
            vocab = cfg.model.vocab_size or args.vocab
            data_dir = write_synthetic(Path(tmp), vocab, SYNTHETIC_TOKENS, cfg.seed)
        result = run(args, data_dir)
        if args.sft:
            cfg = bench_config(args)
            meta = read_meta(data_dir)
            windows = sft_windows(args, meta.vocab_size, model_config(cfg, meta)["block_size"], cfg.seed)
            sft = run(args, data_dir, windows)
            sft.update(padding_share=windows.padding_share, sft_vs_pretrain=sft["tokens_per_s"] / result["tokens_per_s"])
    source = args.data or "synthetic"
    print(f"{result['preset']} on {result['device']} ({result['precision']}, compile "
          f"{result['compile']}, {source}): {result['params']:,} params, "
          f"{result['tokens_per_step']:,} tokens/step, {result['ms_per_step']:.1f} ms/step, "
          f"{result['tokens_per_s']:,.0f} tokens/s"
          + (f", MFU {result['mfu']:.3f}" if "mfu" in result else ", MFU n/a (no peak for this device)"))
    print(json.dumps(result))
    if args.sft:
        print(f"sft at the same shape: {sft['ms_per_step']:.1f} ms/step, {sft['tokens_per_s']:,.0f} tokens/s "
              f"({100 * sft['sft_vs_pretrain']:.1f}% of pretraining), {100 * sft['padding_share']:.1f}% of "
              f"positions padded ({args.dialogues or 'synthetic conversations'})")
        print(json.dumps(sft))
    return 0


if __name__ == "__main__":
    sys.exit(main())
