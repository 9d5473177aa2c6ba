"""The pipeline's stages: which function runs each, and which config sections it depends on.

`dvc.yaml` lists the same sections as each stage's `params` (a test keeps them in step).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Stage:
    target: str  # "package.module:function"
    sections: tuple[str, ...]

    def load(self) -> Callable[..., Any]:
        module, _, func = self.target.partition(":")
        return getattr(importlib.import_module(module), func)


STAGES: dict[str, Stage] = {
    "scrape_librus": Stage("src.data.librus.scrape:scrape_librus", ("scrape_librus",)),
    "clean_librus": Stage("src.data.librus.clean:clean_librus", ("clean_librus", "normalize")),
    "scrape_opensubs": Stage("src.data.opensubs.scrape:scrape_opensubs", ("scrape_opensubs",)),
    "clean_subs": Stage("src.data.subtitles.stage:clean_subs", ("clean_subs", "normalize")),
    "train_tokenizer": Stage("src.tokenizers.train:train_tokenizer", ("tokenizer", "normalize")),
    "tokenize": Stage("src.tokenizers.encode:tokenize_corpus", ("tokenize", "tokenizer")),
    "pretrain": Stage("src.training.pretrain:pretrain", ("seed", "model", "trainer", "pretrain", "normalize")),
    "sft": Stage("src.training.sft:sft", ("seed", "model", "trainer", "sft")),
    "build_dialogues": Stage("src.data.dialogues.build:build_dialogues", ("build_dialogues", "normalize")),
    # the architecture comes from the SFT checkpoint, so the `model` section is no param of kto
    "kto": Stage("src.training.kto_stage:kto", ("seed", "trainer", "kto")),
    "kto_pairs": Stage("src.data.preferences.kto_pairs:kto_pairs", ("seed", "kto_pairs")),
    "reranker_data": Stage("src.data.reranker.build:reranker_data", ("seed", "reranker_data")),
    "reranker": Stage("src.training.reranker:reranker", ("seed", "trainer", "reranker")),
    "markov": Stage("src.generation.markov_stage:markov", ("seed", "markov", "normalize")),
    "eval": Stage("src.eval.stage:evaluate", ("seed", "eval", "generation")),
}
