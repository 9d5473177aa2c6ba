"""Context-retention probes: scoring, and the command that runs them on a checkpoint.

    python -m src.eval.probes data/models/sft/best.ckpt [--language ru|en] [--json OUT]

The sets and their loaders (`load_prompts`, `load_probes`, re-exported here) live in src/eval/sets/,
whose README.md says how to add a probe. A probe is a conversation whose last user question can
only be answered with a fact an earlier turn set (a city, a name, a number...), in the spirit of a
country-to-dishes test: a model that lost the earlier turn answers with some other city or dish.
Each probe is scored three ways:

- log-prob: the mean per-token log-prob of each `right` and each `wrong` continuation after the
  conversation (src/generation/scoring.py, the scorer KTO and the eval stage share). The probe is
  right when the best right continuation beats the best wrong one; margin = best right - best
  wrong (nats per token). With k right and m wrong continuations of no preference the chance of
  "right" is k / (k + m); the per-language mean of that is reported as `chance` (0.5 for 1 vs 1).
- no-fact control: the same, with the fact's turn replaced by a neutral one (`without_fact`). A
  small model can prefer the right answer whatever the context (pizza is likelier than pelmeni
  after any question about cooking); context_gain = margin - control margin is what the fact
  itself moved, and context_accuracy the share of probes it moved towards the right answer.
- keyword: a greedy reply through the batched engine is right when it holds one of the probe's
  `keywords` and none of its `wrong_keywords` (stems matched at word starts, case- and ё-blind).

Chat models read the chat template; models without it (pretrained) read the turns as plain
dialogue lines ("— text", the corpus's direct speech), and the reply is the next line. A
conversation longer than the model's context loses whole turns from the oldest, as the chat does
(`fit_to_context`); a probe whose fact-setting turn was lost is counted as `cropped` and left out
of the accuracies rather than scored as wrong.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from src.config.sections.generation import GenerationConfig
from src.config.sections.normalize import NormalizeConfig
from src.errors import InputError
from src.eval.sets import (  # noqa: F401 - the loaders are part of this module's interface
    LANGUAGES,
    PROBE_FILES,
    PROMPTS_FILE,
    SETS_DIR,
    Probe,
    ProbeFileError,
    has_keyword,
    keyword_verdict,
    load_probes,
    load_prompts,
)
from src.generation import chat_template
from src.generation.scoring import completion_logprobs, encode_pair
from src.text.normalize import normalize_text

PLAIN_TURN = "— "  # base models: each turn a line of direct speech, as in the corpora
# What replaces the fact in the no-fact control (`without_fact`), per language and role.
NEUTRAL = {"ru": {"system": "Ты — помощник.", "user": "Привет.", "assistant": "Здравствуйте."},
           "en": {"system": "You are an assistant.", "user": "Hi.", "assistant": "Hello."}}


# --- scoring ---------------------------------------------------------------------------------------
@dataclass
class _Fitted:
    probe: Probe
    ids: list[int] | None = None  # the prompt the model reads; None when it could not be fitted
    messages: list[dict[str, str]] | None = None
    dropped: int = 0  # oldest non-system messages left out
    cropped: str = ""  # why the probe is not scored ("" when it is)
    right: tuple[str, ...] = ()
    wrong: tuple[str, ...] = ()


def _render_plain(messages: Sequence[Mapping[str, str]]) -> str:
    """A base model's prompt: a system text as a line, every turn a dialogue line, and the
    dash that opens the reply's line."""
    return "".join((m["content"] if m["role"] == "system" else PLAIN_TURN + m["content"]) + "\n"
                   for m in messages) + PLAIN_TURN


def _fit_plain(tokenizer: Any, messages: list[dict[str, str]], budget: int) -> tuple[list[int], int]:
    """(ids, messages dropped): whole turns left out from the oldest until the prompt fits."""
    system = messages[:1] if messages[0]["role"] == "system" else []
    turns = messages[len(system):]
    for first in range(len(turns)):
        ids = tokenizer.encode(_render_plain(system + turns[first:]))
        if len(ids) <= budget:
            return ids, first
    raise chat_template.ContextError(f"the last message alone needs more than {budget} tokens")


def _fit(loaded: Any, probe: Probe, max_new_tokens: int, settings: Any) -> _Fitted:
    """The probe normalized like the training text, fitted to the context as the chat does."""
    tok, block, share = loaded.tokenizer, loaded.model.block_size, GenerationConfig.reply_share
    norm = lambda text: normalize_text(text, settings, language=probe.language)  # noqa: E731
    messages = [{"role": m["role"], "content": norm(m["content"])} for m in probe.messages]
    out = _Fitted(probe, right=tuple(map(norm, probe.right)), wrong=tuple(map(norm, probe.wrong)))
    try:
        if loaded.chat:
            fitted = chat_template.fit_to_context(tok, messages, block, max_new_tokens, share)
            out.ids, out.messages, out.dropped = fitted.ids, fitted.messages, fitted.dropped
        else:
            reserve = chat_template.reply_reserve(block, max_new_tokens, share)
            out.ids, out.dropped = _fit_plain(tok, messages, block - reserve)
    except chat_template.ContextError as exc:
        out.cropped = f"the question alone does not fit the context: {exc}"
        return out
    n_system = 1 if messages[0]["role"] == "system" else 0
    if probe.fact >= n_system and probe.fact - n_system < out.dropped:
        out.cropped = f"the fact (message {probe.fact}) was dropped with the {out.dropped} oldest message(s)"
    return out


def _pairs(loaded: Any, f: _Fitted) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, continuation ids) for each right then each wrong continuation."""
    texts = f.right + f.wrong
    if loaded.chat:
        return [encode_pair(loaded.tokenizer, f.messages, t, ended=False) for t in texts]
    return [(f.ids, loaded.tokenizer.encode(t)) for t in texts]


def _replies(loaded: Any, fitted: list[_Fitted], max_new_tokens: int, batch_size: int,
             seed: int) -> list[tuple[str, str]]:
    """Greedy (reply text, finish reason) per fitted prompt, through the batched engine."""
    from src.generation.engine import Engine
    from src.generation.sampling import SamplingParams

    tok = loaded.tokenizer
    engine = Engine(loaded.model, tok, precision=None, compile_model=False)
    params = SamplingParams(temperature=0.0, repetition_penalty=1.0, max_new_tokens=max_new_tokens)
    if loaded.chat:  # a tag spelled out of ordinary pieces ends the turn as well
        stops = dict(stop_ids=chat_template.special_ids(tok), stop_strings=chat_template.SPECIAL_TOKENS)
    else:  # a base model's reply is the next dialogue line
        stops = dict(stop_ids=[tok.eot_id], stop_strings=("\n",))
    order = sorted(range(len(fitted)), key=lambda i: len(fitted[i].ids))  # less left padding
    out: list[tuple[str, str]] = [("", "")] * len(fitted)
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        done = engine.generate([fitted[i].ids for i in rows], params, seed=seed, **stops)
        for i, c in zip(rows, done, strict=True):
            out[i] = (chat_template.clean_reply(c.text or "").strip(), c.finish_reason)
    return out


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def without_fact(probe: Probe) -> Probe:
    """The control: the probe with its fact message, and the assistant's answer to it (which may
    restate it), replaced by a neutral turn. A model that scores the probe as well without the fact
    prefers the right answer anyway (e.g. pizza whatever the country), and did not use the context."""
    messages = [dict(m) for m in probe.messages]
    gone = [probe.fact]
    if messages[probe.fact]["role"] == "user" and messages[probe.fact + 1]["role"] == "assistant":
        gone.append(probe.fact + 1)
    for i in gone:
        messages[i]["content"] = NEUTRAL[probe.language][messages[i]["role"]]
    return replace(probe, messages=tuple(messages))


def _fitting_pairs(loaded: Any, f: _Fitted) -> list[tuple[list[int], list[int]]] | None:
    """The probe's scoring pairs, or None (and f.cropped says why) when they cannot be scored."""
    if f.cropped:
        return None
    pairs = _pairs(loaded, f)
    if any(len(p) + len(c) - 1 > loaded.model.block_size for p, c in pairs):
        f.cropped = "a continuation does not fit beside the prompt"
        return None
    return pairs


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    done = [r for r in rows if not r["cropped"]]
    controlled = [r for r in done if r.get("context_gain") is not None]
    return {"n": len(done), "cropped": len(rows) - len(done),
            "logprob_accuracy": _mean([float(r["logprob_right"]) for r in done]),
            "keyword_accuracy": _mean([float(r["keyword_right"]) for r in done]),
            "mean_margin": _mean([r["margin"] for r in done]),
            "chance": _mean([r["chance"] for r in done]),
            "control_logprob_accuracy": _mean([float(r["control_margin"] > 0) for r in controlled]),
            "mean_context_gain": _mean([r["context_gain"] for r in controlled]),
            "context_accuracy": _mean([float(r["context_gain"] > 0) for r in controlled])}


def score_probes(loaded: Any, probes: Sequence[Probe], *, max_new_tokens: int = 48,
                 batch_size: int = 16, seed: int = 0) -> dict[str, Any]:
    """Score `probes` on a LoadedModel (src.generation.loading). Per language: n (probes scored),
    cropped, logprob_accuracy, keyword_accuracy, mean_margin, chance, and the no-fact control's
    control_logprob_accuracy, mean_context_gain, context_accuracy; "rows": one dict per probe.
    See the module docstring for what each figure means."""
    if loaded.tokenizer is None:
        raise InputError(f"{loaded.source}: probes need the model's tokenizer")
    if batch_size < 1 or max_new_tokens < 1:
        raise ValueError(f"batch_size and max_new_tokens must be >= 1 (got {batch_size}, {max_new_tokens})")
    model = loaded.model
    reserve = chat_template.reply_reserve(model.block_size, max_new_tokens, GenerationConfig.reply_share)
    settings = NormalizeConfig() if loaded.normalize is None else loaded.normalize
    fitted = [_fit(loaded, p, max_new_tokens, settings) for p in probes]
    pairs: list[tuple[list[int], list[int]]] = []
    scored: list[tuple[_Fitted, bool]] = []  # (probe, whether its control is scored too)
    for f in fitted:
        own = _fitting_pairs(loaded, f)
        if own is not None:
            control = _fitting_pairs(loaded, _fit(loaded, without_fact(f.probe), max_new_tokens, settings))
            pairs += own + (control or [])
            scored.append((f, control is not None))
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            logps, counts = completion_logprobs(model, [p for p, _ in pairs], [c for _, c in pairs],
                                                batch_size=batch_size, overflow="error")
        replies = _replies(loaded, [f for f, _ in scored], reserve, batch_size, seed) if scored else []
    finally:
        model.train(was_training)
    means = iter((logps / counts.clamp(min=1)).tolist())
    figures: dict[str, dict[str, Any]] = {}
    for (f, controlled), (reply, finish) in zip(scored, replies, strict=True):
        k, m = len(f.right), len(f.wrong)
        right, wrong = [next(means) for _ in range(k)], [next(means) for _ in range(m)]
        margin = max(right) - max(wrong)
        row = {"logprob_right": margin > 0, "margin": margin, "right_logprobs": right,
               "wrong_logprobs": wrong, "chance": k / (k + m), "control_margin": None, "context_gain": None,
               "keyword_right": keyword_verdict(reply, f.probe), "reply": reply, "finish_reason": finish}
        if controlled:
            control = [next(means) for _ in range(k + m)]
            row["control_margin"] = max(control[:k]) - max(control[k:])
            row["context_gain"] = margin - row["control_margin"]
        figures[f.probe.id] = row
    rows = [{"id": f.probe.id, "language": f.probe.language, "kind": f.probe.kind, "distance": f.probe.distance,
             "dropped_messages": f.dropped, "cropped": bool(f.cropped), "cropped_reason": f.cropped or None,
             **figures.get(f.probe.id, {})} for f in fitted]
    out: dict[str, Any] = {lang: _summary([r for r in rows if r["language"] == lang])
                           for lang in sorted({p.language for p in probes})}
    out["rows"] = rows
    return out


# --- command line ----------------------------------------------------------------------------------
def _fmt(value: float | None, spec: str = ".3f") -> str:
    return "n/a" if value is None else format(value, spec)


def report(result: Mapping[str, Any], probes: Sequence[Probe]) -> str:
    """Accuracy per language, then each failed or cropped probe with its reply."""
    by_id = {p.id: p for p in probes}
    lines = []
    for lang, s in result.items():
        if lang != "rows":
            lines.append(f"{lang}: {s['n']} probes scored, {s['cropped']} cropped; log-prob accuracy "
                         f"{_fmt(s['logprob_accuracy'])} (chance {_fmt(s['chance'])}, without the fact "
                         f"{_fmt(s['control_logprob_accuracy'])}), keyword accuracy {_fmt(s['keyword_accuracy'])}, "
                         f"mean margin {_fmt(s['mean_margin'], '+.3f')} nats/token, of which the fact "
                         f"{_fmt(s['mean_context_gain'], '+.3f')} (moved {_fmt(s['context_accuracy'])} of "
                         "the probes towards the right answer)")
    for r in result["rows"]:
        p = by_id[r["id"]]
        if r["cropped"]:
            lines.append(f"- {r['id']} cropped: {r['cropped_reason']}")
        elif not (r["logprob_right"] and r["keyword_right"]):
            what = [w for w, ok in (("log-prob", r["logprob_right"]), ("keyword", r["keyword_right"])) if not ok]
            lines.append(f"- {r['id']} ({p.kind}, distance {r['distance']}) failed {' and '.join(what)}: "
                         f"margin {r['margin']:+.3f}; asked {p.messages[-1]['content']!r}; "
                         f"right {list(p.right)}; reply {r['reply']!r}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    from src.generation.loading import load_for_generation

    ap = argparse.ArgumentParser(prog="python -m src.eval.probes", description=__doc__.split("\n\n")[0])
    ap.add_argument("model", help="a checkpoint (.ckpt) or an export directory")
    ap.add_argument("--language", choices=LANGUAGES, action="append",
                    help="only these probes (repeatable; default all)")
    ap.add_argument("--probes", nargs="+", help="probe files (default: the shipped sets)")
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, help="write the figures and rows here")
    args = ap.parse_args(argv)
    try:
        probes = load_probes(args.probes, args.language)
        result = score_probes(load_for_generation(args.model), probes, max_new_tokens=args.max_new_tokens,
                              batch_size=args.batch_size, seed=args.seed)
    except InputError as exc:
        print(f"error: probes: {exc}", file=sys.stderr)
        return 1
    print(report(result, probes))
    if args.json:
        from src.atomic_io import write_json_atomic

        write_json_atomic(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
