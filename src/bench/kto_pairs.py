"""Throughput of the kto_pairs stage's sampling: replies/s and new tokens/s per failure preset.

    python -m src.bench.kto_pairs                      # the sample's SFT model and dialogues
    python -m src.bench.kto_pairs --preset dialog48m --device cuda --count 1000

Without --preset it samples from a real chat checkpoint (--checkpoint, default the sft stage's
best.ckpt, else last.ckpt) on the prompts of the kto_pairs recipe's dialogues, exactly as the stage
does (src/data/preferences/undesirables.py). With --preset MODEL it builds that model config with
random weights and random prompt ids (lengths uniform in --prompt-len MIN,MAX); random weights
seldom emit a stop token, so nearly every reply runs to its token limit, an upper bound on the work.
The presets' sampling settings, samples per prompt and batch size come from conf/kto_pairs/RECIPE.yaml
(--recipe; default: dialog48m with --preset, sample without); --count, --batch-size and
--samples-per-prompt override them, --max-new-tokens caps the presets' limits.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import torch
from omegaconf import OmegaConf

from src.bench.generate import build_model
from src.data.preferences.undesirables import PromptRow, sample_preset
from src.generation.engine import Engine
from src.paths import CONF_DIR, resolve

SPECIALS = ("<|endoftext|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>")


class IdTokenizer:
    """A stand-in tokenizer for random-weight models: the first ids are the special tokens and
    decoding writes ids as words (the detectors then see text of the right length)."""

    def __init__(self) -> None:
        self.special_tokens = {t: i for i, t in enumerate(SPECIALS)}

    def decode(self, ids: list[int]) -> str:
        return " ".join(map(str, ids))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def random_prompts(n: int, vocab: int, lengths: tuple[int, int], seed: int = 0) -> list[PromptRow]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        size = int(torch.randint(lengths[0], lengths[1] + 1, (1,), generator=g))
        ids = torch.randint(len(SPECIALS), vocab, (size,), generator=g).tolist()
        out.append(PromptRow(i, [{"role": "user", "content": ""}], ids, "", None, "train"))
    return out


def real_setup(checkpoint: str | None, recipe: Any) -> tuple[Any, Any, list[PromptRow]]:
    from src.config import load_config
    from src.data.preferences.kto_pairs import build_prompts, choose_checkpoint, load_sft_model
    from src.stage import StageRun

    p = OmegaConf.merge(OmegaConf.structured(load_config().kto_pairs), recipe)
    path = resolve(checkpoint) if checkpoint else choose_checkpoint(p)
    loaded = load_sft_model(path)
    cfg = load_config()
    prompts = build_prompts(resolve(p.dialogues), loaded.tokenizer, loaded.model.block_size, p,
                            StageRun("kto_pairs", cfg, tracking_active=False))
    return loaded.model, loaded.tokenizer, prompts


def time_presets(engine: Engine, prompts: list[PromptRow], recipe: Any, samples_per_prompt: int,
                 batch_size: int, count: int | None = None, max_new_tokens: int | None = None,
                 deadline: float | None = None,
                 on_row: Callable[[list[dict[str, Any]]], None] | None = None) -> list[dict[str, Any]]:
    """Sample every preset of `recipe` as the stage does, timed one by one: rows of preset, replies,
    new tokens, seconds. `count` replaces the presets' counts, `max_new_tokens` caps their limits;
    presets left when time.perf_counter() passes `deadline` are not run (the rows say which ran);
    `on_row` gets the rows so far after each preset."""
    rows = []
    for index, (name, preset) in enumerate(recipe.presets.items()):
        if deadline is not None and time.perf_counter() > deadline:
            break
        settings = dict(OmegaConf.to_container(preset))
        if count:
            settings["count"] = count
        if max_new_tokens:
            settings["max_new_tokens"] = min(settings["max_new_tokens"], max_new_tokens)
        _sync(engine.device)
        start = time.perf_counter()
        result = sample_preset(engine, prompts, name, SimpleNamespace(**settings), preset_index=index,
                               samples_per_prompt=samples_per_prompt, batch_size=batch_size, seed=0)
        _sync(engine.device)
        rows.append({"preset": name, "replies": len(result.replies), "tokens": result.new_tokens,
                     "seconds": time.perf_counter() - start})
        if on_row is not None:
            on_row(rows)
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", help="a conf/model preset with random weights (default: a real checkpoint)")
    ap.add_argument("--checkpoint", help="a chat checkpoint (default: the recipe's sft checkpoint)")
    ap.add_argument("--recipe", help="conf/kto_pairs/RECIPE.yaml for the presets and batching")
    ap.add_argument("--count", type=int, help="replies per failure preset")
    ap.add_argument("--batch-size", type=int)
    ap.add_argument("--samples-per-prompt", type=int)
    ap.add_argument("--max-new-tokens", type=int, help="cap every preset's token limit (a quick CPU run)")
    ap.add_argument("--prompt-len", default="32,256", help="MIN,MAX prompt tokens with --preset")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--precision", help="weights for decoding (default: the recipe's)")
    args = ap.parse_args(argv)

    recipe = OmegaConf.load(CONF_DIR / "kto_pairs" / f"{args.recipe or ('dialog48m' if args.preset else 'sample')}.yaml")
    spp = args.samples_per_prompt or int(recipe.samples_per_prompt)
    batch = args.batch_size or int(recipe.batch_size)
    device = torch.device(args.device)
    if args.preset:
        model, tokenizer = build_model(args.preset), IdTokenizer()
        lo, hi = (int(x) for x in args.prompt_len.split(","))
        prompts = random_prompts(512, model.cfg["vocab_size"], (lo, min(hi, model.block_size // 2)))
        what = f"{args.preset} (random weights)"
    else:
        model, tokenizer, prompts = real_setup(args.checkpoint, recipe)
        what = f"{args.checkpoint or 'the sft checkpoint'} ({len(prompts)} prompts)"
    engine = Engine(model, tokenizer, precision=args.precision or str(recipe.precision), device=device)
    print(f"kto_pairs sampling: {what}, {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M params, "
          f"device {device}, precision {engine.precision}, {spp} samples per prompt, {batch} rows per call")
    # Warm-up (CUDA graphs, allocator) on a few rows, not timed.
    warm = SimpleNamespace(temperature=1.0, top_k=0, top_p=1.0, repetition_penalty=1.0, max_new_tokens=8, count=spp)
    sample_preset(engine, prompts, "warmup", warm, preset_index=99, samples_per_prompt=spp, batch_size=batch, seed=0)
    rows = time_presets(engine, prompts, recipe, spp, batch, args.count, args.max_new_tokens)
    print(f"{'preset':<10}{'replies':>9}{'tokens':>10}{'seconds':>10}{'replies/s':>11}{'tokens/s':>11}")
    for r in rows:
        print(f"{r['preset']:<10}{r['replies']:>9}{r['tokens']:>10}{r['seconds']:>10.2f}"
              f"{r['replies'] / r['seconds']:>11.2f}{r['tokens'] / r['seconds']:>11.0f}")
    total_n, total_tokens = sum(r["replies"] for r in rows), sum(r["tokens"] for r in rows)
    total_s = sum(r["seconds"] for r in rows)
    print(f"{'all':<10}{total_n:>9}{total_tokens:>10}{total_s:>10.2f}{total_n / total_s:>11.2f}"
          f"{total_tokens / total_s:>11.0f}")
    print(f"at this rate 3,000 replies take {3000 * total_s / max(total_n, 1):.0f} s")


if __name__ == "__main__":
    main()
