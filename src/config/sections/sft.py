from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from src.config.checks import at_least, field_problems, one_of
from src.config.sections.pretrain import PretrainConfig


@dataclass
class SFTConfig(PretrainConfig):
    """Supervised fine-tuning on conversations: the pretraining recipe's keys (optimizer, schedule,
    batch, cadence; read the same way) plus where the dialogues and the starting weights come from.

    Recipe keys mean what they mean in `pretrain`, except: `data_dir` holds dialogues.parquet (the
    build_dialogues stage's output), `tokenizer_dir` is the tokenizer the dialogues are encoded with,
    `sample_prompts` are user messages answered in chat format, and `val_batches` caps the number of
    validation micro-batches (all held-out conversations when they fit).
    """

    name: str = "sample"
    data_dir: str = "data/dialogues"
    tokenizer_dir: str = "data/tokenizer"
    ckpt_dir: str = "data/models/sft"
    report_dir: str = "data/reports/sft"
    # pretrain: weights of `init_checkpoint` (fresh optimizer and schedule; the architecture is the
    # checkpoint's); scratch: a new model of the `model` section
    init: str = "pretrain"
    init_checkpoint: str = "data/models/pretrain/best.ckpt"
    # a conversation longer than the context: truncate (at the last assistant turn that fits) | drop
    too_long: str = "truncate"
    lr: float = 3.0e-4
    warmup_steps: int = 10
    max_steps: int = 100
    # loop detection on sampled replies (src/eval/detectors.py): an n-gram of up to loop_max_period
    # tokens repeated back to back loop_min_repeats times over at least loop_min_span tokens
    loop_max_period: int = 16
    loop_min_repeats: int = 3
    loop_min_span: int = 12
    sample_tokens: int = 64
    sample_prompts: list[str] = field(default_factory=lambda: ["Привет! Как дела?"])

    @staticmethod
    def problems(p: Mapping[str, Any]) -> list[tuple[str, str]]:
        out = PretrainConfig.problems(p)
        out += field_problems(p, {
            "init": one_of("pretrain", "scratch"), "too_long": one_of("truncate", "drop"),
            "loop_max_period": at_least(1), "loop_min_repeats": at_least(2), "loop_min_span": at_least(2)})
        if p.get("init") == "pretrain" and not p.get("init_checkpoint"):
            out.append(("init_checkpoint", "must name a checkpoint when sft.init=pretrain"))
        return out
