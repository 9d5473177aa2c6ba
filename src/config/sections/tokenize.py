"""The `tokenize` section: split documents into train/val and encode them into token memmaps."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TokenizeConfig:
    corpora: list[str] = field(default_factory=lambda: ["literature", "subtitles"])
    tokenizer_dir: str = "data/tokenizer"
    out_dir: str = "data/tokens"
    val_fraction: float = 0.1  # by a hash of the document id: adding documents never moves old ones
    split_salt: str = ""
    workers: int = 2  # encoding processes; 0 encodes in this process
    # A unit of work sent to a worker: documents (or newline-cut parts of long ones) up to this many chars.
    chunk_chars: int = 1_000_000
    # Chunks in flight per worker: bounds memory while keeping workers busy.
    pending_per_worker: int = 2
    dtype: str = "auto"  # "auto" (uint16 while vocab_size <= 65535, else uint32), "uint16", "uint32"
    report_top_unknown: int = 50  # most frequent unknown characters listed in the report
