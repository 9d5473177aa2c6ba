"""Validation metrics of the reranker, computed with scikit-learn and torchmetrics.

- Classification over the val samples: accuracy at probability 0.5, ROC AUC, average precision, and
  the AUC of the positives against each negative kind alone (`auc_swap`, ...).
- Ranking: for each val positive, its true next line among k candidates: itself, the first line of
  its own context when there are two or more (the line the swap negatives put last), and lines of
  val samples from other files or works of the same language. MRR@k and hit@1 over those groups.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.metrics import accuracy_score, average_precision_score, roc_auc_score
from torchmetrics.retrieval import RetrievalHitRate, RetrievalMRR


def classification_metrics(labels: Sequence[int], scores: Sequence[float], kinds: Sequence[str]) -> dict[str, float]:
    """accuracy, roc_auc, average_precision (+ auc_<kind> per negative kind); NaN where a class is missing."""
    y = np.asarray(labels, dtype=np.int64)
    p = np.asarray(scores, dtype=np.float64)
    out = {"accuracy": float(accuracy_score(y, p >= 0.5)) if len(y) else float("nan")}
    both = len(set(y.tolist())) == 2
    out["roc_auc"] = float(roc_auc_score(y, p)) if both else float("nan")
    out["average_precision"] = float(average_precision_score(y, p)) if both else float("nan")
    kinds_arr = np.asarray(kinds)
    positives = y == 1
    for kind in sorted(set(kinds_arr[~positives].tolist())):
        pick = positives | (kinds_arr == kind)
        if positives.any():
            out[f"auc_{kind}"] = float(roc_auc_score(y[pick], p[pick]))
    return out


@dataclass
class RankingGroup:
    context: str
    candidates: list[str]  # the true next line first


def ranking_groups(contexts: Sequence[str], candidates: Sequence[str], labels: Sequence[int],
                   file_ids: Sequence[str], languages: Sequence[str], k: int, seed: int,
                   separator: str = " | ") -> list[RankingGroup]:
    """One group per positive sample that gets at least one distractor (see the module docstring)."""
    rng = random.Random(seed)
    pool: dict[str, list[tuple[str, str]]] = {}
    for cand, f, lang in zip(candidates, file_ids, languages, strict=True):
        pool.setdefault(lang, []).append((f, cand))
    groups = []
    for ctx, cand, label, f, lang in zip(contexts, candidates, labels, file_ids, languages, strict=True):
        if label != 1:
            continue
        lines = ctx.split(separator)
        distractors = [lines[0]] if len(lines) >= 2 and lines[0] != cand else []
        others = [c for g, c in pool[lang] if g != f and c != cand]
        rng.shuffle(others)
        for c in others:
            if len(distractors) >= k - 1:
                break
            if c not in distractors:
                distractors.append(c)
        if distractors:
            groups.append(RankingGroup(ctx, [cand, *distractors]))
    return groups


def ranking_metrics(group_scores: Sequence[np.ndarray], k: int) -> dict[str, float]:
    """MRR@k and hit@1 when the true candidate is index 0 of each group's scores."""
    if not group_scores:
        return {f"mrr_at_{k}": float("nan"), "hit_at_1": float("nan"), "rank_groups": 0.0}
    preds = torch.cat([torch.as_tensor(s, dtype=torch.float32) for s in group_scores])
    target = torch.cat([torch.arange(len(s)) == 0 for s in group_scores])
    indexes = torch.cat([torch.full((len(s),), i, dtype=torch.long) for i, s in enumerate(group_scores)])
    mrr = RetrievalMRR(top_k=k)(preds, target, indexes=indexes)
    hit = RetrievalHitRate(top_k=1)(preds, target, indexes=indexes)
    return {f"mrr_at_{k}": float(mrr), "hit_at_1": float(hit), "rank_groups": float(len(group_scores))}
