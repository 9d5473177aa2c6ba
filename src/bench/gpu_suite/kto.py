"""Part 5, kto_pairs generation: 3,000 undesirable replies (conf/kto_pairs/dialog48m.yaml: its three
presets at 1,000 each, 8 samples per prompt, 512 rows per call) from a dialog48m-shaped model with
random weights, through the stage's sampling (src/bench/kto_pairs.py `time_presets`). Random weights
seldom stop early, so nearly every reply runs to its preset's token limit: an upper bound."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import torch
from omegaconf import OmegaConf

from src.bench.generate import build_model
from src.bench.gpu_suite.common import on_gpu
from src.bench.gpu_suite.runner import PartContext
from src.bench.kto_pairs import IdTokenizer, random_prompts, time_presets
from src.data.preferences.undesirables import sample_preset
from src.generation.engine import Engine
from src.paths import CONF_DIR

AIM_S = 120.0
TINY_MODEL = {"n_layer": 2, "n_head": 2, "n_embd": 64, "block_size": 128, "vocab_size": 512}


def run(ctx: PartContext) -> dict[str, Any]:
    gpu = on_gpu(ctx)
    device = torch.device("cuda" if gpu else "cpu")
    recipe = OmegaConf.load(CONF_DIR / "kto_pairs" / "dialog48m.yaml")
    spp, batch = int(recipe.samples_per_prompt), int(recipe.batch_size)
    count, cap = (None, None) if gpu else (8, 6)  # dry run: 8 replies per preset of at most 6 tokens
    if not gpu:
        batch = 16
    model = build_model("dialog48m", None if gpu else TINY_MODEL)
    prompts = random_prompts(512, model.cfg["vocab_size"], (32, min(256, model.block_size // 2)))
    engine = Engine(model, IdTokenizer(), precision=str(recipe.precision), device=device)
    warm = SimpleNamespace(temperature=1.0, top_k=0, top_p=1.0, repetition_penalty=1.0, max_new_tokens=8,
                           count=spp)
    sample_preset(engine, prompts, "warmup", warm, preset_index=99, samples_per_prompt=spp,
                  batch_size=batch, seed=0)
    wanted = sum(int(p.count) for p in recipe.presets.values()) if count is None else count * len(recipe.presets)
    ctx.record(precision=engine.precision, samples_per_prompt=spp, rows_per_call=batch, wanted=wanted)
    # Presets start while a fifth of the part's time is left; the rows say which ran.
    rows = time_presets(engine, prompts, recipe, spp, batch, count, cap,
                        deadline=time.perf_counter() + 0.8 * ctx.left(),
                        on_row=lambda done: ctx.record(presets=done))
    replies, tokens = sum(r["replies"] for r in rows), sum(r["tokens"] for r in rows)
    seconds = sum(r["seconds"] for r in rows)
    for r in rows:
        r["replies_per_s"], r["tokens_per_s"] = r["replies"] / r["seconds"], r["tokens"] / r["seconds"]
    out: dict[str, Any] = {"presets": rows, "replies": replies, "new_tokens": tokens, "seconds_sampling": seconds,
                           "replies_per_s": replies / seconds, "tokens_per_s": tokens / seconds}
    # Presets differ in length: the estimate for all of them holds only once every preset ran.
    out["complete"] = len(rows) == len(recipe.presets)
    out["estimated_s_for_wanted"] = seconds * wanted / replies if out["complete"] else None
    if gpu and out["complete"]:
        out["aim_met"] = seconds <= AIM_S
    out["headline"] = (f"{replies:,} replies in {seconds:.1f} s ({tokens / seconds:,.0f} new tok/s)"
                       + ("" if out["complete"] else f"; only {len(rows)} of {len(recipe.presets)} presets"))
    return out
