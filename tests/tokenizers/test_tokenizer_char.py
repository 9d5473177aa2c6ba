"""Char-level tokenizer: vocabulary from counts, <unk> for unseen characters, atomic special tokens."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from src.tokenizers import SPECIAL_TOKENS, TokenizerError, load_tokenizer
from src.tokenizers.char import CharTokenizer, count_chars, train_char


def _tok(text: str = "Мама мыла раму.\n— Да!", **kw) -> CharTokenizer:
    return train_char(count_chars([text]), kw.get("vocab_size", 0), kw.get("min_count", 1), None)


def test_ids_layout_and_round_trip() -> None:
    tok = _tok()
    assert tok.id_to_piece(0) == "<unk>" and tok.unk_id == 0
    assert [tok.special_tokens[t] for t in SPECIAL_TOKENS] == [1, 2, 3, 4, 5]
    assert tok.vocab_size == 1 + len(SPECIAL_TOKENS) + len(set("Мама мыла раму.\n— Да!"))
    text = "Мама мыла маму.\n\n— Да! — Да!"
    assert tok.decode(tok.encode(text)) == text
    assert tok.token_to_id("М") is not None and tok.token_to_id("Ж") is None


def test_special_tokens_are_atomic_and_not_in_char_vocab() -> None:
    tok = _tok("<|user|> ага <|end|>")
    assert "<" not in tok.chars and "|" not in tok.chars  # the training text's tokens are not chars
    ids = tok.encode("ага<|user|>ага<|endoftext|>")
    assert ids.count(tok.special_tokens["<|user|>"]) == 1 and ids[-1] == tok.eot_id
    assert tok.decode(ids) == "ага<|user|>ага<|endoftext|>"


def test_unseen_characters_become_unk_and_are_counted() -> None:
    tok = _tok()
    ids = np.array(tok.encode("Мама, Zürich!"))
    # Latin letters and the comma never occurred (the training "р" is Cyrillic); " " and "!" did.
    assert int(tok.fallback_mask(ids).sum()) == 7
    assert tok.unknown_chars("Мама, Zürich!") == dict.fromkeys(",Zürich", 1)
    assert tok.decode(tok.encode("Z")) == "\ufffd"


def test_vocab_cap_and_min_count() -> None:
    counts = count_chars(["аааабббв"])
    assert train_char(counts, 0, 2, None).chars == ["а", "б"]
    assert train_char(counts, 1 + len(SPECIAL_TOKENS) + 1, 1, None).chars == ["а"]
    with pytest.raises(TokenizerError, match="vocab_size"):
        train_char(counts, 3, 1, None)
    with pytest.raises(TokenizerError, match="no characters"):
        train_char(counts, 0, 100, None)


def test_save_load(tmp_path: Path) -> None:
    tok = _tok()
    tok.save(tmp_path)
    again = load_tokenizer(tmp_path)
    assert isinstance(again, CharTokenizer) and again.sha256 == tok.sha256
    assert again.encode("Мама") == tok.encode("Мама")
