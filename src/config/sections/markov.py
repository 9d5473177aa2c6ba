"""`markov`: the order-n Markov writer (src/generation/markov.py) and the corpus it learns from."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from src.config.checks import at_least, field_problems, one_of, within

LITERATURE_MODES = ("speech", "sentences", "paragraphs")


@dataclass
class MarkovSubtitlesConfig:
    enabled: bool = True
    path: str = "data/clean/subtitles.parquet"
    languages: list[str] = field(default_factory=lambda: ["ru", "en"])


@dataclass
class MarkovLiteratureConfig:
    enabled: bool = True
    # the cleaned lib.ru corpus (clean_librus); "" to read only text_paths
    path: str = "data/clean/librus.parquet"
    # your own texts: folders searched for *.txt, or files (UTF-8, or windows-1251); normalized
    # with the normalize section, as the cleaned corpora were
    text_paths: list[str] = field(default_factory=list)
    # text_paths files go through clean_librus's editorial-apparatus rules (note marks like [12],
    # footnote bodies, "Примечания" sections...) with their defaults; false reads them as they are
    apparatus_rules: bool = True
    # what a line is: speech (the spoken parts of dialogue paragraphs, as build_dialogues finds
    # them), sentences (every sentence of the prose), paragraphs (every paragraph whole)
    mode: str = "speech"
    min_quoted_share: float = 0.5
    inline_colon_dash: bool = True


@dataclass
class MarkovGenerateConfig:
    """Defaults for making candidates (the chat's --rerank mode, the benchmark, the report)."""

    # share of the candidates grown from words of the conversation's last lines
    seeded_share: float = 0.5
    seed_lines: int = 1
    # a line longer than this many pieces (words and punctuation runs) is thrown away
    max_pieces: int = 40
    rounds: int = 4


@dataclass
class MarkovConfig:
    out_dir: str = "data/models/markov"
    report_dir: str = "data/reports/markov"
    # the longest key, in pieces (words and punctuation runs)
    order: int = 4
    # a key with fewer distinct continuations gives way to a shorter one (1: longest match only,
    # which with long keys mostly copies corpus lines)
    min_choices: int = 2
    # lines longer than this (characters) or shorter than min_pieces are left out (counted)
    max_line_chars: int = 400
    min_pieces: int = 2
    subtitles: MarkovSubtitlesConfig = field(default_factory=MarkovSubtitlesConfig)
    literature: MarkovLiteratureConfig = field(default_factory=MarkovLiteratureConfig)
    generate: MarkovGenerateConfig = field(default_factory=MarkovGenerateConfig)
    # lines generated into the report (from line starts, fixed seed)
    report_samples: int = 20

    @staticmethod
    def problems(c: Mapping[str, Any]) -> list[tuple[str, str]]:
        out = field_problems(c, {"order": within(1, 8), "min_choices": at_least(1),
                                 "max_line_chars": at_least(1), "min_pieces": at_least(1),
                                 "report_samples": at_least(0)})
        out += [(f"literature.{k}", m) for k, m in field_problems(
            c["literature"], {"mode": one_of(*LITERATURE_MODES)})]
        out += [(f"generate.{k}", m) for k, m in field_problems(
            c["generate"], {"seeded_share": within(0.0, 1.0), "seed_lines": at_least(0),
                            "max_pieces": at_least(1), "rounds": at_least(1)})]
        return out
