"""Literature as text: the cleaned lib.ru corpus and a user's own plain-text books, read one way for
every stage that takes them (build_dialogues, reranker_data, markov)."""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from src.data.readers import read_parquet
from src.errors import InputError
from src.paths import resolve


def read_text_file(path: Path, counts: Counter[str] | None = None) -> str:
    """A plain-text book: UTF-8, or windows-1251 (older Russian files) when it is not UTF-8."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        if counts is not None:
            counts["documents_read_as_cp1251"] += 1
        return data.decode("cp1251", errors="replace")


def strip_apparatus(text: str, counts: Counter[str]) -> str:
    """A plain-text book without the editorial apparatus lib.ru-derived files carry (note marks like
    "[139]", footnote bodies, "Примечания" to the end): clean_librus's rules with their defaults,
    so a user's own copy of a work yields the same lines as the scraped one. Counted per rule."""
    from src.data.librus.rules import apply_rules

    cleaned, by_rule = apply_rules(text, _default_rules())
    for name, count in by_rule.items():
        if count.matches:
            counts[f"text_file_apparatus_{name}"] += count.matches
    return cleaned


@functools.lru_cache(maxsize=1)
def _default_rules() -> list[Any]:
    from src.config.sections.clean_librus import LibrusRulesConfig
    from src.data.librus.rules import build_rules

    return build_rules(LibrusRulesConfig())


def literature_texts(parquet_path: str, text_paths: Iterable[str], section: str, counts: Counter[str], *,
                     parquet_key: str = "documents", file_key: str = "documents",
                     apparatus_rules: bool = True) -> Iterator[tuple[str, str]]:
    """(work id, text) of each work in the cleaned lib.ru parquet (when `parquet_path` is set) and of
    each .txt file under `text_paths` (through `strip_apparatus` when `apparatus_rules`). `section`
    names the config section in error messages."""
    if parquet_path:
        path = resolve(parquet_path)
        if not path.is_file():
            raise InputError(f"{path}: not found ({section}.literature.path; run clean_librus, or set "
                             f"it to '' or {section}.literature.enabled=false)")
        table = read_parquet(path, ["doc_id", "text"], hint="rebuild it with the clean_librus stage")
        for doc_id, text in zip(table.column("doc_id").to_pylist(), table.column("text").to_pylist(),
                                strict=True):
            counts[parquet_key] += 1
            yield f"librus:{doc_id}", text or ""
    for entry in text_paths:
        root = resolve(entry)
        if not root.exists():
            raise InputError(f"{root}: no such file or folder ({section}.literature.text_paths)")
        for f in sorted(root.rglob("*.txt")) if root.is_dir() else [root]:
            counts[file_key] += 1
            text = read_text_file(f, counts)
            yield (f"text:{f.relative_to(root) if root.is_dir() else f.name}",
                   strip_apparatus(text, counts) if apparatus_rules else text)
