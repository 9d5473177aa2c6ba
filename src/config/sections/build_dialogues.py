"""`build_dialogues`: conversations for supervised fine-tuning from datasets, subtitles and literature."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

FILTER_OPS = (">=", ">", "<=", "<", "==", "!=")
NOT_APPLICABLE_POLICIES = ("keep", "drop")
SPLIT_GROUPS = ("conversation", "document")


@dataclass
class DialogueFilter:
    """Keep a row when `column OP value`; -1 (the datasets' "not applicable") and null follow
    `if_missing`, and so does a file without the column."""

    column: str = "overall_score"
    op: str = ">="
    value: float = 0.0
    if_missing: str = "keep"


@dataclass
class DialogueDatasetsConfig:
    """Instruction/chat datasets on disk: parquet (the large Russian SFT corpora's schema) or JSONL
    (`conversation` or OpenAI-style `messages`), read lazily with polars."""

    enabled: bool = False
    # Files or folders (searched recursively for *.parquet, *.jsonl, *.ndjson).
    paths: list[str] = field(default_factory=list)
    filters: list[DialogueFilter] = field(
        default_factory=lambda: [
            DialogueFilter("overall_score", ">=", 6.0), DialogueFilter("safety", ">=", 8.0),
            DialogueFilter("pii_leak", "==", 0.0),
        ]
    )


@dataclass
class DialogueSampleConfig:
    """The embedded sample (the project's own writing, in the datasets' schema; same filters)."""

    enabled: bool = True
    path: str = "data/sample/dialogues/sample.parquet"


@dataclass
class DialogueWindowConfig:
    """How a run of consecutive utterances is cut into conversations (user first, alternating)."""

    min_turns: int = 2
    max_turns: int = 8
    # A turn longer than this ends the run (a monologue is not a dialogue turn).
    max_turn_chars: int = 1000


@dataclass
class DialogueSubtitlesConfig:
    enabled: bool = True
    path: str = "data/clean/subtitles.parquet"
    languages: list[str] = field(default_factory=lambda: ["ru", "en"])
    # A pause longer than this between two lines ends the run (scenes already split on clean_subs'
    # scene_gap_ms; this can only be stricter).
    max_gap_ms: int = 5000
    window: DialogueWindowConfig = field(default_factory=DialogueWindowConfig)


@dataclass
class DialogueLiteratureConfig:
    enabled: bool = True
    path: str = "data/clean/librus.parquet"
    # Local plain-text corpora (folders searched recursively for *.txt, or files), read as UTF-8
    # (windows-1251 when that fails).
    text_paths: list[str] = field(default_factory=list)
    # text_paths files go through clean_librus's editorial-apparatus rules (note marks like [12],
    # footnote bodies, "Примечания" sections...) with their defaults; false reads them as they are
    apparatus_rules: bool = True
    # A paragraph in quotation marks counts as speech when it starts with a quote or at least this
    # share of its characters is quoted (English prose; older Russian prose).
    min_quoted_share: float = 0.5
    # Speech introduced inside a narrative paragraph by a colon and a dash ("он сказал: — Иди.").
    inline_colon_dash: bool = True
    window: DialogueWindowConfig = field(default_factory=DialogueWindowConfig)


@dataclass
class BuildDialoguesConfig:
    output: str = "data/dialogues/dialogues.parquet"
    report_dir: str = "data/reports/build_dialogues"
    # Token lengths and the loss share are measured with this tokenizer.
    tokenizer_dir: str = "data/tokenizer"
    normalize_text: bool = True  # src.text.normalize with the `normalize` section, as the corpora had
    dedup: bool = True  # identical conversations (after normalization) are kept once
    val_fraction: float = 0.05
    # When val_fraction leaves fewer val conversations than this (small inputs such as the embedded
    # sample), the train ones of lowest split score move to val (whole documents under
    # split_by=document) until it is reached; train keeps at least one. Ignored when val_fraction is 0.
    val_min_conversations: int = 8
    split_salt: str = ""
    # conversation: each conversation by its own hash; document: all conversations from one book,
    # film or dataset row group stay in one split (no near-duplicate leakage across splits).
    split_by: str = "conversation"
    report_examples: int = 3  # rendered examples with the tokens under loss marked
    datasets: DialogueDatasetsConfig = field(default_factory=DialogueDatasetsConfig)
    sample: DialogueSampleConfig = field(default_factory=DialogueSampleConfig)
    subtitles: DialogueSubtitlesConfig = field(default_factory=DialogueSubtitlesConfig)
    literature: DialogueLiteratureConfig = field(default_factory=DialogueLiteratureConfig)

    @staticmethod
    def problems(c: Mapping[str, Any]) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        for i, f in enumerate(c["datasets"]["filters"]):
            if f["op"] not in FILTER_OPS:
                out.append((f"datasets.filters[{i}].op", f"{f['op']!r}: expected one of {list(FILTER_OPS)}"))
            if f["if_missing"] not in NOT_APPLICABLE_POLICIES:
                out.append((f"datasets.filters[{i}].if_missing",
                            f"{f['if_missing']!r}: expected one of {list(NOT_APPLICABLE_POLICIES)}"))
        if c["split_by"] not in SPLIT_GROUPS:
            out.append(("split_by", f"{c['split_by']!r}: expected one of {list(SPLIT_GROUPS)}"))
        if c["val_min_conversations"] < 0:
            out.append(("val_min_conversations", f"{c['val_min_conversations']}: must be >= 0"))
        if not 0.0 <= c["val_fraction"] < 1.0:
            out.append(("val_fraction", f"{c['val_fraction']}: must be in [0, 1)"))
        for name in ("subtitles", "literature"):
            w = c[name]["window"]
            if w["min_turns"] < 2 or w["max_turns"] < w["min_turns"]:
                out.append((f"{name}.window", f"min_turns={w['min_turns']}, max_turns={w['max_turns']}: "
                            "need 2 <= min_turns <= max_turns"))
        return out
