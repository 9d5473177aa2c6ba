"""SentencePiece BPE: exact round trip, atomic symbols, save/load, the report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from src.tokenizers import SPECIAL_TOKENS, TokenizerError, load_tokenizer
from src.tokenizers.report import ROUNDTRIP_PROBES

TRICKY = [
    "",
    "\n",
    "\n\nдве пустые строки сверху\n\n",
    "  два пробела в начале и три в конце   ",
    "— Реплика, — сказал он. — «Цитата»… и т. д.",
    "Ça ira, mademoiselle! Schön, Fräulein. Veni, vidi, vici.",
    "табуляция\tи\r\nвозврат каретки\r",
    "▁символ▁SentencePiece▁ ▁",
    "нули\x00и эмодзи 🙂 и 漢字 и ѣ",
    "цифры 1234567890 и 3,14",
    "<|system|>система<|end|>\n<|user|>вопрос<|end|>\n<|assistant|>ответ<|end|><|endoftext|>",
    "<|nope|> <|user <|end|",
]


@pytest.mark.parametrize("text", TRICKY + list(ROUNDTRIP_PROBES.values()))
def test_round_trip_is_exact(bpe_dir: Path, text: str) -> None:
    tok = load_tokenizer(bpe_dir)
    assert tok.decode(tok.encode(text)) == text
    assert tok.encode_array(text).tolist() == tok.encode(text)


def test_interface(bpe_dir: Path) -> None:
    tok = load_tokenizer(bpe_dir)
    assert tok.kind == "bpe"
    assert tok.eot_id == tok.special_tokens["<|endoftext|>"]
    assert set(SPECIAL_TOKENS) <= set(tok.special_tokens)
    assert tok.token_to_id("<|user|>") == tok.special_tokens["<|user|>"]
    assert tok.token_to_id("такого куска точно нет в словаре") is None
    assert tok.id_to_piece(tok.eot_id) == "<|endoftext|>"
    with pytest.raises(IndexError):
        tok.id_to_piece(tok.vocab_size)
    assert tok.normalize("  как есть ") == "  как есть "  # normalize_on_encode is off by default


def test_atomic_symbols(bpe_dir: Path) -> None:
    tok = load_tokenizer(bpe_dir)
    for token in SPECIAL_TOKENS:
        ids = tok.encode(f"слово{token}слово")
        assert ids.count(tok.special_tokens[token]) == 1
        assert tok.encode(token) == [tok.special_tokens[token]]
    for symbol in ["\n", "—", "«", "»", "…"]:
        i = tok.token_to_id(symbol)
        assert i is not None and tok.encode(f"а{symbol}б").count(i) == 1
    # No dummy prefix: a special token at the start is the first id, not a space piece.
    assert tok.encode("<|user|>да")[0] == tok.special_tokens["<|user|>"]


def test_unseen_characters_use_byte_fallback(bpe_dir: Path) -> None:
    tok = load_tokenizer(bpe_dir)
    ids = np.array(tok.encode("漢"))
    assert len(ids) == 3 and tok.fallback_mask(ids).all()
    assert not tok.fallback_mask(np.array(tok.encode("Утром"))).any()


def test_saved_files_and_report(bpe_dir: Path, tmp_path: Path) -> None:
    meta = json.loads((bpe_dir / "tokenizer.json").read_text())
    assert meta["kind"] == "bpe" and meta["model_file"] == "tokenizer.model"
    report = json.loads((bpe_dir / "report.json").read_text())
    assert report["heldout"]["roundtrip_rate"] == 1.0
    assert report["heldout"]["chars_per_token"] > 1.0
    assert all(p["exact"] for p in report["roundtrip_probes"].values())
    assert all(report["special_tokens_atomic"].values())
    assert "chars per token" in (bpe_dir / "report.md").read_text()

    tok = load_tokenizer(bpe_dir)
    tok.save(tmp_path / "export")
    again = load_tokenizer(tmp_path / "export")
    assert again.sha256 == tok.sha256 == meta["sha256"]
    assert again.encode("Привет, мир") == tok.encode("Привет, мир")


def test_stale_or_missing_directory_is_a_clear_error(bpe_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(TokenizerError, match="tokenizer.json"):
        load_tokenizer(tmp_path)
    load_tokenizer(bpe_dir).save(tmp_path)
    (tmp_path / "tokenizer.model").write_bytes(b"garbage")
    with pytest.raises(TokenizerError, match="sha256"):
        load_tokenizer(tmp_path)


def test_training_twice_gives_identical_files(tmp_path: Path, fx) -> None:
    """Same corpora and config -> byte-identical tokenizer (and hash), wherever it was trained:
    DVC would otherwise see a new tokenizer and retrain everything downstream."""
    from src.stage import StageRun
    from src.tokenizers.train import train_tokenizer

    hashes = []
    for name in ("first", "second"):
        root = tmp_path / name
        fx.write_literature(root / "clean" / "librus.parquet", fx.make_documents(30, seed=5))
        fx.write_subtitles(root / "clean" / "subtitles.parquet", fx.make_subtitle_files(6, seed=5))
        cfg = fx.tokenizer_cfg(root, vocab_size=400)
        train_tokenizer(cfg, StageRun("train_tokenizer", cfg, tracking_active=False))
        hashes.append(load_tokenizer(root / "tokenizer").sha256)
        model_bytes = (root / "tokenizer" / "tokenizer.model").read_bytes()
        assert str(tmp_path).encode() not in model_bytes  # no machine path inside the model
    assert hashes[0] == hashes[1]
    # The whole folder is one DVC output: every file in it (reports included: no timings, no
    # paths) must match, or a fresh clone's `dvc repro` rewrites dvc.lock.
    first, second = tmp_path / "first" / "tokenizer", tmp_path / "second" / "tokenizer"
    names = sorted(p.name for p in first.iterdir())
    assert names == sorted(p.name for p in second.iterdir())
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
