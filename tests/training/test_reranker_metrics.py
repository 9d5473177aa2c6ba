"""Reranker metrics on hand-made cases (values worked out by hand)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from src.training.reranker_metrics import classification_metrics, ranking_groups, ranking_metrics


def test_classification_metrics_by_hand() -> None:
    labels = [1, 1, 0, 0, 0]
    scores = [0.9, 0.4, 0.6, 0.2, 0.1]
    kinds = ["positive", "positive", "swap", "swap", "other_file"]
    m = classification_metrics(labels, scores, kinds)
    assert m["accuracy"] == pytest.approx(3 / 5)  # 0.9 right, 0.4 wrong, 0.6 wrong, 0.2 and 0.1 right
    # pairs (pos, neg) ranked right: 0.9 beats all 3; 0.4 beats 0.2 and 0.1 -> 5 of 6
    assert m["roc_auc"] == pytest.approx(5 / 6)
    # ranking by score: 0.9 (pos), 0.6, 0.4 (pos): precision 1 at the first, 2/3 at the second positive
    assert m["average_precision"] == pytest.approx((1 + 2 / 3) / 2)
    assert m["auc_swap"] == pytest.approx(3 / 4)  # positives vs swap only: 0.4 loses to 0.6
    assert m["auc_other_file"] == pytest.approx(1.0)


def test_classification_metrics_with_one_class_are_nan() -> None:
    m = classification_metrics([1, 1], [0.2, 0.9], ["positive", "positive"])
    assert m["accuracy"] == 0.5 and math.isnan(m["roc_auc"]) and math.isnan(m["average_precision"])


def test_ranking_metrics_by_hand() -> None:
    groups = [np.array([0.9, 0.1, 0.2]),    # true first: reciprocal rank 1
              np.array([0.3, 0.5, 0.4]),    # true third: 1/3
              np.array([0.5, 0.6, 0.1, 0.0])]  # true second: 1/2
    m = ranking_metrics(groups, k=3)
    assert m["mrr_at_3"] == pytest.approx((1 + 1 / 3 + 1 / 2) / 3)
    assert m["hit_at_1"] == pytest.approx(1 / 3)
    assert ranking_metrics(groups, k=2)["mrr_at_2"] == pytest.approx((1 + 0 + 1 / 2) / 3)


def test_ranking_groups_take_distractors_from_other_files_and_the_context() -> None:
    contexts = ["a1 | a2", "b1", "c1 | c2 | c3", "a4"]
    candidates = ["a3", "b2", "c4", "a5"]
    labels = [1, 1, 1, 0]
    files = ["A", "B", "C", "A"]
    groups = ranking_groups(contexts, candidates, labels, files, ["en"] * 4, k=4, seed=0)
    assert len(groups) == 3
    first = groups[0]
    assert first.candidates[0] == "a3" and "a1" in first.candidates  # the swap line
    assert "a5" not in first.candidates  # same file: never a distractor
    assert set(first.candidates[2:]) <= {"b2", "c4"}
    assert all(len(g.candidates) <= 4 for g in groups)


def test_ranking_groups_take_every_negative_kind_present() -> None:
    # two positives (files A, B) and val negatives of three kinds; the markov lines must reach the groups
    contexts = ["a1 | a2", "b1", "x1", "y1 | y2", "z1"]
    candidates = ["a3", "b2", "the the cat", "y0", "z9"]
    labels = [1, 1, 0, 0, 0]
    files = ["A", "B", "X", "Y", "Z"]
    kinds = ["positive", "positive", "markov", "swap", "other_file"]
    groups = ranking_groups(contexts, candidates, labels, files, ["en"] * 5, k=5, seed=0, kinds=kinds)
    assert len(groups) == 2
    a, b = groups
    # A: its own swap line, then one line of each other negative kind, then B's true line
    assert a.candidates == ["a3", "a1", "the the cat", "z9", "b2"]
    assert a.kinds == ["positive", "swap", "markov", "other_file", "other_file"]
    # B has a one-line context: the swap kind comes from the swap negatives of other files
    assert b.candidates[0] == "b2" and set(b.candidates[1:]) == {"the the cat", "y0", "z9", "a3"}
    assert sorted(b.kinds[1:4]) == ["markov", "other_file", "swap"]
    # without kinds: the old rule, any val line of another file (markov lines only by chance)
    plain = ranking_groups(contexts, candidates, labels, files, ["en"] * 5, k=3, seed=0)
    assert plain[0].candidates[:2] == ["a3", "a1"] and len(plain[0].candidates) == 3


def test_ranking_groups_never_mix_languages_or_reuse_the_file() -> None:
    contexts = ["a1", "a2", "p1", "q1"]
    candidates = ["a9", "a8", "п2", "q9"]
    labels = [1, 0, 0, 0]
    files = ["A", "A", "P", "Q"]
    kinds = ["positive", "markov", "markov", "other_file"]
    groups = ranking_groups(contexts, candidates, labels, files, ["en", "en", "ru", "en"], k=8, seed=1, kinds=kinds)
    assert [g.candidates for g in groups] == [["a9", "q9"]]  # a8: same file; п2: another language
