"""Duplicate uploads of one film: exact (same words in the same order) and near (Jaccard similarity of
word shingles, estimated from bottom-k sketches).

Re-uploads differ in timing, line wrapping, markup, ads and a few typos, so both fingerprints are taken
from the cleaned words only. A bottom-k sketch is the k smallest hashes of a file's shingles: one hash
per shingle (cheap, unlike k-permutation MinHash), and two files that share a shingle among their
smallest hashes become candidates through an inverted index, so files are not compared all-to-all.
Fingerprints are computed in the workers; `find_duplicates` runs once over all of them.
"""

from __future__ import annotations

import hashlib
import re
import zlib
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from src.config.sections.clean_subs import SubsDedupConfig

_WORD = re.compile(r"\w+")
# Odd 64-bit multipliers: one mixes k token hashes into a shingle hash, the other scrambles it
# (multiplication mod 2**64 by an odd number is a bijection, so distinct shingles stay distinct).
_SHINGLE_MIX = np.uint64(0x9E3779B97F4A7C15)
_SCRAMBLE = np.uint64(0xD6E8FEB86659FD93)


@dataclass
class Fingerprint:
    exact: str  # sha1 of the normalized words
    sketch: np.ndarray  # sorted uint64, the smallest `sketch_size` shingle hashes (fewer if short)


def fingerprint(lines: list[str], cfg: SubsDedupConfig) -> Fingerprint:
    words = _WORD.findall(" ".join(lines).lower())
    exact = hashlib.sha1(" ".join(words).encode("utf-8")).hexdigest()
    k = cfg.shingle_words
    if len(words) < k:
        return Fingerprint(exact, np.zeros(0, dtype=np.uint64))
    # crc32 once per distinct word (a stable hash in every worker process, unlike hash()).
    distinct = set(words)
    vocab = dict(zip(distinct, map(zlib.crc32, map(str.encode, distinct)), strict=True))
    tokens = np.array(list(map(vocab.__getitem__, words)), dtype=np.uint64)
    n = len(words) - k + 1
    shingles = np.zeros(n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(k):
            shingles = shingles * _SHINGLE_MIX + tokens[j: j + n]
        hashed = _sorted_unique(shingles * _SCRAMBLE ^ np.uint64(cfg.seed))
    return Fingerprint(exact, hashed[: cfg.sketch_size])


def _sorted_unique(values: np.ndarray) -> np.ndarray:
    """np.unique for a 1-d array, by sorting: numpy 2's hash-based unique is ~20x slower here."""
    ordered = np.sort(values)
    return ordered[np.concatenate(([True], ordered[1:] != ordered[:-1]))]


def similarity(a: np.ndarray, b: np.ndarray, sketch_size: int) -> float:
    """Estimated Jaccard similarity from two bottom-k sketches: of the k smallest hashes of the union,
    the share present in both."""
    if len(a) == 0 or len(b) == 0:
        return 0.0
    union = np.union1d(a, b)[:sketch_size]
    both = np.intersect1d(a, b, assume_unique=True)
    return float(np.isin(union, both, assume_unique=True).sum() / len(union))


@dataclass
class Candidate:
    file_id: str
    group: str  # only files of one group (language) are compared
    size: int  # lines out: the most complete upload is the one kept
    fp: Fingerprint


@dataclass
class Duplicate:
    file_id: str
    duplicate_of: str
    kind: str  # "exact" or "near"
    similarity: float


def find_duplicates(items: list[Candidate], cfg: SubsDedupConfig) -> list[Duplicate]:
    """Each duplicate with the kept file it repeats; within a group the largest upload wins."""
    dups: list[Duplicate] = []
    kept_exact: dict[tuple[str, str], str] = {}
    index: dict[tuple[str, int], list[Candidate]] = defaultdict(list)
    for item in sorted(items, key=lambda c: (c.group, -c.size, c.file_id)):
        if cfg.exact and (item.group, item.fp.exact) in kept_exact:
            dups.append(Duplicate(item.file_id, kept_exact[(item.group, item.fp.exact)], "exact", 1.0))
            continue
        keys = [(item.group, int(h)) for h in item.fp.sketch] if cfg.near else []
        shared: dict[str, int] = defaultdict(int)
        others: dict[str, Candidate] = {}
        for key in keys:
            for other in index.get(key, ()):
                shared[other.file_id] += 1
                others[other.file_id] = other
        best: tuple[float, Candidate] | None = None
        for file_id, count in shared.items():
            if count < cfg.min_shared_hashes:
                continue
            sim = similarity(item.fp.sketch, others[file_id].fp.sketch, cfg.sketch_size)
            if sim >= cfg.threshold and (best is None or sim > best[0]):
                best = (sim, others[file_id])
        if best is not None:
            dups.append(Duplicate(item.file_id, best[1].file_id, "near", round(best[0], 3)))
            continue
        kept_exact[(item.group, item.fp.exact)] = item.file_id
        for key in keys:
            index[key].append(item)
    return dups
