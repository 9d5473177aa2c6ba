from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from src.config.checks import above, at_least, field_problems, one_of, within
from src.config.sections.detectors import DetectorConfig
from src.config.sections.pretrain import PretrainConfig


@dataclass
class KTOConfig(PretrainConfig):
    """Preference tuning of the SFT model with KTO on unpaired desirable/undesirable replies.

    The pretraining recipe's keys (optimizer, schedule, batch, cadence) plus the loss, the reference
    model and the collapse guard. `data_dir` holds pairs.parquet (the kto_pairs stage); every
    `val_every` steps the guard measures the desirable drift on the val split's desirable replies
    and samples replies to `sample_prompts`, and compares them with the SFT model's at step 0.
    """

    name: str = "sample"
    data_dir: str = "data/kto_pairs"
    tokenizer_dir: str = "data/tokenizer"
    init_checkpoint: str = "data/models/sft/best.ckpt"
    ckpt_dir: str = "data/models/kto"
    report_dir: str = "data/reports/kto"
    # loss (src/training/kto.py): kto | apo_zero_unpaired
    loss_type: str = "kto"
    # z0 = max(0, ...) as TRL defines it; false only to demonstrate a collapse the clamp prevents
    clamp_z0: bool = True
    beta: float = 0.1
    desirable_weight: float = 1.0
    undesirable_weight: float = 1.0
    # precompute: the reference log-probs of every pair once before training (the SFT weights,
    # then freed); frozen: a frozen copy of the SFT model scores each micro-batch
    reference: str = "precompute"
    score_batch_size: int = 16  # pairs per forward when precomputing and evaluating
    lr: float = 1.0e-6
    weight_decay: float = 0.0
    warmup_steps: int = 10
    max_steps: int = 100
    micro_batch_size: int = 8
    # collapse guard, run at every validation
    guard: bool = True
    min_desirable_drift: float = -5.0  # nats per held-out desirable reply, policy - reference
    max_loop_rate_rise: float = 0.25
    max_eot_rate_drop: float = 0.25
    max_distinct2_drop: float = 0.25
    max_length_ratio: float = 2.0  # mean reply length more than x times (or under 1/x of) step 0's
    max_canned_rate_rise: float = 0.25
    max_markdown_wall_rate_rise: float = 0.25
    # the failure detectors' thresholds for the generation check (as kto_pairs.detectors)
    detectors: DetectorConfig = field(default_factory=DetectorConfig)
    sample_tokens: int = 64
    sample_prompts: list[str] = field(default_factory=lambda: ["Привет! Как дела?"])

    @staticmethod
    def problems(p: Mapping[str, Any]) -> list[tuple[str, str]]:
        out = PretrainConfig.problems(p)
        out += field_problems(p, {
            "loss_type": one_of("kto", "apo_zero_unpaired"), "beta": above(0),
            "desirable_weight": above(0), "undesirable_weight": above(0),
            "reference": one_of("precompute", "frozen"), "score_batch_size": at_least(1),
            "max_loop_rate_rise": within(0, 1), "max_eot_rate_drop": within(0, 1),
            "max_distinct2_drop": within(0, 1), "max_length_ratio": at_least(1),
            "max_canned_rate_rise": within(0, 1), "max_markdown_wall_rate_rise": within(0, 1)})
        out += [(f"detectors.{k}", m) for k, m in DetectorConfig.problems(p.get("detectors") or {})]
        if p.get("loss_type") == "kto" and p.get("micro_batch_size") == 1:
            out.append(("micro_batch_size", "must be >= 2 with loss_type=kto: the reference point pairs each "
                                            "prompt with the next example's completion in the micro-batch"))
        if not p.get("init_checkpoint"):
            out.append(("init_checkpoint", "must name the SFT checkpoint to start from"))
        return out
