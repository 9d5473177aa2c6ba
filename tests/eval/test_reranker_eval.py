"""evaluate_reranker: figures worked out by hand for a judge whose scores are known, the same
figures from a real (tiny, untrained) exported reranker, and one-line errors for missing inputs."""

from __future__ import annotations

import math
import zlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from src.errors import InputError
from src.eval import reranker_eval
from src.eval.reranker_eval import evaluate_reranker, score_pairs
from src.generation.reranker import Reranker, export_own
from src.training.reranker_metrics import ranking_groups, ranking_metrics
from tests.models.test_cross_encoder import own_model

# The judge's probability for each candidate line, whatever the context (others: from a hash of the line).
KNOWN = {"a3": 0.9, "b3": 0.3, "s1": 0.4, "o1": 0.1, "s2": 0.2, "a1": 0.2, "b1": 0.6, "t1": 0.99}
ROWS = [  # context, candidate, label, kind, file_id, language, split
    ("a1 | a2", "a3", 1, "positive", "A", "en", "val"),
    ("b1 | b2", "b3", 1, "positive", "B", "en", "val"),
    ("a9 | a8", "s1", 0, "swap", "A", "en", "val"),
    ("b7", "o1", 0, "other_file", "B", "en", "val"),
    ("b9 | b8", "s2", 0, "swap", "B", "en", "val"),
    ("t0", "t1", 0, "swap", "T", "en", "train"),  # trained on: never part of the figures
]


class KnownJudge(torch.nn.Module):
    """A cross-encoder stand-in whose logit is that of KNOWN[candidate]."""

    def __init__(self) -> None:
        super().__init__()
        self.unused = torch.nn.Parameter(torch.zeros(1))  # .to(dtype) needs a parameter to act on

    def pair_batch(self, contexts: list[str], candidates: list[str]) -> dict[str, torch.Tensor]:
        p = torch.tensor([KNOWN.get(c, judged(c)) for c in candidates], dtype=torch.float64)
        return {"logit": torch.log(p / (1 - p)).float()}

    def forward(self, logit: torch.Tensor) -> torch.Tensor:
        return logit


def judged(line: str) -> float:
    return (zlib.crc32(line.encode()) % 997 + 1) / 999


def write_samples(path: Path, rows: list[tuple]) -> Path:
    names = ("context", "candidate", "label", "kind", "file_id", "language", "split")
    pq.write_table(pa.table({n: [r[i] for r in rows] for i, n in enumerate(names)}), path)
    return path


@pytest.fixture
def known_judge(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reranker_eval, "load_reranker", lambda *a, **k: Reranker(KnownJudge()))


def test_figures_by_hand(tmp_path: Path, known_judge: None) -> None:
    m = evaluate_reranker(tmp_path / "rr", write_samples(tmp_path / "s.parquet", ROWS), k=2, batch_size=2)
    # labels 1 1 0 0 0, scores .9 .3 .4 .1 .2: the positive .3 loses only to the swap .4 (5 of 6 pairs)
    assert m["n"] == m["n_val"] == 5 and m["n_by_kind"] == {"other_file": 1, "positive": 2, "swap": 2}
    assert m["accuracy"] == pytest.approx(4 / 5)
    assert m["roc_auc"] == pytest.approx(5 / 6)
    assert m["average_precision"] == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    assert m["auc_by_kind"] == {"swap": pytest.approx(3 / 4), "other_file": pytest.approx(1.0)}
    # k=2: each positive against the first line of its context: a3 .9 > a1 .2 (rank 1), b3 .3 < b1 .6 (rank 2)
    assert m["k"] == 2 and m["rank_groups"] == 2
    assert m["mrr_at_k"] == pytest.approx((1 + 1 / 2) / 2) and m["hit_at_1"] == pytest.approx(1 / 2)
    assert m["scores_by_kind"]["positive"] == pytest.approx([0.9, 0.3], abs=1e-6)
    assert sorted(m["scores_by_kind"]["swap"]) == pytest.approx([0.2, 0.4], abs=1e-6)


def test_caps_on_rows_groups_and_kept_scores(tmp_path: Path, known_judge: None) -> None:
    m = evaluate_reranker(tmp_path / "rr", write_samples(tmp_path / "s.parquet", ROWS), k=2, max_groups=1,
                          max_rows=3, scores_cap=1, seed=3)
    assert m["n"] == 3 and m["n_val"] == 5 and sum(m["n_by_kind"].values()) == 3
    assert m["rank_groups"] == 1 and m["mrr_at_k"] == pytest.approx(1.0)  # the first positive: a3 ranks first
    assert all(len(v) == 1 for v in m["scores_by_kind"].values())


def test_capped_groups_are_the_first_groups_training_makes(tmp_path: Path, known_judge: None) -> None:
    rows = [(f"{f}{i} | {f}{i + 1}", f"{f}{i + 2}", 1, "positive", f, "en", "val") for f in "PQRS" for i in range(4)]
    rows += [(f"{f}x{i}", f"{f}n{i}", 0, kind, f, "en", "val") for f in "PQRS" for i, kind in
             enumerate(["swap", "two_ahead", "markov"])]
    rows.sort(key=lambda r: zlib.crc32(r[1].encode()))  # positives and negatives interleaved
    cols = list(zip(*rows, strict=True))
    full = ranking_groups(cols[0], cols[1], cols[2], cols[4], cols[5], 5, 7, kinds=cols[3])
    for cap in (1, 6, 100):
        m = evaluate_reranker(tmp_path / "rr", write_samples(tmp_path / "s.parquet", rows), k=5, max_groups=cap,
                              seed=7)
        expected = ranking_metrics([[judged(c) for c in g.candidates] for g in full[:cap]], 5)
        assert m["rank_groups"] == min(cap, len(full)) == expected["rank_groups"]
        assert m["mrr_at_k"] == pytest.approx(expected["mrr_at_5"], abs=1e-6)
        assert m["hit_at_1"] == pytest.approx(expected["hit_at_1"])


def test_one_class_gives_none_not_nan(tmp_path: Path, known_judge: None) -> None:
    rows = [r for r in ROWS if r[2] == 1]
    m = evaluate_reranker(tmp_path / "rr", write_samples(tmp_path / "s.parquet", rows), k=2)
    assert m["roc_auc"] is None and m["average_precision"] is None and m["auc_by_kind"] == {}
    assert m["accuracy"] == pytest.approx(1 / 2)


def test_a_real_exported_reranker(tmp_path: Path) -> None:
    model = own_model()
    export_own(model, model.tokenizer, tmp_path / "rr")
    rows = ROWS + [("c1 | c2 | c3", "c4", 1, "positive", "C", "en", "val"),
                   ("c5", "c6", 0, "two_ahead", "C", "en", "val")]
    m = evaluate_reranker(tmp_path / "rr", write_samples(tmp_path / "s.parquet", rows), k=4, batch_size=3)
    assert m["n"] == 7 and set(m["auc_by_kind"]) == {"swap", "other_file", "two_ahead"}
    for key in ("accuracy", "roc_auc", "average_precision", "mrr_at_k", "hit_at_1"):
        assert 0.0 <= m[key] <= 1.0, key
    assert m["rank_groups"] == 3 and 1 / 4 <= m["mrr_at_k"]
    # the pair scorer agrees with the reranker's own one-context scoring
    loaded = reranker_eval.load_reranker(tmp_path / "rr")
    direct = loaded.score(["a1", "a2"], ["a3", "s1"])
    assert score_pairs(loaded, ["a1 | a2"] * 2, ["a3", "s1"], 1) == pytest.approx(direct, abs=1e-5)


def test_missing_inputs_are_one_line(tmp_path: Path) -> None:
    samples = write_samples(tmp_path / "s.parquet", ROWS)
    with pytest.raises(InputError, match=f"{tmp_path / 'none'}: not a reranker export"):
        evaluate_reranker(tmp_path / "none", samples)
    model = own_model()
    export_own(model, model.tokenizer, tmp_path / "rr")
    with pytest.raises(InputError, match="missing.parquet: no reranker samples file"):
        evaluate_reranker(tmp_path / "rr", tmp_path / "missing.parquet")
    train_only = write_samples(tmp_path / "t.parquet", [r for r in ROWS if r[6] == "train"])
    with pytest.raises(InputError, match=r"t.parquet: no val rows"):
        evaluate_reranker(tmp_path / "rr", train_only)
    assert not math.isnan(evaluate_reranker(tmp_path / "rr", samples, k=2)["roc_auc"])
