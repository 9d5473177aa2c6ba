"""Stages train_tokenizer + tokenize end to end on small parquet fixtures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from src.stage import StageRun, execute_stage
from src.tokenizers import load_tokenizer
from src.tokenizers.corpus import CorpusError
from src.tokenizers.encode import token_dtype, tokenize_corpus
from src.tokenizers.split import assign_splits
from src.tokenizers.train import train_tokenizer


def _run(fn, cfg) -> StageRun:
    run = StageRun(fn.__name__, cfg, tracking_active=False)
    fn(cfg, run)
    return run


def _docs_by_split(tmp: Path) -> dict[str, list[list[int]]]:
    """Each split's memmap cut at the end-of-text ids: one id list per document."""
    meta = json.loads((tmp / "tokens" / "meta.json").read_text())
    out = {}
    for name, split in meta["splits"].items():
        ids = np.memmap(tmp / "tokens" / split["file"], dtype=meta["dtype"], mode="r")
        assert len(ids) == split["n_tokens"]
        ends = np.flatnonzero(ids == meta["eot_id"])
        assert len(ends) == split["n_docs"] and (not len(ids) or ends[-1] == len(ids) - 1)
        starts = np.concatenate([[0], ends[:-1] + 1])
        out[name] = [ids[s:e].tolist() for s, e in zip(starts, ends, strict=True)]
    return out


def _expected_docs(texts: list[str], subs: dict[str, list[str]], val_fraction: float = 0.1):
    docs = {f"literature:{i}": t for i, t in enumerate(texts)}
    docs.update({f"subtitles:{f}": "\n".join(lines) for f, lines in sorted(subs.items())})
    splits, _ = assign_splits([d for d, t in docs.items() if t.strip()], val_fraction)
    return docs, splits


def test_end_to_end_bpe_memmaps_decode_to_documents(fx, tmp_path: Path) -> None:
    texts = fx.make_documents(30, seed=5) + ["   \n\t "]  # the last one is whitespace only
    subs = fx.make_subtitle_files(8, seed=5)
    fx.write_literature(tmp_path / "clean" / "librus.parquet", texts)
    fx.write_subtitles(tmp_path / "clean" / "subtitles.parquet", subs, shuffle=True)
    cfg = fx.tokenizer_cfg(tmp_path)
    _run(train_tokenizer, cfg)
    run = _run(tokenize_corpus, cfg)

    assert run.summary.dropped == {"whitespace_only_doc": 1}
    assert any("sorted in memory" in n for n in run.summary.notes)
    meta = json.loads((tmp_path / "tokens" / "meta.json").read_text())
    tok = load_tokenizer(tmp_path / "tokenizer")
    assert meta["vocab_size"] == tok.vocab_size and meta["dtype"] == "uint16"
    assert meta["tokenizer"] == {"kind": "bpe", "dir": str(tmp_path / "tokenizer"),
                                 "sha256": tok.sha256}
    docs, splits = _expected_docs(texts, subs)
    decoded = _docs_by_split(tmp_path)
    for name in ("train", "val"):
        want = sorted(t for d, t in docs.items() if splits.get(d) == name)
        assert sorted(tok.decode(ids) for ids in decoded[name]) == want
        assert meta["splits"][name]["n_bytes"] == sum(len(t.encode()) for t in want)
    report = json.loads((tmp_path / "tokens" / "report.json").read_text())
    assert report["dropped"] == {"whitespace_only_doc": 1}


def test_output_independent_of_workers_and_chunking(fx, corpora: Path) -> None:
    base = fx.tokenizer_cfg(corpora)
    _run(train_tokenizer, base)
    outputs = []
    for workers, chunk in [(0, 100_000), (2, 300)]:
        cfg = fx.tokenizer_cfg(corpora)
        cfg = type(cfg)({**cfg, "tokenize": {**cfg.tokenize, "workers": workers,
                                             "chunk_chars": chunk}})
        _run(tokenize_corpus, cfg)
        outputs.append([(corpora / "tokens" / f).read_bytes() for f in ("train.bin", "val.bin")])
    assert outputs[0] == outputs[1]


def test_split_is_stable_when_documents_are_added(fx, tmp_path: Path) -> None:
    old = fx.make_documents(40, seed=7)
    new = fx.make_documents(40, seed=8)
    before, _ = assign_splits([f"literature:{i}" for i in range(40)], 0.1)
    after, _ = assign_splits([f"literature:{i}" for i in range(80)], 0.1)
    assert all(after[d] == s for d, s in before.items())
    assert 0 < sum(s == "val" for s in after.values()) < 80

    results = []
    for texts in (old, old + new):
        fx.write_literature(tmp_path / "clean" / "librus.parquet", texts)
        cfg = fx.tokenizer_cfg(tmp_path, corpora=["literature"], kind="char")
        _run(train_tokenizer, cfg)
        _run(tokenize_corpus, cfg)
        tok = load_tokenizer(tmp_path / "tokenizer")
        results.append({n: {tok.decode(d) for d in docs} for n, docs in _docs_by_split(tmp_path).items()})
    for name in ("train", "val"):
        assert {t for t in results[1][name] if t in old} == results[0][name]


def test_uint32_token_files(fx, corpora: Path) -> None:
    assert token_dtype(65535, "auto") == np.uint16 and token_dtype(65536, "auto") == np.uint32
    cfg = fx.tokenizer_cfg(corpora, kind="char")
    cfg = type(cfg)({**cfg, "tokenize": {**cfg.tokenize, "dtype": "uint32"}})
    _run(train_tokenizer, cfg)
    _run(tokenize_corpus, cfg)
    meta = json.loads((corpora / "tokens" / "meta.json").read_text())
    assert meta["dtype"] == "uint32"
    train = meta["splits"]["train"]
    assert (corpora / "tokens" / "train.bin").stat().st_size == 4 * train["n_tokens"]
    tok = load_tokenizer(corpora / "tokenizer")
    assert all("Утром" in tok.decode(d) or d for d in _docs_by_split(corpora)["train"])


def test_char_tokenizer_counts_unseen_characters(fx, tmp_path: Path) -> None:
    fx.write_literature(tmp_path / "clean" / "librus.parquet", fx.make_documents(20, seed=2))
    fx.write_subtitles(tmp_path / "clean" / "subtitles.parquet", {"a.srt": ["Hej, jak się masz?"]})
    cfg = fx.tokenizer_cfg(tmp_path, kind="char", corpora=["literature"])
    _run(train_tokenizer, cfg)
    cfg = type(cfg)({**cfg, "tokenize": {**cfg.tokenize, "corpora": ["literature", "subtitles"]}})
    run = _run(tokenize_corpus, cfg)
    report = json.loads((tmp_path / "tokens" / "report.json").read_text())
    assert report["unknown_chars"]["j"] == 2 and report["unknown_chars"]["ę"] == 1
    assert run.summary.dropped["unknown_chars_encoded_as_unk"] == report["unknown_chars_total"]


def test_tiny_corpus_falls_back_and_says_so(fx, tmp_path: Path) -> None:
    fx.write_literature(tmp_path / "clean" / "librus.parquet", ["Одна-единственная строка."])
    cfg = fx.tokenizer_cfg(tmp_path, kind="char", corpora=["literature"], heldout_fraction=0.0)
    _run(train_tokenizer, cfg)
    cfg = type(cfg)({**cfg, "tokenize": {**cfg.tokenize, "val_fraction": 0.1}})
    run = _run(tokenize_corpus, cfg)
    meta = json.loads((tmp_path / "tokens" / "meta.json").read_text())
    assert meta["splits"]["train"]["n_docs"] == meta["splits"]["val"]["n_docs"] == 1
    assert any("both train and val" in n for n in run.summary.notes)

    splits, notes = assign_splits(["a", "b"], 1e-9)
    assert sorted(splits.values()) == ["train", "val"] and "moved" in notes[0]


def test_bad_input_gives_clear_errors(fx, tmp_path: Path) -> None:
    cfg = fx.tokenizer_cfg(tmp_path, corpora=["literature"])
    with pytest.raises(CorpusError, match="tokenizer.literature_path"):
        _run(train_tokenizer, cfg)
    fx.write_literature(tmp_path / "clean" / "librus.parquet", [" ", "\n\n"])
    with pytest.raises(CorpusError, match="empty corpus"):
        _run(train_tokenizer, cfg)
    with pytest.raises(CorpusError, match="unknown corpus 'dialogue'"):
        _run(train_tokenizer, fx.tokenizer_cfg(tmp_path, corpora=["dialogue"]))
    assert not (tmp_path / "tokenizer").exists()  # nothing half-written


def test_execute_stage_without_tracking(fx, corpora: Path) -> None:
    cfg = fx.tokenizer_cfg(corpora)
    summary = execute_stage("train_tokenizer", cfg)
    assert summary.wrote["vocab_size"] > 0
    summary = execute_stage("tokenize", cfg)
    assert summary.wrote["train_tokens"] > 0 and summary.wrote["val_docs"] > 0


def test_report_numbers_reach_mlflow(fx, corpora: Path, tmp_tracking_uri: str) -> None:
    import mlflow

    from src.config import load_config

    base = fx.tokenizer_cfg(corpora)
    cfg = load_config({**base, "tracking": {**base.tracking, "enabled": True, "uri": tmp_tracking_uri}})
    execute_stage("train_tokenizer", cfg)
    execute_stage("tokenize", cfg)
    mlflow.set_tracking_uri(tmp_tracking_uri)
    prefix = cfg.tracking.experiment_prefix
    (trained,) = mlflow.search_runs(experiment_names=[f"{prefix}train_tokenizer"], output_format="list")
    assert trained.data.metrics["tokenizer.roundtrip_rate"] == 1.0
    assert trained.data.metrics["tokenizer.chars_per_token"] > 1.0
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(trained.info.run_id)}
    assert {"report.json", "report.md", "tokenizer.json"} <= artifacts
    (tokenized,) = mlflow.search_runs(experiment_names=[f"{prefix}tokenize"], output_format="list")
    assert tokenized.data.metrics["tokens.train.n_tokens"] > 0
