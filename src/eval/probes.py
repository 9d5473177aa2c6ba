"""Context-retention probes and the fixed generation prompt set (src/eval/sets/, see its README.md).

    python -m src.eval.probes data/models/sft/best.ckpt [--language ru|en] [--json OUT]

A probe is a conversation whose last user question can only be answered with a fact an earlier
turn set (a city, a name, a number...), in the spirit of a country-to-dishes test: a model that
lost the earlier turn answers with some other city or dish. Each probe is scored two ways:

- log-prob: the mean per-token log-prob of each `right` and each `wrong` continuation after the
  conversation (src/generation/scoring.py, the scorer KTO and the eval stage share). The probe is
  right when the best right continuation beats the best wrong one; margin = best right - best
  wrong (nats per token). With k right and m wrong continuations of no preference the chance of
  "right" is k / (k + m); the per-language mean of that is reported as `chance` (0.5 for 1 vs 1).
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
import json
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from src.config.sections.generation import GenerationConfig
from src.config.sections.normalize import NormalizeConfig
from src.errors import InputError
from src.generation import chat_template
from src.generation.scoring import completion_logprobs, encode_pair
from src.text.normalize import normalize_text

SETS_DIR = Path(__file__).parent / "sets"
PROMPTS_FILE = SETS_DIR / "prompts.jsonl"
PROBE_FILES = {"ru": SETS_DIR / "probes_ru.jsonl", "en": SETS_DIR / "probes_en.jsonl"}
LANGUAGES = tuple(PROBE_FILES)
KINDS = ("place", "name", "number", "colour", "profession", "time", "food", "object", "animal",
         "topic", "language")
PROMPT_FIELDS = {"id": True, "language": True, "messages": True, "tags": False}
PROBE_FIELDS = {"id": True, "language": True, "kind": True, "messages": True, "fact": False,
                "right": True, "wrong": True, "keywords": True, "wrong_keywords": True, "tests": True}
MAX_CONTINUATIONS = 3
PLAIN_TURN = "— "  # base models: each turn a line of direct speech, as in the corpora


class ProbeFileError(InputError, ValueError):
    """A malformed line of a prompt or probe file; the message names the file and line."""


@dataclass(frozen=True)
class Probe:
    id: str
    language: str
    kind: str
    messages: tuple[Mapping[str, str], ...]
    right: tuple[str, ...]
    wrong: tuple[str, ...]
    keywords: tuple[str, ...]
    wrong_keywords: tuple[str, ...]
    tests: str
    fact: int = 0  # index of the message that sets the fact the last question needs
    where: str = ""  # file:line, for messages

    @property
    def distance(self) -> int:
        """User turns from the fact to the final question, that one included (1: asked next)."""
        later = self.messages[self.fact + 1:]
        return sum(1 for m in later if m["role"] == "user")


# --- reading ---------------------------------------------------------------------------------------
def _records(path: Path) -> Iterable[tuple[str, dict[str, Any]]]:
    """(file:line, object) per non-blank line of a JSONL file."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ProbeFileError(f"{path}: cannot be read ({type(exc).__name__}: {exc})") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ProbeFileError(f"{where}: not valid JSON ({exc.msg}, column {exc.colno})") from None
        if not isinstance(record, dict):
            raise ProbeFileError(f"{where}: expected a JSON object, found {type(record).__name__}")
        yield where, record


def _check_fields(where: str, record: Mapping[str, Any], spec: Mapping[str, bool]) -> None:
    unknown = sorted(set(record) - set(spec))
    if unknown:
        raise ProbeFileError(f"{where}: unknown field(s) {unknown}; allowed: {sorted(spec)}")
    missing = [k for k, required in spec.items() if required and k not in record]
    if missing:
        raise ProbeFileError(f"{where}: missing field(s) {missing}")


def _text(where: str, key: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ProbeFileError(f"{where}: '{key}' must be a non-empty string, got {value!r}")
    return value


def _texts(where: str, key: str, value: Any, most: int | None = None) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or (most is not None and len(value) > most):
        size = f"1-{most}" if most else "at least 1"
        raise ProbeFileError(f"{where}: '{key}' must be a list of {size} strings, got {value!r}")
    for i, item in enumerate(value):
        _text(where, f"{key}[{i}]", item)
        if chat_template.special_tokens_in(item):
            raise ProbeFileError(f"{where}: '{key}[{i}]' holds a special token string")
    return tuple(value)


def _messages(where: str, value: Any) -> tuple[dict[str, str], ...]:
    if not isinstance(value, list) or not value:
        raise ProbeFileError(f"{where}: 'messages' must be a non-empty list of {{role, content}}")
    for i, m in enumerate(value):
        if not isinstance(m, dict) or set(m) != {"role", "content"}:
            raise ProbeFileError(f"{where}: messages[{i}] must be an object with exactly 'role' and "
                                 f"'content', got {m!r}")
        _text(where, f"messages[{i}].content", m["content"])
    try:
        chat_template.validate(value)
    except ValueError as exc:
        raise ProbeFileError(f"{where}: messages: {exc}") from None
    if value[-1]["role"] != "user":
        raise ProbeFileError(f"{where}: the last message must be the user's (the question), "
                             f"found {value[-1]['role']!r}")
    return tuple(dict(m) for m in value)


def _language(where: str, value: Any) -> str:
    if value not in LANGUAGES:
        raise ProbeFileError(f"{where}: 'language' must be one of {list(LANGUAGES)}, got {value!r}")
    return value


def _unique(where: str, ident: str, seen: dict[str, str]) -> None:
    if ident in seen:
        raise ProbeFileError(f"{where}: duplicate id {ident!r} (first at {seen[ident]})")
    seen[ident] = where


def load_prompts(path: str | Path | None = None) -> list[dict[str, Any]]:
    """The generation prompt set: dicts of id, language, messages (last one the user's), tags."""
    path = Path(path) if path is not None else PROMPTS_FILE
    prompts, seen = [], {}
    for where, r in _records(path):
        _check_fields(where, r, PROMPT_FIELDS)
        _unique(where, _text(where, "id", r["id"]), seen)
        tags = _texts(where, "tags", r["tags"]) if "tags" in r else ()
        prompts.append({"id": r["id"], "language": _language(where, r["language"]),
                        "messages": [dict(m) for m in _messages(where, r["messages"])], "tags": list(tags)})
    if not prompts:
        raise ProbeFileError(f"{path}: no prompts")
    return prompts


def fold(text: str) -> str:
    """What keyword matching compares: lower case, ё read as е."""
    return text.lower().replace("ё", "е")


def _keyword_pattern(stems: Sequence[str]) -> re.Pattern[str]:
    # A stem matches at a word start ("казан" in "в казани", not "рим" in "примерно"); a number
    # must end there too ("7" is not in "17" or "70").
    parts = [re.escape(s) + (r"(?!\d)" if s[-1].isdigit() else "") for s in stems]
    return re.compile(r"(?<!\w)(?:" + "|".join(parts) + ")")


def has_keyword(text: str, stems: Sequence[str]) -> bool:
    return bool(stems) and _keyword_pattern(stems).search(fold(text)) is not None


def keyword_verdict(reply: str, probe: Probe) -> bool:
    """A generated reply answers the probe: a right stem in it and no wrong one."""
    return has_keyword(reply, probe.keywords) and not has_keyword(reply, probe.wrong_keywords)


def _stems(where: str, key: str, value: Any) -> tuple[str, ...]:
    stems = _texts(where, key, value)
    for s in stems:
        if s != fold(s).strip() or (len(s) < 3 and not s.isdigit()):
            raise ProbeFileError(f"{where}: '{key}' entry {s!r} must be lower case without ё or "
                                 "spaces at the ends, at least 3 characters (or a number)")
    return stems


def _probe(where: str, r: Mapping[str, Any]) -> Probe:
    _check_fields(where, r, PROBE_FIELDS)
    if r.get("kind") not in KINDS:
        raise ProbeFileError(f"{where}: 'kind' must be one of {list(KINDS)}, got {r.get('kind')!r}")
    messages = _messages(where, r["messages"])
    fact = r.get("fact", 0)
    if not isinstance(fact, int) or isinstance(fact, bool) or not 0 <= fact < len(messages) - 1:
        raise ProbeFileError(f"{where}: 'fact' must index a message before the last one "
                             f"(0..{len(messages) - 2}), got {fact!r}")
    probe = Probe(id=_text(where, "id", r["id"]), language=_language(where, r["language"]), kind=r["kind"],
                  messages=messages, right=_texts(where, "right", r["right"], MAX_CONTINUATIONS),
                  wrong=_texts(where, "wrong", r["wrong"], MAX_CONTINUATIONS),
                  keywords=_stems(where, "keywords", r["keywords"]),
                  wrong_keywords=_stems(where, "wrong_keywords", r["wrong_keywords"]),
                  tests=_text(where, "tests", r["tests"]), fact=fact, where=where)
    # The keyword sets must tell the probe's own continuations apart, and the question must not
    # hold them (a reply that only repeats the question would count).
    for side, texts in (("right", probe.right), ("wrong", probe.wrong)):
        own, other = ((probe.keywords, probe.wrong_keywords) if side == "right"
                      else (probe.wrong_keywords, probe.keywords))
        for text in texts:
            if not has_keyword(text, own) or has_keyword(text, other):
                raise ProbeFileError(f"{where}: {side} continuation {text!r} must hold one of its "
                                     f"keywords {list(own)} and none of {list(other)}")
    if has_keyword(messages[-1]["content"], probe.keywords + probe.wrong_keywords):
        raise ProbeFileError(f"{where}: the last question holds a keyword; a reply repeating it would count")
    return probe


def load_probes(paths: Sequence[str | Path] | None = None,
                languages: Sequence[str] | None = None) -> list[Probe]:
    """Probes of `paths` (default: the shipped probes_ru.jsonl and probes_en.jsonl), those of
    `languages` only when given. Ids are unique across the files."""
    if languages is not None:
        unknown = sorted(set(languages) - set(LANGUAGES))
        if unknown:
            raise InputError(f"unknown probe language(s) {unknown}; known: {list(LANGUAGES)}")
    if paths is None:
        paths = [PROBE_FILES[lang] for lang in (languages or LANGUAGES)]
    probes: list[Probe] = []
    seen: dict[str, str] = {}
    for path in map(Path, paths):
        found = 0
        for where, record in _records(path):
            probe = _probe(where, record)
            _unique(where, probe.id, seen)
            found += 1
            if languages is None or probe.language in languages:
                probes.append(probe)
        if not found:
            raise ProbeFileError(f"{path}: no probes")
    return probes


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


def score_probes(loaded: Any, probes: Sequence[Probe], *, max_new_tokens: int = 48,
                 batch_size: int = 16, seed: int = 0) -> dict[str, Any]:
    """Score `probes` on a LoadedModel (src.generation.loading): per language n (probes scored),
    cropped, logprob_accuracy, keyword_accuracy, mean_margin, chance; and "rows", one dict per probe.
    See the module docstring for what each figure means."""
    if loaded.tokenizer is None:
        raise InputError(f"{loaded.source}: probes need the model's tokenizer")
    if batch_size < 1 or max_new_tokens < 1:
        raise ValueError(f"batch_size and max_new_tokens must be >= 1 (got {batch_size}, {max_new_tokens})")
    model = loaded.model
    block = model.block_size
    reserve = chat_template.reply_reserve(block, max_new_tokens, GenerationConfig.reply_share)
    settings = NormalizeConfig() if loaded.normalize is None else loaded.normalize
    fitted = [_fit(loaded, p, max_new_tokens, settings) for p in probes]
    scored = [f for f in fitted if not f.cropped]
    pairs: list[tuple[list[int], list[int]]] = []
    for f in scored:
        f_pairs = _pairs(loaded, f)
        if any(len(p) + len(c) - 1 > block for p, c in f_pairs):
            f.cropped = "a continuation does not fit beside the prompt"
        else:
            pairs += f_pairs
    scored = [f for f in scored if not f.cropped]
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            logps, counts = completion_logprobs(model, [p for p, _ in pairs], [c for _, c in pairs],
                                                batch_size=batch_size, overflow="error")
        replies = _replies(loaded, scored, reserve, batch_size, seed) if scored else []
    finally:
        model.train(was_training)
    means = (logps / counts.clamp(min=1)).tolist()
    rows: dict[str, dict[str, Any]] = {}
    at = 0
    for f, (reply, finish) in zip(scored, replies, strict=True):
        k, m = len(f.right), len(f.wrong)
        right, wrong = means[at:at + k], means[at + k:at + k + m]
        at += k + m
        margin = max(right) - max(wrong)
        rows[f.probe.id] = {"logprob_right": margin > 0, "margin": margin, "right_logprobs": right,
                            "wrong_logprobs": wrong, "keyword_right": keyword_verdict(reply, f.probe),
                            "reply": reply, "finish_reason": finish, "chance": k / (k + m)}
    out: dict[str, Any] = {}
    all_rows = []
    for f in fitted:
        p = f.probe
        row = {"id": p.id, "language": p.language, "kind": p.kind, "distance": p.distance,
               "dropped_messages": f.dropped, "cropped": bool(f.cropped), "cropped_reason": f.cropped or None}
        row.update(rows.get(p.id, {}))
        all_rows.append(row)
    for lang in sorted({p.language for p in probes}):
        mine = [r for r in all_rows if r["language"] == lang]
        done = [r for r in mine if not r["cropped"]]
        out[lang] = {"n": len(done), "cropped": len(mine) - len(done),
                     "logprob_accuracy": _mean([float(r["logprob_right"]) for r in done]),
                     "keyword_accuracy": _mean([float(r["keyword_right"]) for r in done]),
                     "mean_margin": _mean([r["margin"] for r in done]),
                     "chance": _mean([r["chance"] for r in done])}
    out["rows"] = all_rows
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
                         f"{_fmt(s['logprob_accuracy'])} (chance {_fmt(s['chance'])}), keyword accuracy "
                         f"{_fmt(s['keyword_accuracy'])}, mean margin {_fmt(s['mean_margin'], '+.3f')} nats/token")
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
