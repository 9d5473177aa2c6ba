"""The reranker stage end to end on tiny samples: own backbone (train, metrics, export, resume), the
hf backbone on a tiny local BERT, and bad input named in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from omegaconf import DictConfig

from src.config import ConfigError, compose, load_config
from src.errors import InputError
from src.generation.reranker import load_reranker
from src.paths import PROJECT_ROOT
from src.stage import execute_stage
from src.tokenizers.char import CharTokenizer
from tests.models.test_cross_encoder import tiny_bert

WORDS = "hi how are you fine thanks the train is late why no ok what where".split()


def write_samples(directory: Path, n: int = 48) -> Path:
    """Counting lines: a positive continues the count, a swap negative runs it backwards."""
    rows = []
    for i in range(n):
        a, b = WORDS[i % len(WORDS)], WORDS[(i + 1) % len(WORDS)]
        positive = i % 2 == 0
        rows.append({"context": f"{a} {i}" if positive else f"{b} {i + 1}",
                     "candidate": f"{b} {i + 1}" if positive else f"{a} {i}",
                     "label": int(positive), "kind": "positive" if positive else "swap",
                     "file_id": f"f{i // 4}", "language": "en", "split": "val" if i >= n - 12 else "train"})
    directory.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), directory / "samples.parquet")
    return directory


def other_groups() -> list[str]:
    """Every config group but the ones this stage reads (others' interpolations need not resolve)."""
    defaults = yaml.safe_load((PROJECT_ROOT / "conf" / "config.yaml").read_text())["defaults"]
    names = [next(iter(d)) for d in defaults if isinstance(d, dict)]
    return [n for n in names if n not in {"tracking", "trainer", "reranker"}]


def reranker_config(tmp_path: Path, *overrides: str) -> DictConfig:
    return load_config(compose([
        *(f"~{g}" for g in other_groups()), "tracking.enabled=false",
        "trainer.enable_progress_bar=false", "trainer.num_threads=1",
        f"reranker.data_dir={tmp_path / 'data'}", f"reranker.tokenizer_dir={tmp_path / 'tok'}",
        f"reranker.ckpt_dir={tmp_path / 'ckpt'}", f"reranker.report_dir={tmp_path / 'report'}",
        f"reranker.export_dir={tmp_path / 'ckpt' / 'model'}",
        "reranker.model.block_size=48", "reranker.model.n_layer=1", "reranker.model.n_head=2",
        "reranker.model.n_embd=32", "reranker.max_steps=6", "reranker.warmup_steps=1",
        "reranker.micro_batch_size=8", "reranker.val_every=3", "reranker.save_every=3",
        "reranker.log_every=1", "reranker.rank_k=4", *overrides,
    ]))


@pytest.fixture
def setup(tmp_path: Path) -> Path:
    write_samples(tmp_path / "data")
    CharTokenizer("abcdefghijklmnopqrstuvwxyz0123456789 |").save(tmp_path / "tok")
    return tmp_path


def test_own_backbone_trains_reports_exports_and_resumes(setup: Path) -> None:
    tmp = setup
    summary = execute_stage("reranker", reranker_config(tmp))
    report = json.loads((tmp / "report" / "metrics.json").read_text())
    for key in ("val_loss", "accuracy", "roc_auc", "average_precision", "auc_swap", "mrr_at_4", "hit_at_1"):
        assert report[key] is not None, key
    assert report["steps"] == 6 and report["train_pairs"] == 36 and report["val_pairs"] == 12
    assert report["pos_weight"] == 1.0  # balanced classes
    assert summary.wrote["export_from_best"] == 1
    reranker = load_reranker(tmp / "ckpt" / "model")
    scores = reranker.score(["hi 0"], ["how 1", "what 9", "ok 3"])
    assert scores.shape == (3,) and ((scores > 0) & (scores < 1)).all()
    # the same command again: resumes the finished run, trains nothing, exports the same weights
    again = execute_stage("reranker", reranker_config(tmp))
    assert any("resumed from" in n for n in again.notes)
    assert again.wrote["optimizer_steps"] == 6
    assert (load_reranker(tmp / "ckpt" / "model").score(["hi 0"], ["how 1", "what 9", "ok 3"]) == scores).all()


def test_unbalanced_classes_get_a_positive_weight(setup: Path) -> None:
    tmp = setup
    table = pq.read_table(tmp / "data" / "samples.parquet").to_pylist()
    kept = [r for i, r in enumerate(table) if r["label"] == 1 or i % 4 == 1 or r["split"] == "val"]
    pq.write_table(pa.Table.from_pylist(kept), tmp / "data" / "samples.parquet")
    execute_stage("reranker", reranker_config(tmp, "reranker.max_steps=2", "reranker.val_every=2"))
    report = json.loads((tmp / "report" / "metrics.json").read_text())
    n_pos = report["train_positive_share"] * report["train_pairs"]
    assert report["pos_weight"] == pytest.approx((report["train_pairs"] - n_pos) / n_pos)


def test_hf_backbone_exports_a_cross_encoder(setup: Path) -> None:
    sentence_transformers = pytest.importorskip("sentence_transformers")
    tmp = setup
    tiny_bert(tmp / "bert")
    execute_stage("reranker", reranker_config(tmp, "reranker.backbone=hf", f"reranker.hf_dir={tmp / 'bert'}",
                                              "reranker.hf_max_length=32", "reranker.lr=1e-4"))
    pairs = [("hi 0", "how 1"), ("hi 0 | how 1", "are 2"), ("why", "no")]
    ours = load_reranker(tmp / "ckpt" / "model").score
    theirs = sentence_transformers.CrossEncoder(str(tmp / "ckpt" / "model"), device="cpu").predict(pairs)
    for (ctx, cand), expected in zip(pairs, theirs, strict=True):
        assert ours(ctx.split(" | "), [cand])[0] == pytest.approx(float(expected), abs=1e-5)


def test_bad_input_is_named(setup: Path) -> None:
    tmp = setup
    (tmp / "data" / "samples.parquet").write_bytes(b"garbage")
    with pytest.raises(InputError, match="samples.parquet"):
        execute_stage("reranker", reranker_config(tmp))
    with pytest.raises(ConfigError, match="reranker.hf_dir"):
        reranker_config(tmp, "reranker.backbone=hf")
    write_samples(tmp / "data")
    with pytest.raises(InputError, match="nope"):
        execute_stage("reranker", reranker_config(tmp, "reranker.backbone=hf", f"reranker.hf_dir={tmp / 'nope'}"))
