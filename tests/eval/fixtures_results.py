"""A hand-made, realistic results.json (the eval stage's schema) for tests of its readers.

`full_results()` returns a fresh deep copy each call, so a test may delete or damage parts freely.
The figures are in the range of a CPU-scale run: a ~0.5M-parameter pretrain model near 2 bits per
byte, SFT and KTO models that loop little and end most turns, a reranker a little above chance.
KTO is present here; tests that need a missing model remove it.
"""

from __future__ import annotations

import copy
import random
from typing import Any


def _curve(start: float, end: float, steps: int, every: int) -> list[list[float]]:
    """A smooth decreasing loss curve from `start` to `end` over `steps` (points every `every`)."""
    out = []
    for step in range(0, steps + 1, every):
        frac = step / steps
        out.append([step, round(end + (start - end) * (1 - frac) ** 2, 4)])
    return out


def _scores(mean: float, seed: int, n: int = 300) -> list[float]:
    """Reranker scores around `mean` (a seeded normal, clipped to the sigmoid's range)."""
    rng = random.Random(seed)
    return [round(min(1.0, max(0.0, rng.gauss(mean, 0.12))), 4) for _ in range(n)]


def _line(start: float, per_eval: float) -> list[list[float]]:
    """A KTO guard series: one value every 20 steps, changing by `per_eval` each time."""
    return [[s, round(start + per_eval * s / 20, 6)] for s in range(0, 201, 20)]


def _gen(loop: float, eot: float, d1: float, d2: float, rep: float, md: float, canned: float,
         length: float) -> dict[str, float]:
    return {"n": 40, "distinct_1": d1, "distinct_2": d2, "repeated_ngram_rate": rep, "loop_rate": loop,
            "end_of_turn_rate": eot, "mean_length_tokens": length, "mean_length_chars": length * 4.1,
            "markdown_wall_rate": md, "canned_rate": canned}


_RESULTS: dict[str, Any] = {
    "models": {
        "pretrain": {"present": True, "path": "data/models/pretrain/best.ckpt", "reason": "",
                     "parameters": 538240, "mlflow_run_id": "3f2a9c1d0b7e4e51a1c2d3e4f5a6b7c8"},
        "sft": {"present": True, "path": "data/models/sft/best.ckpt", "reason": "",
                "parameters": 538240, "mlflow_run_id": "9b8a7c6d5e4f40312233445566778899"},
        "kto": {"present": True, "path": "data/models/kto/best.ckpt", "reason": "",
                "parameters": 538240, "mlflow_run_id": None},
    },
    "absent": ["markov: data/models/markov/model.json not found (a baseline only, no section of its own)"],
    "lm": {
        "pretrain": {"literature": {"loss": 4.7059, "bpb": 1.8116, "tokens": 20480, "bytes": 76543},
                     "subtitles": {"loss": 5.1022, "bpb": 2.0431, "tokens": 8192, "bytes": 29871},
                     "dialogues": {"loss": 5.3310, "bpb": 2.1877, "tokens": 6144, "bytes": 21760}},
        "sft": {"literature": {"loss": 4.8801, "bpb": 1.8787, "tokens": 20480, "bytes": 76543},
                "subtitles": {"loss": 4.9015, "bpb": 1.9627, "tokens": 8192, "bytes": 29871},
                "dialogues": {"loss": 4.6023, "bpb": 1.8887, "tokens": 6144, "bytes": 21760}},
        "kto": {"literature": {"loss": 4.8912, "bpb": 1.8830, "tokens": 20480, "bytes": 76543},
                "subtitles": {"loss": 4.9120, "bpb": 1.9669, "tokens": 8192, "bytes": 29871},
                "dialogues": {"loss": 4.6190, "bpb": 1.8955, "tokens": 6144, "bytes": 21760}},
    },
    "unigram": {"literature": {"bpb": 2.9413}, "subtitles": {"bpb": 3.1276}, "dialogues": {"bpb": 3.0551}},
    "generation": {
        "pretrain": _gen(0.275, 0.05, 0.412, 0.781, 0.094, 0.0, 0.0, 61.2),
        "sft": _gen(0.075, 0.825, 0.388, 0.802, 0.041, 0.025, 0.15, 23.4),
        "kto": _gen(0.05, 0.875, 0.402, 0.829, 0.033, 0.0, 0.1, 21.9),
    },
    "samples": [
        {"id": "ru-greeting", "language": "ru", "prompt": "Привет! Как прошёл твой день?",
         "replies": {"pretrain": "и сказал он, что день был, и день был, и день был",
                     "sft": "Привет! Хорошо, гулял по набережной.",
                     "kto": "Неплохо. Работал, потом читал. А твой?"}},
        {"id": "en-markup", "language": "en",
         "prompt": "Write <b>bold</b> & tell me: is 2 < 3?",
         "replies": {"pretrain": "the | table | of * stars *",
                     "sft": "Sure.\n<script>alert('x')</script>\nYes, 2 < 3.",
                     "kto": "Yes: 2 is less than 3."}},
        {"id": "ru-dishes", "language": "ru",
         "prompt": [{"role": "user", "content": "Я вернулся из Грузии."},
                    {"role": "assistant", "content": "Как съездил?"},
                    {"role": "user", "content": "Что там стоит попробовать?"}],
         "replies": {"sft": "Хинкали и хачапури.", "kto": "Попробуй хинкали."}},
    ],
    "probes": {
        "sft": {"ru": {"n": 32, "cropped": 2, "logprob_accuracy": 0.59375, "keyword_accuracy": 0.125,
                       "mean_margin": 0.213, "chance": 0.5},
                "en": {"n": 30, "cropped": 4, "logprob_accuracy": 0.5667, "keyword_accuracy": 0.0667,
                       "mean_margin": 0.101, "chance": 0.5}},
        "kto": {"ru": {"n": 32, "cropped": 2, "logprob_accuracy": 0.625, "keyword_accuracy": 0.15625,
                       "mean_margin": 0.244, "chance": 0.5},
                "en": {"n": 30, "cropped": 4, "logprob_accuracy": 0.5333, "keyword_accuracy": 0.1,
                       "mean_margin": 0.087, "chance": 0.5}},
    },
    "reranker": {
        "n": 4000, "n_val": 4000, "n_by_kind": {"positive": 1000, "swap": 1000, "two_ahead": 1000,
                                                 "other_file": 1000},
        "accuracy": 0.5635, "roc_auc": 0.5912, "average_precision": 0.6104,
        "auc_by_kind": {"swap": 0.5523, "two_ahead": 0.5732, "other_file": 0.6481},
        "k": 8, "mrr_at_k": 0.4127, "hit_at_1": 0.2215, "rank_groups": 500,
        "best_of_n": {"n": 16, "candidates": "markov", "plain_source": "lm", "length_unit": "tokens",
                      "prompts": 40, "dropped": {"no_candidate": 1}, "notes": ["1 prompt gave no candidate"],
                      "reranked": {**_gen(0.0, 1.0, 0.55, 0.93, 0.01, 0.0, 0.0, 12.3),
                                   "mean_reranker_score": 0.712, "picked_from": {"markov": 1.0}},
                      "unranked": {**_gen(0.1, 1.0, 0.51, 0.90, 0.02, 0.0, 0.0, 13.0),
                                   "mean_reranker_score": 0.498, "picked_from": {"markov": 1.0}},
                      "plain": {**_gen(0.05, 0.9, 0.47, 0.88, 0.03, 0.0, 0.05, 14.1),
                                "mean_reranker_score": 0.503, "picked_from": {"lm": 1.0}}},
    },
    "latency": {
        "sft": {"n": 12, "repeats": 3, "device": "cpu", "precision": "fp32", "ttft_ms": 18.4,
                "first_phrase_ms": 212.7, "first_phrase_tokens": 9.0, "tokens_per_s": 143.2, "dropped": {},
                "reranked_turn_ms": 1843.0, "reranked_phases_ms": {"markov": 1210.5, "score": 598.1},
                "reranked_n": 64, "reranked_candidates": "markov"},
        "kto": {"n": 12, "repeats": 3, "device": "cpu", "precision": "fp32", "ttft_ms": 17.9,
                "first_phrase_ms": 198.3, "first_phrase_tokens": 8.5, "tokens_per_s": 146.8, "dropped": {},
                "reranked_turn_ms": 2112.4, "reranked_phases_ms": {"markov": 1290.2, "score": 790.7},
                "reranked_n": 64, "reranked_candidates": "markov"},
    },
    "pipeline": {
        "data": {
            "clean_librus": {"read": {"manifest_rows": 16, "chars": 49529}, "wrote": {"documents": 11, "chars": 23014},
                             "dropped": {"not_fiction": 3, "too_short": 2}},
            "clean_subs": {"read": {"files": 17, "bytes": 17445.0}, "wrote": {"files": 8, "lines": 121},
                           "dropped": {"upstream:archive": 5.0, "upstream:not_srt": 2, "duplicate:near": 1,
                                       "language:uk": 1}},
            "build_dialogues": {"read": {"rows": 2210}, "wrote": {"dialogues": 1840, "turns": 9123},
                                "dropped": {"too_long": 37}, "notes": ["3 books had no dialogue"]},
        },
        "tokenizer": {"kind": "bpe", "vocab_size": 4096, "chars_per_token": 3.62, "bytes_per_token": 6.41,
                      "fallback_rate": 0.00031, "roundtrip_rate": 1.0, "heldout_docs": 120},
        "training": {
            "pretrain": {"parameters": 538240, "steps": 2000, "tokens": 2048000, "seconds": 412.6,
                         "tokens_per_s": 4963.6, "best_val_loss": 4.7059},
            "sft": {"parameters": 538240, "steps": 600, "tokens": 614400, "seconds": 131.9,
                    "tokens_per_s": 4658.1, "best_val_loss": 4.6023},
            "kto": {"parameters": 538240, "steps": 200, "tokens": 102400, "seconds": 3725.0,
                    "tokens_per_s": 27.5, "best_val_loss": 0.4996},
        },
    },
    "series": {
        "loss_curves": {"pretrain": {"train": _curve(8.3, 4.6, 2000, 100), "val": _curve(8.3, 4.7, 2000, 500)},
                        "sft": {"train": _curve(5.6, 4.5, 600, 50), "val": _curve(5.6, 4.6, 600, 200)},
                        "kto": {"train": _curve(0.5, 0.49, 200, 20), "val": [[0, 0.5], [200, 0.4996]]}},
        "reply_lengths": {"pretrain": [64] * 11 + [40, 52, 58, 61, 63] * 5 + [12, 30, 44, 47],
                          "sft": [8, 12, 15, 19, 22, 23, 25, 27, 30, 31] * 4,
                          "kto": [9, 11, 14, 18, 20, 21, 24, 26, 28, 29] * 4},
        # as src/eval/collect.py reads them from the KTO guard's val_curve.json
        "kto": {"canned_rate": _line(0.15, -0.005), "desirable_drift": _line(0.0, -0.0005),
                "desirable_drift_per_token": _line(0.0, -0.00003), "loop_rate": _line(0.075, -0.0025),
                "mean_reply_tokens": _line(23.4, -0.15), "reward_accuracy": _line(0.0, 0.06),
                "rewards_margin": _line(0.0, 0.0035), "val_loss": _line(0.5, -0.0004)},
        "reranker_scores": {"positive": _scores(0.58, 1), "swap": _scores(0.52, 2),
                            "two_ahead": _scores(0.50, 3), "other_file": _scores(0.45, 4)},
        "latency": {"sft": {"ttft_ms": 18.4, "first_phrase_ms": 212.7, "tokens_per_s": 143.2},
                    "kto": {"ttft_ms": 17.9, "first_phrase_ms": 198.3, "tokens_per_s": 146.8}},
    },
}


def full_results() -> dict[str, Any]:
    """A complete results dict (every part present); a fresh copy per call."""
    return copy.deepcopy(_RESULTS)


def results_without_kto() -> dict[str, Any]:
    """The same run with KTO switched off: the model is absent and every KTO figure is gone."""
    results = full_results()
    results["models"]["kto"] = {"present": False, "path": "data/models/kto/best.ckpt",
                                "reason": "data/models/kto/best.ckpt not found (stage switched off?)",
                                "parameters": None, "mlflow_run_id": None}
    results["absent"].insert(0, "kto: data/models/kto/best.ckpt not found (stage switched off?)")
    for part in ("lm", "generation", "probes", "latency"):
        results[part].pop("kto", None)
    for sample in results["samples"]:
        sample["replies"].pop("kto", None)
    results["pipeline"]["training"].pop("kto")
    for name in ("loss_curves", "reply_lengths", "latency"):
        results["series"][name].pop("kto", None)
    results["series"].pop("kto")
    return results
