"""The `tokenizer` section: which corpora train the tokenizer, its kind and SentencePiece options."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TokenizerConfig:
    kind: str = "bpe"  # "bpe" (SentencePiece) or "char"
    # BPE: the target vocabulary (a hard limit unless hard_vocab_limit=false).
    # char: 0 keeps every character seen; N > 0 keeps the N - 6 most frequent (the rest map to <unk>).
    vocab_size: int = 1000
    corpora: list[str] = field(default_factory=lambda: ["literature", "subtitles"])
    literature_path: str = "data/clean/librus.parquet"
    subtitles_path: str = "data/clean/subtitles.parquet"
    subtitles_languages: list[str] = field(default_factory=list)  # empty: every language
    out_dir: str = "data/tokenizer"
    # Documents whose id hashes below this fraction are held out of training and measured in the
    # report; `tokenize.val_fraction` defaults to the same value so the tokenizer never sees val text.
    heldout_fraction: float = 0.1
    split_salt: str = ""  # changes the hash split (a fresh, equally stable partition)
    # Extra atomic symbols; "\n" and the special tokens are always atomic (see src/tokenizers/base.py).
    user_defined_symbols: list[str] = field(default_factory=lambda: ["—", "«", "»", "…"])
    character_coverage: float = 1.0
    byte_fallback: bool = True
    split_digits: bool = True
    max_sentencepiece_length: int = 16
    hard_vocab_limit: bool = True
    # SentencePiece reads a random sample of this many training lines: memory stays bounded on GB corpora.
    input_sentence_size: int = 2_000_000
    shuffle_input_sentence: bool = True
    # Longer lines are cut at a space for training only (SentencePiece skips lines over this many bytes).
    max_sentence_length: int = 8192
    num_threads: int = 2
    char_min_count: int = 1  # char kind: rarer characters become <unk>
    # The report's held-out sample: at most this many characters are encoded and measured.
    report_max_chars: int = 2_000_000
    # Stored with the tokenizer: `Tokenizer.normalize(text)` then runs src.text.normalize on chat-time
    # input. `encode` itself never normalizes (it must stay the exact inverse of `decode`).
    normalize_on_encode: bool = False
