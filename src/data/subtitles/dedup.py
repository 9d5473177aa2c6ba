"""Duplicate uploads of one film: exact (same words in the same order) and near (MinHash over word
shingles, banded LSH for candidates, estimated Jaccard against a threshold).

Re-uploads differ in timing, line wrapping, markup, ads and a few typos, so both fingerprints are taken
from the cleaned words only. Fingerprints are computed in the workers; `find_duplicates` runs once.
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
_MASK32 = np.uint64(0xFFFFFFFF)
# Odd multiplier mixing k consecutive token hashes into one shingle hash (wraps mod 2**64).
_SHINGLE_MIX = np.uint64(0x9E3779B97F4A7C15)
_CHUNK = 8192


@dataclass
class Fingerprint:
    exact: str  # sha1 of the normalized words
    minhash: np.ndarray  # uint64[num_perm]; empty when the file has fewer words than a shingle


def _permutations(cfg: SubsDedupConfig) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(cfg.seed)
    a = rng.integers(1, 2**63, size=cfg.num_perm, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    b = rng.integers(0, 2**63, size=cfg.num_perm, dtype=np.uint64)
    return a, b


def fingerprint(lines: list[str], cfg: SubsDedupConfig) -> Fingerprint:
    words = _WORD.findall(" ".join(lines).lower())
    exact = hashlib.sha1(" ".join(words).encode("utf-8")).hexdigest()
    k = cfg.shingle_words
    if len(words) < k:
        return Fingerprint(exact, np.zeros(0, dtype=np.uint64))
    tokens = np.fromiter((zlib.crc32(w.encode("utf-8")) for w in words), dtype=np.uint64, count=len(words))
    shingles = np.zeros(len(words) - k + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(k):
            shingles = shingles * _SHINGLE_MIX + tokens[j: len(tokens) - k + 1 + j]
        shingles = np.unique(shingles)
        a, b = _permutations(cfg)
        sig = np.full(cfg.num_perm, np.iinfo(np.uint64).max, dtype=np.uint64)
        for start in range(0, len(shingles), _CHUNK):
            chunk = shingles[start: start + _CHUNK]
            # Multiply-shift hashing: the high 32 bits of a*x+b are a good universal hash.
            hashed = (a[:, None] * chunk[None, :] + b[:, None]) >> np.uint64(32)
            sig = np.minimum(sig, (hashed & _MASK32).min(axis=1))
    return Fingerprint(exact, sig)


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Estimated Jaccard similarity of two MinHash signatures."""
    if len(a) == 0 or len(a) != len(b):
        return 0.0
    return float(np.mean(a == b))


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
    rows = cfg.num_perm // cfg.bands
    dups: list[Duplicate] = []
    kept_exact: dict[tuple[str, str], str] = {}
    buckets: dict[tuple[str, int, bytes], list[Candidate]] = defaultdict(list)
    for item in sorted(items, key=lambda c: (c.group, -c.size, c.file_id)):
        if cfg.exact and (item.group, item.fp.exact) in kept_exact:
            dups.append(Duplicate(item.file_id, kept_exact[(item.group, item.fp.exact)], "exact", 1.0))
            continue
        sig = item.fp.minhash
        keys = [(item.group, band, sig[band * rows:(band + 1) * rows].tobytes())
                for band in range(cfg.bands)] if cfg.near and len(sig) else []
        best: tuple[float, Candidate] | None = None
        for key in keys:
            for other in buckets.get(key, ()):
                sim = similarity(sig, other.fp.minhash)
                if sim >= cfg.threshold and (best is None or sim > best[0]):
                    best = (sim, other)
        if best is not None:
            dups.append(Duplicate(item.file_id, best[1].file_id, "near", round(best[0], 3)))
            continue
        kept_exact[(item.group, item.fp.exact)] = item.file_id
        for key in keys:
            buckets[key].append(item)
    return dups
