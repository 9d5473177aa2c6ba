"""The tokenizer interface shared by the BPE and char tokenizers, and the `tokenizer.json` meta file.

Every tokenizer guarantees:
- `decode(encode(text)) == text` for any text (newlines, runs of spaces, unseen characters included),
  except that the char tokenizer maps characters outside its vocabulary to `<unk>`;
- each special token string in the text becomes its single id (they are atomic);
- `encode` adds nothing (no BOS/EOS) and never normalizes: `normalize(text)` is a separate, explicit
  step for chat-time input (identity unless the tokenizer was trained with `normalize_on_encode`).
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from src.atomic_io import write_json_atomic
from src.data.readers import read_json
from src.errors import InputError

EOT = "<|endoftext|>"
CHAT_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>", "<|end|>")
SPECIAL_TOKENS = (EOT, *CHAT_TOKENS)
UNK = "<unk>"
# Always atomic besides the special tokens: SentencePiece would otherwise treat it as a line break in
# its input format; as a symbol of its own it round-trips exactly and never merges with neighbours.
NEWLINE = "\n"
META_FILE = "tokenizer.json"
META_VERSION = 1


class TokenizerError(InputError, ValueError):
    """A tokenizer directory that cannot be loaded; the message names the file."""


class Tokenizer(ABC):
    kind: str
    special_tokens: dict[str, int]
    unk_id: int

    def __init__(self, normalize_cfg: dict[str, Any] | None = None) -> None:
        # The normalize section as it was when the tokenizer was trained (None: no normalization).
        self.normalize_cfg = normalize_cfg

    @property
    @abstractmethod
    def vocab_size(self) -> int: ...

    @property
    def eot_id(self) -> int:
        return self.special_tokens[EOT]

    @abstractmethod
    def encode(self, text: str) -> list[int]: ...

    @abstractmethod
    def decode(self, ids: Sequence[int]) -> str: ...

    @abstractmethod
    def token_to_id(self, piece: str) -> int | None: ...

    @abstractmethod
    def id_to_piece(self, i: int) -> str: ...

    @abstractmethod
    def fallback_mask(self, ids: np.ndarray) -> np.ndarray:
        """True where an id stands for text the vocabulary lacks (<unk>, or a byte-fallback piece)."""

    @abstractmethod
    def _write_model(self, directory: Path) -> str:
        """Write the model file(s) into `directory`; return the main file's name."""

    def encode_array(self, text: str) -> np.ndarray:
        """`encode` as an int64 array (the tokenize stage's path; subclasses make it cheaper)."""
        return np.asarray(self.encode(text), dtype=np.int64)

    def normalize(self, text: str) -> str:
        """Chat-time input -> the form the training corpora had (identity unless configured)."""
        if self.normalize_cfg is None:
            return text
        from src.text.normalize import normalize_text

        return normalize_text(text, self.normalize_cfg)

    @property
    def sha256(self) -> str:
        """Hash of the model file's bytes: identifies the vocabulary the token files were made with."""
        return self._sha256

    def meta(self, model_file: str) -> dict[str, Any]:
        return {
            "format_version": META_VERSION,
            "kind": self.kind,
            "vocab_size": self.vocab_size,
            "eot_id": self.eot_id,
            "unk_id": self.unk_id,
            "special_tokens": dict(self.special_tokens),
            "model_file": model_file,
            "sha256": self.sha256,
            "normalize": self.normalize_cfg,
        }

    def save(self, directory: Path) -> None:
        """Write the model file and tokenizer.json (kind, vocab_size, specials, sha256) into `directory`."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        model_file = self._write_model(directory)
        write_json_atomic(directory / META_FILE, self.meta(model_file))


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def bytes_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_verified_model(directory: Path, meta: dict[str, Any], what: str) -> bytes:
    """The bytes of the model file named in tokenizer.json, checked against its recorded sha256."""
    path = Path(directory) / meta["model_file"]
    if not path.is_file():
        raise TokenizerError(f"{path}: {what} not found")
    data = path.read_bytes()
    if bytes_sha256(data) != meta["sha256"]:
        raise TokenizerError(f"{path}: sha256 differs from tokenizer.json; the directory is stale")
    return data


def read_meta(directory: Path) -> dict[str, Any]:
    path = Path(directory) / META_FILE
    if not path.is_file():
        raise TokenizerError(f"{path}: not found; is {directory} a tokenizer directory "
                             "(run the train_tokenizer stage)?")
    meta = read_json(path, hint="rebuild it with the train_tokenizer stage")
    for key in ("kind", "model_file", "sha256", "special_tokens"):
        if key not in meta:
            raise TokenizerError(f"{path}: missing key '{key}'")
    return meta
