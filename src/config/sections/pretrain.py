from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from src.config.checks import above, at_least, field_problems, one_of, within


@dataclass
class PretrainConfig:
    """The pretraining recipe: data, batch, optimizer, schedule, evaluation, checkpoints."""

    name: str = "sample"
    # tokenize stage output: train.bin, val.bin, meta.json
    data_dir: str = "data/tokens"
    # "" = the tokenizer directory recorded in the tokens' meta.json (for sample generations)
    tokenizer_dir: str = ""
    ckpt_dir: str = "data/models/pretrain"
    report_dir: str = "data/reports/pretrain"
    # continue from ckpt_dir/last.ckpt when it exists (same command after a kill resumes)
    resume: bool = True

    # --- batch: tokens per optimizer step = micro_batch_size * block_size * accum * world size
    max_steps: int = 200
    micro_batch_size: int = 8
    grad_accum_steps: int = 1
    # > 0: derive grad_accum_steps from it (must divide exactly); 0: use grad_accum_steps
    tokens_per_step: int = 0

    # --- optimizer: adamw | muon (Muon on hidden matrices, AdamW on embeddings, norms, head)
    optimizer: str = "adamw"
    lr: float = 1.0e-3
    weight_decay: float = 0.1
    # nanoGPT also decays the token/position tables; modern recipes decay Linear matrices only.
    decay_embeddings: bool = False
    beta1: float = 0.9
    beta2: float = 0.99
    eps: float = 1.0e-8
    # 0 = no clipping (the grad norm is still logged)
    grad_clip: float = 1.0
    muon_lr: float = 0.02
    muon_momentum: float = 0.95
    muon_ns_steps: int = 5

    # --- schedule: cosine (warmup then cosine to min_lr) | wsd (warmup, stable, linear decay)
    schedule: str = "cosine"
    warmup_steps: int = 20
    # cosine: step where the decay ends (0 = max_steps); wsd: unused
    decay_steps: int = 0
    # wsd: fraction of max_steps spent in the final decay
    wsd_decay_frac: float = 0.2
    # floor of the schedule as a fraction of the peak learning rate
    min_lr_ratio: float = 0.1

    # --- evaluation and logging (in optimizer steps)
    log_every: int = 10
    val_every: int = 50
    val_batches: int = 8
    # 0 = micro_batch_size
    val_batch_size: int = 0
    save_every: int = 50
    # sample generations from fixed prompts at every validation; 0 tokens = off
    sample_tokens: int = 64
    sample_temperature: float = 0.8
    sample_top_k: int = 40
    sample_prompts: list[str] = field(default_factory=lambda: ["Однажды"])

    @staticmethod
    def problems(p: Mapping[str, Any]) -> list[tuple[str, str]]:
        out = field_problems(p, {
            "max_steps": at_least(1), "micro_batch_size": at_least(1), "grad_accum_steps": at_least(1),
            "tokens_per_step": at_least(0), "optimizer": one_of("adamw", "muon"), "lr": above(0),
            "weight_decay": at_least(0), "beta1": within(0, 1, high_open=True),
            "beta2": within(0, 1, high_open=True), "eps": above(0), "grad_clip": at_least(0),
            "muon_lr": above(0), "muon_momentum": within(0, 1, high_open=True),
            "muon_ns_steps": at_least(1), "schedule": one_of("cosine", "wsd"),
            "warmup_steps": at_least(0), "decay_steps": at_least(0), "wsd_decay_frac": within(0, 1),
            "min_lr_ratio": within(0, 1), "log_every": at_least(1), "val_every": at_least(1),
            "val_batches": at_least(1), "val_batch_size": at_least(0), "save_every": at_least(1),
            "sample_tokens": at_least(0), "sample_temperature": at_least(0),
            "sample_top_k": at_least(0)})
        if not out and p["warmup_steps"] >= p["max_steps"]:
            out.append(("warmup_steps", f"must be < pretrain.max_steps={p['max_steps']}, "
                                        f"got {p['warmup_steps']}"))
        return out
