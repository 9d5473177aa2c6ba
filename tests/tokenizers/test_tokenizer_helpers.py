"""Small pieces: line cutting for SentencePiece training, chunk cutting, corpus reading, split hash."""

from __future__ import annotations

from pathlib import Path

import pytest

from src.stage import StageRun
from src.tokenizers.corpus import CorpusError, corpus_sources, iter_documents
from src.tokenizers.encode import cut_at_newlines
from src.tokenizers.split import is_val, split_score
from src.tokenizers.train import TextSample, cut_line, train_tokenizer


def test_cut_line_keeps_every_character_and_respects_the_byte_limit() -> None:
    line = " ".join(["слово"] * 500)
    pieces = cut_line(line, 64)
    assert "".join(pieces) == line
    assert all(len(p.encode()) <= 64 for p in pieces)
    assert all(p.startswith(" ") for p in pieces[1:])  # cut just before a space
    assert cut_line("коротко", 64) == ["коротко"]
    assert "".join(cut_line("я" * 100, 16)) == "я" * 100  # no space: hard cut


def test_cut_at_newlines_only_cuts_after_newlines() -> None:
    text = "\n".join(f"строка {k}" for k in range(100)) + "\n" + "x" * 50
    parts = list(cut_at_newlines(text, 40))
    assert "".join(parts) == text
    assert all(p.endswith("\n") for p in parts[:-1])
    assert list(cut_at_newlines("без переводов строки " * 10, 5)) == ["без переводов строки " * 10]


def test_text_sample_is_bounded() -> None:
    sample = TextSample(10)
    for text in ["абвгд", "еёжзий", "клм"]:
        sample.add(text)
    assert sample.texts == ["абвгд", "еёжзи"] and sample.chars == 10


def test_split_score_depends_on_id_and_salt_only() -> None:
    assert split_score("literature:1") == split_score("literature:1")
    assert split_score("literature:1") != split_score("literature:1", salt="b")
    scores = [split_score(f"doc{k}") for k in range(2000)]
    assert 0.08 < sum(s < 0.1 for s in scores) / len(scores) < 0.12
    assert is_val("x", 1.0) and not is_val("x", 0.0)


def test_subtitles_grouping_and_language_filter(fx, tmp_path: Path) -> None:
    files = {"b.srt": ["второй", "файл"], "a.srt": ["первый", "", "файл"]}
    fx.write_subtitles(tmp_path / "clean" / "subtitles.parquet", files)
    cfg = fx.tokenizer_cfg(tmp_path, corpora=["subtitles"])
    docs = list(iter_documents(corpus_sources(cfg.tokenizer, ["subtitles"])))
    assert [(d.doc_id, d.text) for d in docs] == [
        ("subtitles:b.srt", "второй\nфайл"), ("subtitles:a.srt", "первый\n\nфайл")]
    cfg = fx.tokenizer_cfg(tmp_path, corpora=["subtitles"], subtitles_languages=["en"])
    assert list(iter_documents(corpus_sources(cfg.tokenizer, ["subtitles"]))) == []


def test_missing_column_is_named(fx, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "clean" / "librus.parquet"
    path.parent.mkdir(parents=True)
    pq.write_table(pa.table({"doc_id": ["1"], "body": ["текст"]}), path)
    cfg = fx.tokenizer_cfg(tmp_path, corpora=["literature"])
    with pytest.raises(CorpusError, match=r"missing column\(s\) \['text'\]"):
        list(iter_documents(corpus_sources(cfg.tokenizer, ["literature"])))


def test_all_documents_held_out_still_trains(fx, tmp_path: Path) -> None:
    fx.write_literature(tmp_path / "clean" / "librus.parquet", fx.make_documents(5))
    cfg = fx.tokenizer_cfg(tmp_path, corpora=["literature"], heldout_fraction=1.0)
    run = StageRun("train_tokenizer", cfg, tracking_active=False)
    train_tokenizer(cfg, run)
    assert any("all 5 documents are held out" in n for n in run.summary.notes)
    assert (tmp_path / "tokenizer" / "tokenizer.model").is_file()


def test_normalize_on_encode_is_stored_with_the_tokenizer(fx, corpora: Path) -> None:
    from src.text.normalize import normalize_text
    from src.tokenizers import load_tokenizer

    cfg = fx.tokenizer_cfg(corpora, kind="char", normalize_on_encode=True)
    train_tokenizer(cfg, StageRun("train_tokenizer", cfg, tracking_active=False))
    tok = load_tokenizer(corpora / "tokenizer")
    typed = "Ёлка...  --  \u00a0да"
    assert tok.normalize_cfg is not None
    assert tok.normalize(typed) == normalize_text(typed, cfg.normalize)
    assert tok.normalize(typed) != typed  # the default normalize section changes this text...
    assert tok.encode(typed) != tok.encode(tok.normalize(typed))  # ...and encode alone does not
