"""The unigram baseline: validation bits per byte of a model that ignores context.

    python -m src.bench.unigram_baseline --data data/tokens
    python -m src.bench.unigram_baseline --data data/experiments/ru_classics/tokens

Token frequencies are counted on train.bin (add-`alpha` smoothed, so a token never seen in training
costs a finite amount) and the validation split is scored with them. Bits per byte use the same byte
count as the pretrain stage's val_bpb (meta.json), so the numbers are directly comparable: a trained
model that does not beat this has learned nothing beyond token frequencies.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from src.errors import InputError
from src.paths import resolve
from src.training.data import SCAN_CHUNK, TokenMeta, bits_per_byte, open_tokens, read_meta


@dataclass(frozen=True)
class UnigramScore:
    vocab_size: int
    train_tokens: int
    val_tokens: int
    val_bytes: int
    alpha: float
    val_loss: float  # nats per token
    val_bpb: float
    unseen_val_tokens: int  # validation tokens whose id never occurs in train


def token_counts(meta: TokenMeta, split: str) -> np.ndarray:
    """How often each id occurs in `split`, read in bounded chunks."""
    tokens = open_tokens(meta.split(split), meta.dtype)
    counts = np.zeros(meta.vocab_size, dtype=np.int64)
    for start in range(0, len(tokens), SCAN_CHUNK):
        counts += np.bincount(tokens[start:start + SCAN_CHUNK], minlength=meta.vocab_size)[:meta.vocab_size]
    return counts


def unigram_log_probs(train_counts: np.ndarray, alpha: float) -> np.ndarray:
    """Log-probability of each id under the add-`alpha` smoothed train frequencies (-inf for an id
    never seen in train when alpha is 0)."""
    if alpha < 0:
        raise InputError(f"--alpha must be >= 0, got {alpha}")
    probs = (train_counts + alpha) / (train_counts.sum() + alpha * len(train_counts))
    with np.errstate(divide="ignore"):
        return np.log(probs)


def unigram_nats(log_probs: np.ndarray, counts: np.ndarray) -> float:
    """Summed nats of a text whose ids occur `counts` times (the eval stage scores its held-out
    text per corpus with this, the command below the whole val split)."""
    seen = counts > 0
    return float(-(counts[seen] * log_probs[seen]).sum())


def unigram_score(meta: TokenMeta, alpha: float = 1.0) -> UnigramScore:
    train, val = token_counts(meta, "train"), token_counts(meta, "val")
    log_probs = unigram_log_probs(train, alpha)
    loss = unigram_nats(log_probs, val) / val.sum() if val.sum() else float("nan")
    split = meta.split("val")
    return UnigramScore(meta.vocab_size, int(train.sum()), int(val.sum()), split.n_bytes, alpha, loss,
                        bits_per_byte(loss, split.tokens_per_byte), int(val[train == 0].sum()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/tokens", help="a tokenize stage output folder")
    parser.add_argument("--alpha", type=float, default=1.0, help="add-alpha smoothing of the counts")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    try:
        score = unigram_score(read_meta(resolve(args.data)), args.alpha)
    except InputError as exc:
        print(f"error: unigram_baseline: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(asdict(score), indent=2))
        return 0
    print(f"{Path(args.data)}: vocabulary {score.vocab_size}, {score.train_tokens:,} train tokens, "
          f"{score.val_tokens:,} val tokens over {score.val_bytes:,} bytes")
    print(f"unigram (add-{score.alpha:g}) val loss {score.val_loss:.4f} nats/token, "
          f"val bpb {score.val_bpb:.3f}" + ("" if math.isfinite(score.val_bpb) else
                                          f" ({score.unseen_val_tokens} val tokens never seen in train)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
