"""The evaluation sets (prompts.jsonl, probes_ru.jsonl, probes_en.jsonl; see README.md here) and
their checked loaders. Scoring lives in src/eval/probes.py, which re-exports these names.

Every malformed line ends the load with one ProbeFileError naming the file and line: bad JSON,
unknown or missing fields, empty messages, a last message not from the user, keyword sets that do
not tell the probe's own right and wrong continuations apart, duplicate ids.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from src.errors import InputError
from src.generation import chat_template

SETS_DIR = Path(__file__).parent
PROMPTS_FILE = SETS_DIR / "prompts.jsonl"
PROBE_FILES = {"ru": SETS_DIR / "probes_ru.jsonl", "en": SETS_DIR / "probes_en.jsonl"}
LANGUAGES = tuple(PROBE_FILES)
KINDS = ("place", "name", "number", "colour", "profession", "time", "food", "object", "animal",
         "topic", "language")
PROMPT_FIELDS = {"id": True, "language": True, "messages": True, "tags": False}
PROBE_FIELDS = {"id": True, "language": True, "kind": True, "messages": True, "fact": False,
                "right": True, "wrong": True, "keywords": True, "wrong_keywords": True, "tests": True}
MAX_CONTINUATIONS = 3


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
