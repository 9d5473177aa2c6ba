"""Real Russian classics (../shared/data/corpus_ru): exact round trip on every file, atomic specials.

A small BPE is trained by the real stage on the first TRAIN_PREFIX characters of every file; every
file's first CHECK_PREFIX characters must then round-trip exactly (the whole files in the slow test).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from src.stage import StageRun
from src.tokenizers import SPECIAL_TOKENS, Tokenizer, load_tokenizer
from src.tokenizers.train import train_tokenizer

pytestmark = pytest.mark.real_data

TRAIN_PREFIX = 20_000
CHECK_PREFIX = 200_000


def read_text(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:  # one file is windows-1251 (corpus_ru/PROVENANCE.md)
        return raw.decode("cp1251")


@pytest.fixture(scope="module")
def corpus_files(shared_data: Path) -> list[Path]:
    root = shared_data / "corpus_ru"
    files = sorted(root.rglob("*.txt"))
    if not files:
        pytest.skip(f"no .txt files under {root}")
    return files


@pytest.fixture(scope="module")
def real_bpe_dir(corpus_files: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from src.config import load_config

    tmp = tmp_path_factory.mktemp("real_bpe")
    texts = [read_text(f)[:TRAIN_PREFIX] for f in corpus_files]
    pq.write_table(pa.table({"doc_id": [str(f) for f in corpus_files], "text": texts}),
                   tmp / "librus.parquet")
    cfg = load_config({"tracking": {"enabled": False}, "tokenizer": {
        "kind": "bpe", "vocab_size": 2000, "corpora": ["literature"],
        "literature_path": str(tmp / "librus.parquet"), "out_dir": str(tmp / "tokenizer"),
        "report_max_chars": 300_000}})
    train_tokenizer(cfg, StageRun("train_tokenizer", cfg, tracking_active=False))
    return tmp / "tokenizer"


@pytest.fixture(scope="module")
def real_bpe(real_bpe_dir: Path) -> Tokenizer:
    return load_tokenizer(real_bpe_dir)


def _assert_round_trips(tok: Tokenizer, files: list[Path], limit: int | None) -> None:
    bad = []
    for f in files:
        text = read_text(f)[:limit]
        if tok.decode(tok.encode(text)) != text:
            bad.append(f.name)
    assert not bad, f"round trip not exact for {len(bad)} files: {bad[:5]}"


def test_every_file_prefix_round_trips(real_bpe: Tokenizer, corpus_files: list[Path]) -> None:
    _assert_round_trips(real_bpe, corpus_files, CHECK_PREFIX)


@pytest.mark.slow
def test_every_whole_file_round_trips(real_bpe: Tokenizer, corpus_files: list[Path]) -> None:
    _assert_round_trips(real_bpe, corpus_files, None)


def test_special_tokens_atomic_inside_real_text(real_bpe: Tokenizer,
                                                corpus_files: list[Path]) -> None:
    text = read_text(corpus_files[0])[:2000]
    for token in SPECIAL_TOKENS:
        glued = text[:1000] + token + text[1000:]
        ids = real_bpe.encode(glued)
        assert ids.count(real_bpe.special_tokens[token]) == 1
        assert real_bpe.decode(ids) == glued


def test_report_on_held_out_real_text(real_bpe_dir: Path) -> None:
    import json

    report = json.loads((real_bpe_dir / "report.json").read_text())
    held = report["heldout"]
    assert not report["heldout_is_training_text"] and held["docs"] > 10
    assert held["roundtrip_rate"] == 1.0
    assert held["chars_per_token"] > 2.0  # a 2k BPE on Russian prose: about 3 chars per token
    assert held["fallback_rate"] < 1e-3  # byte fallback only for rare characters
    assert all(p["exact"] for p in report["roundtrip_probes"].values())


def test_tokenize_stage_on_real_text_decodes_back(real_bpe_dir: Path) -> None:
    import json

    import numpy as np
    import pyarrow.parquet as pq

    from src.config import load_config
    from src.tokenizers.encode import tokenize_corpus

    tmp = real_bpe_dir.parent
    cfg = load_config({"tracking": {"enabled": False}, "tokenizer": {
        "corpora": ["literature"], "literature_path": str(tmp / "librus.parquet"),
        "out_dir": str(real_bpe_dir)}, "tokenize": {
        "corpora": ["literature"], "tokenizer_dir": str(real_bpe_dir), "out_dir": str(tmp / "tokens"),
        "workers": 2, "chunk_chars": 200_000}})
    tokenize_corpus(cfg, StageRun("tokenize", cfg, tracking_active=False))
    meta = json.loads((tmp / "tokens" / "meta.json").read_text())
    tok = load_tokenizer(real_bpe_dir)
    decoded = []
    for split in meta["splits"].values():
        ids = np.memmap(tmp / "tokens" / split["file"], dtype=meta["dtype"], mode="r")
        decoded += tok.decode(ids).split("<|endoftext|>")[:-1]
    texts = pq.read_table(tmp / "librus.parquet").column("text").to_pylist()
    assert sorted(decoded) == sorted(t for t in texts if t.strip())
