"""Our tokenizers as a `tokenizers` (Rust) tokenizer that transformers loads as PreTrainedTokenizerFast.

BPE (SentencePiece): the vocabulary and its pieces' order become a byte-fallback BPE whose merges
are ranked by the merged piece's SentencePiece score, which is how SentencePiece picks merges; the
user-defined symbols (special tokens, the newline, configured extras) become added tokens matched
before BPE, as SentencePiece matches them; spaces become U+2581 as SentencePiece escapes them (no
dummy prefix: ours is trained without one). One known difference: a literal U+2581 in the text,
which our encoder spells as its three byte pieces, is read by this tokenizer as a space.

Char: a BPE with no merges over the character vocabulary is exactly a character lookup; an unseen
character becomes <unk> as in ours (which decodes it as U+FFFD, transformers as "<unk>").
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from src.exporting.gpt2 import ExportError
from src.tokenizers.base import CHAT_TOKENS, EOT, SPECIAL_TOKENS, UNK

SPACE_MARK = "\u2581"
# SentencePiece ModelProto piece types.
SP_NORMAL, SP_UNKNOWN, SP_CONTROL, SP_USER_DEFINED, SP_UNUSED, SP_BYTE = 1, 2, 3, 4, 5, 6


def sentencepiece_proto(tokenizer: Any) -> Any:
    """The SentencePiece ModelProto of a BPE tokenizer (read back from its saved model file)."""
    from sentencepiece import sentencepiece_model_pb2

    from src.tokenizers.base import read_meta

    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save(Path(tmp))
        data = (Path(tmp) / read_meta(Path(tmp))["model_file"]).read_bytes()
    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(data)
    return proto


def sentencepiece_merges(pieces: list[tuple[str, float, int]]) -> list[tuple[str, str]]:
    """BPE merges for SentencePiece `pieces` (text, score, type): every split of a normal piece into
    two vocabulary pieces, ranked by the merged piece's score (higher first), then by the parts' ids
    (SentencePiece prefers the leftmost pair among equals, which BPE's rank order reproduces)."""
    ids = {text: i for i, (text, _, kind) in enumerate(pieces) if kind == SP_NORMAL}
    ranked: list[tuple[float, int, int, str, str]] = []
    for text, score, kind in pieces:
        if kind != SP_NORMAL or len(text) < 2:
            continue
        for cut in range(1, len(text)):
            left, right = text[:cut], text[cut:]
            if left in ids and right in ids:
                ranked.append((-score, ids[left], ids[right], left, right))
    ranked.sort()
    return [(left, right) for *_, left, right in ranked]


def _bpe_backend(tokenizer: Any) -> tuple[Any, list[tuple[str, bool]]]:
    from tokenizers import Tokenizer, decoders, models, normalizers

    proto = sentencepiece_proto(tokenizer)
    spec = proto.normalizer_spec
    if spec.add_dummy_prefix or spec.remove_extra_whitespaces or spec.name not in ("identity", ""):
        raise ExportError(f"the SentencePiece model normalizes its input ({spec.name}, dummy prefix "
                          f"{spec.add_dummy_prefix}); the export reproduces only identity normalization")
    pieces = [(p.piece, p.score, p.type) for p in proto.pieces]
    vocab = {text: i for i, (text, _, _) in enumerate(pieces)}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=sentencepiece_merges(pieces), unk_token=UNK,
                                   byte_fallback=proto.trainer_spec.byte_fallback, fuse_unk=True))
    backend.normalizer = normalizers.Replace(" ", SPACE_MARK)
    backend.decoder = decoders.Sequence([decoders.Replace(SPACE_MARK, " "), decoders.ByteFallback(),
                                         decoders.Fuse()])
    added = [(text, text in SPECIAL_TOKENS) for text, _, kind in pieces
             if kind in (SP_USER_DEFINED, SP_CONTROL)]
    return backend, added


def _char_backend(tokenizer: Any) -> tuple[Any, list[tuple[str, bool]]]:
    from tokenizers import Tokenizer, decoders, models

    pieces = [tokenizer.id_to_piece(i) for i in range(tokenizer.vocab_size)]
    vocab = {text: i for i, text in enumerate(pieces)}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=UNK, fuse_unk=False))
    backend.decoder = decoders.Fuse()
    return backend, [(t, True) for t in SPECIAL_TOKENS]


def build_hf_tokenizer(tokenizer: Any, chat_template: str, max_length: int) -> Any:
    """A transformers PreTrainedTokenizerFast that encodes as `tokenizer` does (no BOS/EOS added),
    with the special tokens registered and the chat template attached."""
    from transformers import PreTrainedTokenizerFast

    from tokenizers import AddedToken

    if tokenizer.kind == "bpe":
        backend, added = _bpe_backend(tokenizer)
    elif tokenizer.kind == "char":
        backend, added = _char_backend(tokenizer)
    else:
        raise ExportError(f"tokenizer kind {tokenizer.kind!r} has no transformers export")
    backend.add_tokens([AddedToken(t, special=special, normalized=False, single_word=False,
                                   lstrip=False, rstrip=False) for t, special in added if not special])
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t, special in added
                                if special])
    hf = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token=UNK, eos_token=EOT, pad_token=EOT,
        additional_special_tokens=list(CHAT_TOKENS), model_max_length=max_length,
        clean_up_tokenization_spaces=False, chat_template=chat_template)
    mismatched = {t: (hf.convert_tokens_to_ids(t), i) for t, i in tokenizer.special_tokens.items()
                  if hf.convert_tokens_to_ids(t) != i}
    if mismatched:  # a bug guard: added tokens must keep the ids the model was trained with
        raise ExportError(f"special token ids differ in the transformers tokenizer: {mismatched}")
    return hf
