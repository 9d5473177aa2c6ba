"""Deterministic train/val split of documents by a hash of their id.

A document is in val when its hash score (uniform in [0, 1)) is below the val fraction. The score depends
on the id and the salt only, so adding or removing documents never moves the others between splits.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

TRAIN, VAL, BOTH = "train", "val", "both"


def split_score(doc_id: str, salt: str = "") -> float:
    digest = hashlib.blake2b(f"{salt}\x00{doc_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def is_val(doc_id: str, val_fraction: float, salt: str = "") -> bool:
    return split_score(doc_id, salt) < val_fraction


def assign_splits(
    doc_ids: Iterable[str], val_fraction: float, salt: str = ""
) -> tuple[dict[str, str], list[str]]:
    """doc_id -> "train" | "val" | "both", plus notes on fallbacks for tiny corpora.

    When the hash leaves a split empty although the fraction asks for both, the document whose score
    lies closest to the threshold changes sides; a single document goes to both splits (val == train).
    """
    scores = {d: split_score(d, salt) for d in doc_ids}
    splits = {d: VAL if s < val_fraction else TRAIN for d, s in scores.items()}
    notes: list[str] = []
    if len(scores) == 1 and 0 < val_fraction:
        (only,) = scores
        splits[only] = BOTH
        notes.append(f"only one document ({only}): it is written to both train and val, so val "
                     "loss measures training text")
        return splits, notes
    n_val = sum(1 for s in splits.values() if s == VAL)
    if n_val == 0 and val_fraction > 0 and scores:
        moved = min(scores, key=scores.__getitem__)
        splits[moved] = VAL
        notes.append(f"val_fraction={val_fraction} put no document in val; moved {moved} there")
    elif n_val == len(splits) and val_fraction < 1 and scores:
        moved = max(scores, key=scores.__getitem__)
        splits[moved] = TRAIN
        notes.append(f"val_fraction={val_fraction} put every document in val; moved {moved} to train")
    return splits, notes
