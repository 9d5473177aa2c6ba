"""Character-level tokenizer: one id per character seen in training, plus <unk> and the special tokens.

Ids: 0 = <unk>, 1..5 = the special tokens, then the characters in code point order. A character outside
the vocabulary encodes as <unk> (counted by the reports) and decodes as U+FFFD.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from src.atomic_io import write_bytes_atomic
from src.tokenizers.base import (
    SPECIAL_TOKENS,
    UNK,
    Tokenizer,
    TokenizerError,
    bytes_sha256,
    read_verified_model,
)

VOCAB_FILE = "vocab.json"
UNK_DECODED = "\ufffd"
_SPECIAL_RE = re.compile("(" + "|".join(re.escape(t) for t in SPECIAL_TOKENS) + ")")


def _vocab_bytes(chars: Sequence[str]) -> bytes:
    return (json.dumps({"chars": list(chars)}, ensure_ascii=False) + "\n").encode("utf-8")


class CharTokenizer(Tokenizer):
    kind = "char"
    unk_id = 0

    def __init__(self, chars: Iterable[str], normalize_cfg: dict[str, Any] | None = None) -> None:
        super().__init__(normalize_cfg)
        chars = sorted(set(chars))
        bad = [c for c in chars if len(c) != 1]
        if bad:
            raise TokenizerError(f"char vocabulary entries must be single characters, got {bad[:5]}")
        self.chars = chars
        self._sha256 = bytes_sha256(_vocab_bytes(chars))
        self.special_tokens = {t: 1 + k for k, t in enumerate(SPECIAL_TOKENS)}
        first = 1 + len(SPECIAL_TOKENS)
        self._pieces = [UNK, *SPECIAL_TOKENS, *chars]
        self._decoded = [UNK_DECODED, *SPECIAL_TOKENS, *chars]
        self._ids = {c: first + k for k, c in enumerate(chars)}
        # Sorted code points -> ids, for a vectorized encode (searchsorted) instead of a Python loop.
        self._codepoints = np.array([ord(c) for c in chars], dtype=np.uint32)
        self._cp_ids = np.arange(first, first + len(chars), dtype=np.int64)

    @property
    def vocab_size(self) -> int:
        return len(self._pieces)

    def _encode_plain(self, text: str) -> np.ndarray:
        cps = np.frombuffer(text.encode("utf-32-le", errors="surrogatepass"), dtype=np.uint32)
        if not len(self._codepoints):
            return np.zeros(len(cps), dtype=np.int64)
        pos = np.minimum(np.searchsorted(self._codepoints, cps), len(self._codepoints) - 1)
        known = self._codepoints[pos] == cps
        return np.where(known, self._cp_ids[pos], self.unk_id)

    def encode_array(self, text: str) -> np.ndarray:
        if "<|" not in text:
            return self._encode_plain(text)
        parts = []
        for k, part in enumerate(_SPECIAL_RE.split(text)):
            if k % 2:  # the regex's captured group: a special token
                parts.append(np.array([self.special_tokens[part]], dtype=np.int64))
            elif part:
                parts.append(self._encode_plain(part))
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def encode(self, text: str) -> list[int]:
        return self.encode_array(text).tolist()

    def decode(self, ids: Sequence[int]) -> str:
        if isinstance(ids, np.ndarray):
            ids = ids.tolist()
        table = self._decoded
        return "".join(table[i] for i in ids)

    def token_to_id(self, piece: str) -> int | None:
        if piece == UNK:
            return self.unk_id
        return self.special_tokens.get(piece, self._ids.get(piece))

    def id_to_piece(self, i: int) -> str:
        if not 0 <= i < self.vocab_size:
            raise IndexError(f"token id {i} outside the vocabulary (size {self.vocab_size})")
        return self._pieces[i]

    def fallback_mask(self, ids: np.ndarray) -> np.ndarray:
        return ids == self.unk_id

    def unknown_chars(self, text: str) -> Counter[str]:
        """Characters of `text` outside the vocabulary, with their counts (special tokens excluded)."""
        missing = {c for c in set(_SPECIAL_RE.sub("", text)) if c not in self._ids}
        if not missing:
            return Counter()
        return Counter(c for c in text if c in missing)

    def _write_model(self, directory: Path) -> str:
        write_bytes_atomic(directory / VOCAB_FILE, _vocab_bytes(self.chars))
        return VOCAB_FILE

    @classmethod
    def load(cls, directory: Path, meta: dict[str, Any]) -> CharTokenizer:
        data = read_verified_model(directory, meta, "char vocabulary")
        return cls(json.loads(data)["chars"], meta.get("normalize"))


def update_char_counts(counts: Counter[str], text: str) -> None:
    """Count the characters of `text`; special token strings are not characters of the vocabulary."""
    counts.update(_SPECIAL_RE.sub("", text) if "<|" in text else text)


def count_chars(texts: Iterable[str]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for text in texts:
        update_char_counts(counts, text)
    return counts


def train_char(
    counts: Counter[str], vocab_size: int, min_count: int, normalize_cfg: dict[str, Any] | None
) -> CharTokenizer:
    """The vocabulary from character counts: all chars seen >= min_count times, capped if vocab_size > 0."""
    kept = [(n, c) for c, n in counts.items() if n >= min_count]
    if vocab_size > 0:
        room = vocab_size - 1 - len(SPECIAL_TOKENS)
        if room <= 0:
            raise TokenizerError(f"tokenizer.vocab_size={vocab_size} leaves no room for characters "
                                 f"after <unk> and {len(SPECIAL_TOKENS)} special tokens")
        kept = sorted(kept, key=lambda nc: (-nc[0], nc[1]))[:room]
    if not kept:
        raise TokenizerError("char tokenizer: no characters in the training text "
                             f"(tokenizer.char_min_count={min_count})")
    return CharTokenizer([c for _, c in kept], normalize_cfg)
