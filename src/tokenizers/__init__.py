"""Tokenizers (SentencePiece BPE and char-level) and the stages that train them and tokenize corpora.

`load_tokenizer(dir)` reads a directory written by `Tokenizer.save` (data/tokenizer/ or an export).
"""

from __future__ import annotations

from pathlib import Path

from src.tokenizers.base import (
    CHAT_TOKENS,
    EOT,
    SPECIAL_TOKENS,
    Tokenizer,
    TokenizerError,
    read_meta,
)

__all__ = ["CHAT_TOKENS", "EOT", "SPECIAL_TOKENS", "Tokenizer", "TokenizerError", "load_tokenizer"]


def load_tokenizer(path: str | Path) -> Tokenizer:
    """The tokenizer saved in `path` (a directory holding tokenizer.json and its model file)."""
    from src.tokenizers.bpe import BpeTokenizer
    from src.tokenizers.char import CharTokenizer

    directory = Path(path)
    meta = read_meta(directory)
    kinds = {"bpe": BpeTokenizer, "char": CharTokenizer}
    if meta["kind"] not in kinds:
        raise TokenizerError(f"{directory / 'tokenizer.json'}: unknown kind {meta['kind']!r}; "
                             f"expected one of {sorted(kinds)}")
    return kinds[meta["kind"]].load(directory, meta)
