"""`reranker_data`: (context, candidate, label) samples for the next-line reranker."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from src.config.checks import at_least, field_problems, within

SAMPLE_KINDS = ("positive", "swap", "two_ahead", "other_file", "markov")


@dataclass
class RerankerSubtitlesConfig:
    enabled: bool = True
    path: str = "data/clean/subtitles.parquet"
    languages: list[str] = field(default_factory=lambda: ["ru", "en"])
    # a pause longer than this between two lines ends the run (scenes are already split)
    max_gap_ms: int = 5000
    # a longer line ends the run and is left out (counted): a monologue is not a reply
    max_line_chars: int = 400


@dataclass
class RerankerLiteratureConfig:
    enabled: bool = True
    # the cleaned lib.ru corpus (clean_librus); "" to read only text_paths
    path: str = "data/clean/librus.parquet"
    # local plain-text corpora (folders searched for *.txt, or files)
    text_paths: list[str] = field(default_factory=list)
    # text_paths files go through clean_librus's editorial-apparatus rules (note marks like [12],
    # footnote bodies, "Примечания" sections...) with their defaults; false reads them as they are
    apparatus_rules: bool = True
    # speech detection, as in build_dialogues.literature (src/data/dialogues/speech.py)
    min_quoted_share: float = 0.5
    inline_colon_dash: bool = True
    max_line_chars: int = 400


@dataclass
class RerankerMarkovConfig:
    """The writers behind `markov` samples: one per language, learned here from the train split's
    lines (src/data/reranker/markov_negatives.py)."""

    # the longest key, in pieces (words and punctuation runs), and the backoff (see markov.*)
    order: int = 3
    min_choices: int = 2
    # lines generated per sample; the first that is no corpus line is the candidate (copies are
    # counted; a sample with none becomes a swap sample)
    tries: int = 8
    # the candidate grows from a word of the last this-many context lines (else from a line start)
    seed_lines: int = 1
    max_pieces: int = 40


@dataclass
class RerankerDataConfig:
    output: str = "data/reranker/samples.parquet"
    report_dir: str = "data/reports/reranker_data"
    # context lengths run evenly from 1 to this many lines
    max_lines: int = 6
    # share of files (subtitles) and works (literature) held out for validation, per source
    val_share: float = 0.2
    split_salt: str = ""
    # relative number of fragments made into each kind of sample (0 = none of that kind):
    # positive (the real next line), swap (first and last line of the window exchanged),
    # two_ahead (the line after the next), other_file (a line of another file or work), markov
    # (a line made by a Markov writer of the train split); the negatives sum to the positives
    kinds: dict[str, float] = field(default_factory=lambda: {
        "positive": 1.0, "swap": 0.5, "two_ahead": 0.125, "other_file": 0.125, "markov": 0.25})
    markov: RerankerMarkovConfig = field(default_factory=RerankerMarkovConfig)
    subtitles: RerankerSubtitlesConfig = field(default_factory=RerankerSubtitlesConfig)
    literature: RerankerLiteratureConfig = field(default_factory=RerankerLiteratureConfig)

    @staticmethod
    def problems(c: Mapping[str, Any]) -> list[tuple[str, str]]:
        out = field_problems(c, {"max_lines": at_least(1), "val_share": within(0.0, 1.0, high_open=True)})
        out += [(f"markov.{k}", m) for k, m in field_problems(
            c["markov"], {"order": within(1, 8), "min_choices": at_least(1), "tries": at_least(1),
                          "seed_lines": at_least(0), "max_pieces": at_least(1)})]
        kinds = dict(c["kinds"])
        unknown = sorted(set(kinds) - set(SAMPLE_KINDS))
        if unknown:
            out.append(("kinds", f"unknown kind(s) {unknown}; known: {list(SAMPLE_KINDS)}"))
        if any(float(w) < 0 for w in kinds.values()):
            out.append(("kinds", f"weights must be >= 0, got {kinds}"))
        if float(kinds.get("positive", 0)) <= 0:
            out.append(("kinds.positive", "must be > 0"))
        if not any(float(w) > 0 for k, w in kinds.items() if k != "positive"):
            out.append(("kinds", "at least one negative kind needs a weight > 0"))
        return out
