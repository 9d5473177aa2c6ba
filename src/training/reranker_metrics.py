"""Validation metrics of the reranker, computed with scikit-learn and torchmetrics.

- Classification over the val samples: accuracy at probability 0.5, ROC AUC, average precision, and
  the AUC of the positives against each negative kind alone (`auc_swap`, ...).
- Ranking: for each val positive, its true next line among k candidates: itself, the first line of
  its own context when there are two or more (the line the swap negatives put last), then, when the
  sample kinds are given, the candidates of val negatives of every other kind present (taken in turn:
  two_ahead, other_file, markov, ...), then true next lines of other val samples, all from other
  files or works of the same language. So a Markov kind in the samples puts Markov lines into every group. MRR@k and
  hit@1 over those groups.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

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
    kinds: list[str] = field(default_factory=list)  # where each candidate came from ("positive" first)


def ranking_groups(contexts: Sequence[str], candidates: Sequence[str], labels: Sequence[int],
                   file_ids: Sequence[str], languages: Sequence[str], k: int, seed: int,
                   separator: str = " | ", kinds: Sequence[str] | None = None) -> list[RankingGroup]:
    """One group per positive sample that gets at least one distractor (see the module docstring).
    Without `kinds`, the distractors past the swap line are val lines of other files only."""
    rng = random.Random(seed)
    kinds = list(kinds) if kinds is not None else ["line"] * len(labels)
    lines: dict[str, list[tuple[str, str]]] = {}  # language -> (file, candidate) of every val sample
    by_kind: dict[tuple[str, str], list[tuple[str, str]]] = {}  # (language, negative kind) -> the same
    for cand, f, lang, label, kind in zip(candidates, file_ids, languages, labels, kinds, strict=True):
        lines.setdefault(lang, [])
        if label == 1 or kind == "line":  # with kinds known, only true lines (no generated ones) fill up
            lines[lang].append((f, cand))
        else:
            by_kind.setdefault((lang, kind), []).append((f, cand))
    groups = []
    for ctx, cand, label, f, lang in zip(contexts, candidates, labels, file_ids, languages, strict=True):
        if label != 1:
            continue
        first = ctx.split(separator)[0]
        picked = [(first, "swap")] if separator in ctx and first != cand else []
        # the negative kinds in turn (swap only when the context gave no swap line), then any val line
        sources = [(kind, pool) for (lg, kind), pool in sorted(by_kind.items())
                   if lg == lang and not (kind == "swap" and picked)]
        sources = [(kind, _shuffled(rng, pool, f, cand)) for kind, pool in sources]
        rest = iter(_shuffled(rng, lines[lang], f, cand))
        while len(picked) < k - 1 and sources:
            for kind, pool in list(sources):
                taken = next((c for c in pool if c not in {p for p, _ in picked}), None)
                if taken is None:
                    sources.remove((kind, pool))
                elif len(picked) < k - 1:
                    picked.append((taken, kind))
        for c in rest:
            if len(picked) >= k - 1:
                break
            if c not in {p for p, _ in picked}:
                picked.append((c, "other_file"))
        if picked:
            groups.append(RankingGroup(ctx, [cand, *(c for c, _ in picked)], ["positive", *(k_ for _, k_ in picked)]))
    return groups


def _shuffled(rng: random.Random, pool: list[tuple[str, str]], file_id: str, true_line: str) -> list[str]:
    """The pool's candidates from files other than `file_id`, not equal to the true line, shuffled."""
    out = [c for g, c in pool if g != file_id and c != true_line]
    rng.shuffle(out)
    return out


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
