"""`reranker`: training the next-line cross-encoder on the reranker_data samples."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from src.config.checks import at_least, field_problems, one_of
from src.config.sections.model import ModelConfig
from src.config.sections.pretrain import PretrainConfig


@dataclass
class RerankerConfig(PretrainConfig):
    """The pretraining recipe's keys (optimizer, schedule, batch, cadence; read the same way, a
    micro-batch being `micro_batch_size` pairs) plus the cross-encoder's own.

    `data_dir` holds samples.parquet (the reranker_data stage); `tokenizer_dir` is the project
    tokenizer the `own` backbone reads text with; `val_batches` caps validation micro-batches
    (0 = every val sample). The sample_* keys of the recipe are unused.
    """

    name: str = "sample"
    data_dir: str = "data/reranker"
    tokenizer_dir: str = "data/tokenizer"
    ckpt_dir: str = "data/models/reranker"
    report_dir: str = "data/reports/reranker"
    # where the trained reranker is exported for load_reranker (and, for hf, sentence-transformers)
    export_dir: str = "data/models/reranker/model"
    # own: the project's transformer as a bidirectional encoder, from scratch (the `model` below);
    # hf: the local Hugging Face encoder directory `hf_dir`, fine-tuned
    backbone: str = "own"
    # mean: pooled over the real tokens; marker: the leading <|endoftext|> token's output
    pooling: str = "mean"
    model: ModelConfig = field(default_factory=lambda: ModelConfig(name="reranker_tiny", block_size=128))
    hf_dir: str = ""
    # own: start the encoder from this pretrain/SFT (or own-reranker) checkpoint of the same tokenizer
    # instead of from scratch; its architecture replaces `model` but for block_size and dropout
    # (src/training/reranker_init.py). "" = from scratch
    init_from: str = ""
    hf_max_length: int = 256
    # weight of the positive class in the loss: -1 = n_negative / n_positive of the train split when
    # that differs from 1 by more than 10%, else 1
    pos_weight: float = -1.0
    # ranking metrics: the true next line among this many candidates (MRR@k, hit@1)
    rank_k: int = 8
    # at most this many ranking groups (val positives) are scored at each validation (0 = all)
    rank_max_groups: int = 500
    val_batches: int = 0
    sample_tokens: int = 0
    lr: float = 1.0e-3
    warmup_steps: int = 10
    max_steps: int = 100

    @staticmethod
    def problems(p: Mapping[str, Any]) -> list[tuple[str, str]]:
        out = PretrainConfig.problems({**p, "val_batches": max(1, p.get("val_batches", 1))})
        out += field_problems(p, {"backbone": one_of("own", "hf"), "pooling": one_of("mean", "marker"),
                                  "hf_max_length": at_least(8), "rank_k": at_least(2), "rank_max_groups": at_least(0),
                                  "val_batches": at_least(0)})
        if p.get("pos_weight") is not None and p["pos_weight"] != -1 and p["pos_weight"] <= 0:
            out.append(("pos_weight", f"must be > 0 or -1 (auto), got {p['pos_weight']}"))
        if p.get("backbone") == "hf" and p.get("init_from"):
            out.append(("init_from", "starts the own backbone only; backbone=hf fine-tunes hf_dir as it is"))
        if p.get("backbone") == "hf" and not p.get("hf_dir"):
            out.append(("hf_dir", "must name a local Hugging Face encoder directory when backbone=hf"))
        out += [(f"model.{k}", m) for k, m in ModelConfig.problems(p["model"])]
        return out
