"""The reranker in the eval stage: how well it tells the true next line on held-out files, and what
best-of-N replies gain over plain sampling.

`evaluate_reranker` scores the `val` split of the reranker_data samples (files and works the
reranker never trained on) with the exported reranker and computes, through the training's own
metric code (src/training/reranker_metrics.py: scikit-learn and torchmetrics): accuracy at 0.5, ROC
AUC, average precision, the AUC of the positives against each negative kind alone, and MRR@k / hit@1
of the true next line among k candidates (itself, the first line of its context, lines of other
files of the same language).

`compare_best_of_n` answers each prompt of a fixed set three ways and scores all three with the
reranker (mean score) and with the generation metrics (src/eval/generation_metrics.reply_metrics):
- `reranked`: the best of `n` candidates (src/generation/rerank.py `Reranking`: Markov lines, samples
  of the chat model, or both);
- `unranked`: one candidate of that same pool picked at random (seeded): the writers without the
  editor, so `reranked` minus `unranked` is what the reranker's choice adds. By construction the
  reranked reply's score is never below it;
- `plain`: one sample of the chat model, made exactly as its candidates are (same prompt, sampling
  settings and context); with no chat model (`loaded` None) the candidates are Markov lines only and
  `plain` is the `unranked` pick (`plain_source` says which).
Reply lengths count the chat model's tokens, or words when there is no chat model (`length_unit`).
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from src.data.readers import read_parquet
from src.data.reranker.samples import SEPARATOR
from src.errors import InputError
from src.eval.detectors import words
from src.eval.generation_metrics import reply_metrics
from src.generation.chat_template import END, ContextError, clean_reply
from src.generation.rerank import LMWriter, MarkovWriter, Reranking
from src.generation.reranker import Reranker, load_reranker
from src.generation.sampling import SamplingParams
from src.training.reranker_metrics import classification_metrics, ranking_groups, ranking_metrics

SCORE_DIGITS = 6  # scores in results.json: enough to rank, short and stable across batch orders


def _finite(value: Any) -> Any:
    """NaN (a class or kind missing) as None: results.json is strict JSON."""
    return None if isinstance(value, float) and math.isnan(value) else value


@torch.no_grad()
def score_pairs(reranker: Reranker, contexts: Sequence[str], candidates: Sequence[str],
                batch_size: int) -> np.ndarray:
    """The probability of each (context, candidate) pair, contexts as stored in the samples (lines
    joined with " | "). `Reranker.score` takes one context with many candidates; held-out samples
    each have their own context, so they are batched here, longest first like `score` does."""
    n = len(candidates)
    out = np.empty(n, dtype=np.float32)
    order = sorted(range(n), key=lambda i: -(len(contexts[i]) + len(candidates[i])))
    for start in range(0, n, batch_size):
        idx = order[start:start + batch_size]
        batch = reranker.model.pair_batch([contexts[i] for i in idx], [candidates[i] for i in idx])
        batch = {k: v.to(reranker.device) for k, v in batch.items()}
        out[idx] = torch.sigmoid(reranker.model(**batch).float()).cpu().numpy()
    return out


def _capped(values: Sequence[float], cap: int, rng: random.Random) -> list[float]:
    keep = sorted(rng.sample(range(len(values)), cap)) if len(values) > cap else range(len(values))
    return [round(float(values[i]), SCORE_DIGITS) for i in keep]


def evaluate_reranker(reranker_dir: str | Path, samples_path: str | Path, *, k: int = 8, max_groups: int = 500,
                      batch_size: int = 64, seed: int = 0, max_rows: int = 0, scores_cap: int = 2000,
                      device: str = "cpu") -> dict[str, Any]:
    """The held-out figures of the module docstring. `max_rows` > 0 scores a seeded subset of the val
    rows (counted in `n` vs `n_val`); `max_groups` caps the ranking groups (the first val positives,
    as training does); `scores_by_kind` keeps at most `scores_cap` scores per kind (seeded subset).
    InputError naming the path: no reranker export, no samples file, no val rows."""
    from src.training.reranker import SAMPLE_COLUMNS  # lazily: it brings Lightning along

    reranker = load_reranker(reranker_dir, device=device, batch_size=batch_size)
    path = Path(samples_path)
    if not path.is_file():
        raise InputError(f"{path}: no reranker samples file; run the reranker_data stage")
    table = read_parquet(path, SAMPLE_COLUMNS, hint="rebuild it with the reranker_data stage")
    split = table.column("split").to_pylist()
    val_rows = [i for i, s in enumerate(split) if s == "val"]
    if not val_rows:
        raise InputError(f"{path}: no val rows (split == 'val'), so nothing held out to evaluate on")
    val = {c: [v for i, v in enumerate(table.column(c).to_pylist()) if split[i] == "val"]
           for c in SAMPLE_COLUMNS if c != "split"}
    labels = [int(x) for x in val["label"]]
    rng = random.Random(seed)
    n_val = len(labels)
    rows = sorted(rng.sample(range(n_val), max_rows)) if 0 < max_rows < n_val else list(range(n_val))
    pick = lambda column: [column[i] for i in rows]  # noqa: E731
    scores = score_pairs(reranker, pick(val["context"]), pick(val["candidate"]), batch_size)
    kinds = pick(val["kind"])
    figures = classification_metrics(pick(labels), scores, kinds)

    # Ranking: every val line is a possible distractor, but only the first `max_groups` positives
    # become groups. The later positives are passed as label 0 of kind "line" (ranking_groups' kind
    # for a true line when kinds are not known), which keeps them in the pool of true lines without
    # a group of their own: the result is exactly training's ranking_groups(...)[:max_groups] (its
    # random draws are made per group, in order) without a pool scan for every positive.
    keep = set([i for i, y in enumerate(labels) if y == 1][:max_groups])
    mask = [int(i in keep) for i in range(n_val)]
    group_kinds = [kind if y == 0 or i in keep else "line" for i, (kind, y) in enumerate(zip(val["kind"], labels,
                                                                                                strict=True))]
    groups = ranking_groups(val["context"], val["candidate"], mask, val["file_id"], val["language"], k, seed,
                            kinds=group_kinds)
    group_scores = [reranker.score(g.context.split(SEPARATOR), g.candidates, batch_size=batch_size)
                    for g in groups]
    ranking = ranking_metrics(group_scores, k)

    by_kind = {kind: [float(s) for s, kd in zip(scores, kinds, strict=True) if kd == kind]
               for kind in sorted(set(kinds))}
    return {
        "n": len(rows), "n_val": n_val, "n_by_kind": {kind: len(v) for kind, v in by_kind.items()},
        "accuracy": _finite(figures["accuracy"]), "roc_auc": _finite(figures["roc_auc"]),
        "average_precision": _finite(figures["average_precision"]),
        "auc_by_kind": {key.removeprefix("auc_"): _finite(v) for key, v in figures.items() if key.startswith("auc_")},
        "k": k, "mrr_at_k": _finite(ranking[f"mrr_at_{k}"]), "hit_at_1": _finite(ranking["hit_at_1"]),
        "rank_groups": len(groups),
        "scores_by_kind": {kind: _capped(v, scores_cap, rng) for kind, v in by_kind.items()},
    }


# --- best of N against plain sampling ---------------------------------------------------------------

def prompt_lines(prompt: Mapping[str, Any]) -> tuple[str, list[str]]:
    """(system message or "", the conversation's lines oldest first) of a prompt-set entry. The
    writers give lines their roles by position from the newest (the user's), so the messages after
    an optional system message must alternate and end with the user's."""
    messages = list(prompt.get("messages") or [])
    name = prompt.get("id", "?")
    system = messages.pop(0)["content"] if messages and messages[0].get("role") == "system" else ""
    if not messages:
        raise InputError(f"prompt {name}: no user message")
    for back, m in enumerate(reversed(messages)):
        want = "assistant" if back % 2 else "user"
        if m.get("role") != want:
            raise InputError(f"prompt {name}: message {len(messages) - back} is {m.get('role')!r}, expected "
                             f"{want!r} (turns alternate and the last one is the user's)")
    return system, [str(m["content"]) for m in messages]


class RecordingEngine:
    """An Engine that remembers, for the lines it generated last, whether each closed its turn
    (stopped on <|end|> for a chat model; on its line's end for a base model), so replies from the
    LM writer can be judged by the end-of-turn rate. Everything else goes to the engine."""

    def __init__(self, engine: Any, chat: bool) -> None:
        self._engine, self._chat = engine, chat
        self._end_id = (getattr(engine.tokenizer, "special_tokens", None) or {}).get(END)
        self.ended: dict[str, bool] = {}  # line as LMWriter returns it -> ended
        self.last: list[bool] = []  # the last call's flags, in completion order

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)

    def generate(self, prompts: Any, params: Any, **kwargs: Any) -> Any:
        stopped_on: dict[int, int] = {}

        def on_token(event: Any) -> None:
            if event.finish_reason == "stop_token":
                stopped_on[event.row] = event.token

        done = self._engine.generate(prompts, params, on_token=on_token, **kwargs)
        self.last = []
        for row, c in enumerate(done):
            text = c.text or ""
            if self._chat:
                ended = stopped_on.get(row) == self._end_id or clean_reply(text) != text
            else:
                ended = c.finish_reason in ("stop_token", "stop_string")
            self.last.append(ended)
            self.ended[" ".join(clean_reply(text).split())] = ended  # the key LMWriter.propose makes
        return done


def build_reranking(reranker_dir: str | Path, loaded: Any | None, *, candidates: str, n: int,
                    markov_dir: str | Path | None, engine: Any | None = None, markov_generate: Any = None,
                    params: SamplingParams | None = None, context_lines: int = 6, reply_share: float = 0.25,
                    lm_batch: int = 256, device: str = "cpu", precision: str = "auto") -> Reranking:
    """The Reranking the chat's --rerank mode would use: the exported reranker, the Markov model in
    `markov_dir` (generation settings `markov_generate`: markov.generate's fields, defaults when
    None), and the chat model `loaded` through `engine` (when None, an Engine of `precision`: auto
    is the chat's default, int8 on CPU). InputError or ValueError name what is missing."""
    from src.config.sections.markov import MarkovGenerateConfig
    from src.generation.engine import Engine
    from src.generation.markov import MarkovModel

    markov = lm = None
    if candidates in ("markov", "both"):
        if markov_dir is None:
            raise InputError(f"candidates={candidates} needs a Markov model directory (markov.out_dir)")
        g = markov_generate if markov_generate is not None else MarkovGenerateConfig()
        markov = MarkovWriter(MarkovModel.load(markov_dir), g.seeded_share, g.seed_lines, g.max_pieces, g.rounds)
    if loaded is not None:
        engine = engine or Engine(loaded.model, loaded.tokenizer, precision=precision, device=device)
        lm = LMWriter(engine, params or SamplingParams(), chat=loaded.chat, reply_share=reply_share, batch=lm_batch)
    scorer = load_reranker(reranker_dir, device=device)
    return Reranking(scorer, markov=markov, lm=lm, source=candidates, n=n, context_lines=context_lines)


def _arm_metrics(arm: dict[str, list], tokenizer: Any | None, max_new_tokens: int,
                 thresholds: Mapping[str, Any] | None) -> dict[str, Any]:
    ids = [tokenizer.encode(t) for t in arm["text"]] if tokenizer is not None else None
    n_tokens = [len(x) for x in ids] if ids is not None else [len(words(t)) for t in arm["text"]]
    figures: dict[str, Any] = reply_metrics(arm["text"], arm["prompt"], ended=arm["ended"], n_tokens=n_tokens,
                                            max_new_tokens=max_new_tokens, token_ids=ids, thresholds=thresholds)
    scores = arm["score"]
    figures["mean_reranker_score"] = round(float(np.mean(scores)), SCORE_DIGITS) if scores else None
    sources = Counter(arm["source"])
    figures["picked_from"] = {s: c / len(arm["source"]) for s, c in sorted(sources.items())} if sources else {}
    return figures


def compare_best_of_n(loaded: Any | None, reranker_dir: str | Path, prompts: Sequence[Mapping[str, Any]], *,
                      n: int, candidates: str, markov_dir: str | Path | None, seed: int,
                      params: SamplingParams | None = None, markov_generate: Any = None, context_lines: int = 6,
                      reply_share: float = 0.25, lm_batch: int = 256, device: str = "cpu",
                      precision: str = "fp32", thresholds: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The three arms of the module docstring on `prompts` (entries with id, language, messages).
    Prompt i is answered with seed `seed + i`. `params`: the chat model's sampling settings (the
    generation defaults when None); `thresholds`: the failure detectors' (as for reply_metrics). A prompt that does not fit the model's context or
    gets no candidate is left out of every arm and counted in `dropped`."""
    params = params or SamplingParams()
    notes: list[str] = []
    source = candidates
    if loaded is None and source != "markov":
        notes.append(f"candidates={source} needs a chat model and there is none: Markov candidates only")
        source = "markov"
    recorder = None
    if loaded is not None:
        from src.generation.engine import Engine

        recorder = RecordingEngine(Engine(loaded.model, loaded.tokenizer, precision=precision, device=device),
                                   loaded.chat)
    reranking = build_reranking(reranker_dir, loaded, candidates=source, n=n, markov_dir=markov_dir,
                                engine=recorder, markov_generate=markov_generate, params=params,
                                context_lines=context_lines, reply_share=reply_share, lm_batch=lm_batch,
                                device=device)
    arms: dict[str, dict[str, list]] = {a: {"text": [], "prompt": [], "ended": [], "score": [], "source": []}
                                        for a in ("reranked", "unranked", "plain")}
    samples: list[dict[str, Any]] = []
    dropped: Counter[str] = Counter()
    for i, prompt in enumerate(prompts):
        system, lines = prompt_lines(prompt)
        seen = lines[-context_lines:] if context_lines else lines  # what the writers and the judge see
        if reranking.lm is not None:
            reranking.lm.system = system
        if recorder is not None:
            recorder.ended.clear()
        try:
            result = reranking.reply(lines, seed=seed + i)
            plain = reranking.lm.propose(seen, 1, seed + i)[0][0] if reranking.lm is not None else None
        except ContextError:
            dropped["prompt_too_long_for_the_context"] += 1
            continue
        if result.best is None:
            dropped["no_candidate"] += 1
            continue
        plain_ended = recorder.last[0] if plain is not None and recorder is not None else True
        pick = random.Random(seed + i).choice(result.ranked)
        chosen = {"reranked": result.best, "unranked": pick}
        for arm, s in chosen.items():
            ended = True if s.source == "markov" else bool(recorder and recorder.ended.get(s.text, False))
            _append(arms[arm], s.text, lines[-1], ended, s.score, s.source)
        if plain is None:  # no chat model: plain is the writer without the editor
            _append(arms["plain"], pick.text, lines[-1], arms["unranked"]["ended"][-1], pick.score, pick.source)
        else:
            score = float(reranking.scorer.score(seen, [plain])[0])
            _append(arms["plain"], plain, lines[-1], plain_ended, score, "lm")
        samples.append({"id": prompt.get("id"), "language": prompt.get("language"), "prompt": lines[-1],
                        "candidates": len(result.ranked),
                        **{arm: {"text": a["text"][-1], "score": round(a["score"][-1], SCORE_DIGITS),
                                 "source": a["source"][-1]} for arm, a in arms.items()}})
    tokenizer = loaded.tokenizer if loaded is not None else None
    max_new = params.max_new_tokens
    return {
        "n": n, "candidates": source, "plain_source": "lm" if loaded is not None else "markov_random_pick",
        "length_unit": "tokens" if tokenizer is not None else "words", "prompts": len(samples),
        "dropped": dict(sorted(dropped.items())), "notes": notes,
        **{arm: _arm_metrics(a, tokenizer, max_new, thresholds) for arm, a in arms.items()},
        "samples": samples,
    }


def _append(arm: dict[str, list], text: str, prompt: str, ended: bool, score: float, source: str) -> None:
    for key, value in (("text", text), ("prompt", prompt), ("ended", ended), ("score", score), ("source", source)):
        arm[key].append(value)
