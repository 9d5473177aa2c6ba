"""`eval`: the evaluation of every model the pipeline made (src/eval/stage.py) and its report card."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from src.config.checks import at_least, field_problems, one_of
from src.config.sections.detectors import DetectorConfig

MODEL_NAMES = ("pretrain", "sft", "kto")
CORPORA = ("literature", "subtitles", "dialogues")
PRECISIONS = ("auto", "fp32", "fp16", "bf16", "int8", "int4")


@dataclass
class EvalModelsConfig:
    """Where each model's checkpoints are (best.ckpt, else last.ckpt); "" = not evaluated."""

    pretrain: str = "data/models/pretrain"
    sft: str = "data/models/sft"
    kto: str = "data/models/kto"


@dataclass
class EvalLMConfig:
    """Validation loss and bits per byte per corpus on held-out text."""

    enabled: bool = True
    corpora: list[str] = field(default_factory=lambda: list(CORPORA))
    literature_path: str = "data/clean/librus.parquet"
    subtitles_path: str = "data/clean/subtitles.parquet"
    # None (the default when the tokenizer section is absent): every language
    subtitles_languages: list[str] | None = None
    dialogues_path: str = "data/dialogues/dialogues.parquet"
    # the tokenize stage's split rule (hash of the document id): the held-out literature and
    # subtitle documents are those it wrote to val.bin
    # None (when the tokenize section is absent): literature and subtitles, its own default
    split_corpora: list[str] | None = None
    val_fraction: float = 0.1
    split_salt: str = ""
    # the unigram baseline counts token frequencies on this tokenize output's train.bin
    tokens_dir: str = "data/tokens"
    unigram_alpha: float = 1.0
    # UTF-8 bytes of held-out text scored per corpus (the first documents in file order; 0 = all)
    max_bytes: int = 200_000
    batch_size: int = 16


@dataclass
class EvalGenerationConfig:
    """Replies to the fixed prompt set (src/eval/sets/prompts.jsonl) per model; the sampling
    settings are the `generation` section's, with this reply length."""

    enabled: bool = True
    prompts: str = ""  # "" = src/eval/sets/prompts.jsonl
    max_new_tokens: int = 64
    batch_size: int = 16
    detectors: DetectorConfig = field(default_factory=DetectorConfig)


@dataclass
class EvalProbesConfig:
    enabled: bool = True
    paths: list[str] = field(default_factory=list)  # [] = src/eval/sets/probes_{ru,en}.jsonl
    languages: list[str] = field(default_factory=list)  # [] = all
    max_new_tokens: int = 48
    batch_size: int = 16


@dataclass
class EvalRerankerConfig:
    enabled: bool = True
    dir: str = "data/models/reranker/model"  # the reranker export (reranker.export_dir)
    samples_path: str = "data/reranker/samples.parquet"
    k: int = 8
    max_groups: int = 500
    batch_size: int = 64
    # best-of-n against plain sampling: candidates from the chat model `model` (lm), the Markov
    # writer (markov) or both (src/generation/rerank.py)
    best_of_n: bool = True
    model: str = "sft"
    n: int = 4
    candidates: str = "lm"
    markov_dir: str = "data/models/markov"
    max_prompts: int = 16


@dataclass
class EvalLatencyConfig:
    enabled: bool = True
    max_new_tokens: int = 32
    repeats: int = 2
    max_prompts: int = 4
    reranked: bool = True  # also time a reranked turn (needs the reranker)


@dataclass
class EvalConfig:
    out_dir: str = "data/eval"
    models: EvalModelsConfig = field(default_factory=EvalModelsConfig)
    # pipeline facts for the report card: stage reports and the tokenizer's report
    reports_dir: str = "data/reports"
    tokenizer_report: str = "data/tokenizer/report.json"
    # weights as trained (fp32) keep the figures comparable across machines; see generation.precision
    precision: str = "fp32"
    samples_in_results: int = 12  # prompts whose replies the report card shows side by side
    lm: EvalLMConfig = field(default_factory=EvalLMConfig)
    generation: EvalGenerationConfig = field(default_factory=EvalGenerationConfig)
    probes: EvalProbesConfig = field(default_factory=EvalProbesConfig)
    reranker: EvalRerankerConfig = field(default_factory=EvalRerankerConfig)
    latency: EvalLatencyConfig = field(default_factory=EvalLatencyConfig)
    report: bool = True  # render report.md / report.html

    @staticmethod
    def problems(c: Mapping[str, Any]) -> list[tuple[str, str]]:
        out = field_problems(c, {"precision": one_of(*PRECISIONS), "samples_in_results": at_least(0)})
        lm = c["lm"]
        out += [(f"lm.{k}", m) for k, m in field_problems(lm, {
            "val_fraction": lambda v: None if 0 < v < 1 else "must be in (0, 1)",
            "unigram_alpha": lambda v: None if v > 0 else "must be > 0 (a token unseen in train costs log 0)",
            "max_bytes": at_least(0), "batch_size": at_least(1)})]
        out += [("lm.corpora", f"unknown corpus {name!r}; expected some of {list(CORPORA)}")
                for name in lm["corpora"] if name not in CORPORA]
        out += [(f"generation.{k}", m) for k, m in field_problems(
            c["generation"], {"max_new_tokens": at_least(1), "batch_size": at_least(1)})]
        out += [(f"generation.detectors.{k}", m) for k, m in DetectorConfig.problems(c["generation"]["detectors"])]
        out += [(f"probes.{k}", m) for k, m in field_problems(
            c["probes"], {"max_new_tokens": at_least(1), "batch_size": at_least(1)})]
        out += [(f"reranker.{k}", m) for k, m in field_problems(c["reranker"], {
            "k": at_least(2), "max_groups": at_least(1), "batch_size": at_least(1), "n": at_least(1),
            "model": one_of(*MODEL_NAMES), "candidates": one_of("lm", "markov", "both"),
            "max_prompts": at_least(1)})]
        out += [(f"latency.{k}", m) for k, m in field_problems(c["latency"], {
            "max_new_tokens": at_least(1), "repeats": at_least(1), "max_prompts": at_least(1)})]
        return out
