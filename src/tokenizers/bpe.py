"""SentencePiece BPE behind the `Tokenizer` interface, and its training.

SentencePiece is configured to stay out of the way of the project's own normalizer: identity
normalization, no dummy prefix, extra whitespace kept, whitespace-only pieces allowed, byte fallback for
anything the vocabulary lacks. Two characters still need care for an exact round trip:
- "\n" is SentencePiece's line separator in training input, so it is made an atomic user symbol;
- U+2581 "▁" is SentencePiece's internal stand-in for a space and would decode as " ", so a literal one
  in the text is encoded as its three UTF-8 byte-fallback pieces instead.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import sentencepiece as spm

from src.atomic_io import write_bytes_atomic
from src.tokenizers.base import (
    NEWLINE,
    SPECIAL_TOKENS,
    Tokenizer,
    TokenizerError,
    bytes_sha256,
    read_verified_model,
)

MODEL_FILE = "tokenizer.model"
SPACE_MARK = "\u2581"


class BpeTokenizer(Tokenizer):
    kind = "bpe"

    def __init__(self, model_proto: bytes, normalize_cfg: dict[str, Any] | None = None) -> None:
        super().__init__(normalize_cfg)
        self._proto = model_proto
        self._sha256 = bytes_sha256(model_proto)
        self._sp = spm.SentencePieceProcessor(model_proto=model_proto)
        self.unk_id = self._sp.unk_id()
        self.special_tokens = {}
        for token in SPECIAL_TOKENS:
            i = self._sp.piece_to_id(token)
            if i == self.unk_id:
                raise TokenizerError(f"SentencePiece model lacks the special token {token!r}")
            self.special_tokens[token] = i
        self._newline_id = self._sp.piece_to_id(NEWLINE)
        if self._newline_id == self.unk_id:
            raise TokenizerError("SentencePiece model lacks the atomic newline symbol")
        n = self._sp.get_piece_size()
        self._fallback = np.zeros(n, dtype=bool)
        self._fallback[self.unk_id] = True
        byte_ids: dict[int, int] = {}
        for i in range(n):
            if self._sp.is_byte(i):
                self._fallback[i] = True
                byte_ids[int(self._sp.id_to_piece(i)[1:-1], 16)] = i
        # Without byte fallback a literal "▁" cannot round-trip; SentencePiece then decodes it as " ".
        marks = SPACE_MARK.encode("utf-8")
        self._space_mark_ids = [byte_ids[b] for b in marks] if len(byte_ids) == 256 else None

    @property
    def vocab_size(self) -> int:
        return self._sp.get_piece_size()

    def encode(self, text: str) -> list[int]:
        # Line by line: "\n" is atomic, so no piece spans it and the result equals encoding the whole
        # text, but SentencePiece's BPE is several times faster on many short inputs than on one long.
        lines = text.split(NEWLINE)
        encoded = self._sp.encode(lines, num_threads=1)
        out: list[int] = []
        for k, (line, ids) in enumerate(zip(lines, encoded, strict=True)):
            if k:
                out.append(self._newline_id)
            if SPACE_MARK in line and self._space_mark_ids is not None:
                ids = self._encode_with_space_marks(line)
            out.extend(ids)
        return out

    def _encode_with_space_marks(self, line: str) -> list[int]:
        out: list[int] = []
        for k, part in enumerate(line.split(SPACE_MARK)):
            if k:
                out.extend(self._space_mark_ids)
            if part:
                out.extend(self._sp.encode(part))
        return out

    def decode(self, ids: Sequence[int]) -> str:
        if isinstance(ids, np.ndarray):
            ids = ids.tolist()
        return self._sp.decode(list(ids))

    def token_to_id(self, piece: str) -> int | None:
        i = self._sp.piece_to_id(piece)
        if i == self.unk_id and piece != self._sp.id_to_piece(self.unk_id):
            return None
        return i

    def id_to_piece(self, i: int) -> str:
        if not 0 <= i < self.vocab_size:
            raise IndexError(f"token id {i} outside the vocabulary (size {self.vocab_size})")
        return self._sp.id_to_piece(i)

    def fallback_mask(self, ids: np.ndarray) -> np.ndarray:
        return self._fallback[ids]

    def _write_model(self, directory: Path) -> str:
        write_bytes_atomic(directory / MODEL_FILE, self._proto)
        return MODEL_FILE

    @classmethod
    def load(cls, directory: Path, meta: dict[str, Any]) -> BpeTokenizer:
        proto = read_verified_model(directory, meta, "SentencePiece model")
        return cls(proto, meta.get("normalize"))


def atomic_symbols(extra: Sequence[str]) -> list[str]:
    """Special tokens first (ids 1.., after <unk>), then the newline, then the configured extras."""
    out: list[str] = []
    for s in (*SPECIAL_TOKENS, NEWLINE, *extra):
        if s and s not in out:
            out.append(s)
    return out


def train_bpe(
    text_file: Path, tcfg: Any, seed: int, normalize_cfg: dict[str, Any] | None
) -> BpeTokenizer:
    """Train SentencePiece BPE on `text_file` (one training line per line) per the tokenizer section."""
    spm.set_random_generator_seed(seed)
    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            input=str(text_file),
            model_writer=model,
            model_type="bpe",
            vocab_size=tcfg.vocab_size,
            hard_vocab_limit=tcfg.hard_vocab_limit,
            character_coverage=tcfg.character_coverage,
            byte_fallback=tcfg.byte_fallback,
            split_digits=tcfg.split_digits,
            max_sentencepiece_length=tcfg.max_sentencepiece_length,
            max_sentence_length=tcfg.max_sentence_length,
            input_sentence_size=tcfg.input_sentence_size,
            shuffle_input_sentence=tcfg.shuffle_input_sentence,
            num_threads=tcfg.num_threads,
            user_defined_symbols=atomic_symbols(tcfg.user_defined_symbols),
            normalization_rule_name="identity",
            add_dummy_prefix=False,
            remove_extra_whitespaces=False,
            allow_whitespace_only_pieces=True,
            unk_id=0,
            bos_id=-1,
            eos_id=-1,
            pad_id=-1,
            minloglevel=1,
        )
    except RuntimeError as exc:
        raise TokenizerError(
            f"SentencePiece training failed (tokenizer.vocab_size={tcfg.vocab_size}, "
            f"hard_vocab_limit={tcfg.hard_vocab_limit}): {exc}"
        ) from None
    return BpeTokenizer(without_machine_paths(model.getvalue()), normalize_cfg)


def without_machine_paths(model_bytes: bytes) -> bytes:
    """The model with the trainer's input/output paths cleared.

    SentencePiece records them in the model file; ours are temporary directories, so without this
    two identical trainings would give different bytes, a different tokenizer hash, and a
    needless retrain of everything downstream."""
    from sentencepiece import sentencepiece_model_pb2

    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(model_bytes)
    proto.trainer_spec.ClearField("input")
    proto.trainer_spec.ClearField("model_prefix")
    return proto.SerializeToString()
