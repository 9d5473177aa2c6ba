"""`kto_pairs`: unpaired preference data for KTO from the SFT model's own failure modes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from src.config.checks import above, at_least, field_problems, one_of, within
from src.config.sections.detectors import DetectorConfig

PRECISIONS = ("auto", "fp32", "fp16", "bf16", "int8", "int4")
DEVICES = ("auto", "cpu", "cuda")


@dataclass
class FailurePreset:
    """Sampling settings that provoke one failure mode, and how many replies to draw with them."""

    temperature: float = 0.7
    # 1.0 = off
    repetition_penalty: float = 1.0
    # capped by the model's context (what the prompt leaves of it)
    max_new_tokens: int = 256
    top_k: int = 0
    top_p: float = 1.0
    # replies drawn (each is kept as undesirable only when a detector flags it)
    count: int = 8


def default_presets() -> dict[str, FailurePreset]:
    # The background's three presets: token-level loops, short canned templates, markdown walls.
    return {
        "loops": FailurePreset(temperature=1.2, repetition_penalty=1.0, max_new_tokens=400),
        "canned": FailurePreset(temperature=0.4, repetition_penalty=1.15, max_new_tokens=80),
        "tutorial": FailurePreset(temperature=0.7, repetition_penalty=1.1, max_new_tokens=500),
    }


@dataclass
class KtoPairsConfig:
    """Prompts come from the SFT training split (each conversation up to its last assistant turn).
    Desirable: the dataset's own reply; undesirable: the SFT model's samples under `presets` that a
    detector flags, and optionally dataset replies with overall_score below `low_score_below`."""

    name: str = "sample"
    dialogues: str = "data/dialogues/dialogues.parquet"
    # the SFT model; `fallback_checkpoint` when it is missing (best.ckpt needs a val conversation)
    checkpoint: str = "data/models/sft/best.ckpt"
    fallback_checkpoint: str = "data/models/sft/last.ckpt"
    out_dir: str = "data/kto_pairs"
    report_dir: str = "data/reports/kto_pairs"
    # held-out share of prompts (by a hash of the prompt): KTO validation and its collapse guard
    val_share: float = 0.1
    # null = every prompt; else a seeded subset of this many prompts (before the val split is read),
    # the rest counted as dropped: the desirables are one per prompt, so this keeps their number
    # near the undesirables' (KTO wants (w_d * n_d) / (w_u * n_u) in [1, 4/3])
    max_prompts: int | None = None
    # share of the context kept for the reply when a long conversation's oldest turns are dropped
    reply_share: float = 0.5
    presets: dict[str, FailurePreset] = field(default_factory=default_presets)
    # replies drawn per prompt from one prefill
    samples_per_prompt: int = 4
    # rows (prompts x samples) per generate call; halved on a CUDA out-of-memory error
    batch_size: int = 64
    # null = off; else a dataset reply with overall_score below it is undesirable ("low_score")
    low_score_below: float | None = None
    # weights for sampling (src/generation/precision.py)
    precision: str = "fp32"
    device: str = "auto"
    # examples per preset in the report
    report_examples: int = 3
    detectors: DetectorConfig = field(default_factory=DetectorConfig)

    @staticmethod
    def problems(p: Mapping[str, Any]) -> list[tuple[str, str]]:
        out = field_problems(p, {
            "val_share": within(0, 1, high_open=True), "reply_share": within(0, 1, high_open=True),
            "samples_per_prompt": at_least(1), "max_prompts": at_least(1), "batch_size": at_least(1), "report_examples": at_least(0),
            "precision": one_of(*PRECISIONS), "device": one_of(*DEVICES)})
        if p.get("reply_share") == 0:
            out.append(("reply_share", "must be > 0, got 0"))
        for name, preset in (p.get("presets") or {}).items():
            if name in ("dataset", "low_score"):
                out.append((f"presets.{name}", "is a reserved preset name (dataset rows use it)"))
            out += [(f"presets.{name}.{k}", m) for k, m in field_problems(preset, {
                "temperature": at_least(0), "repetition_penalty": above(0), "max_new_tokens": at_least(1),
                "top_k": at_least(0), "top_p": within(0, 1), "count": at_least(0)})]
            if preset.get("top_p") == 0:
                out.append((f"presets.{name}.top_p", "must be in (0, 1], got 0"))
        out += [(f"detectors.{k}", m) for k, m in DetectorConfig.problems(p.get("detectors") or {})]
        return out
