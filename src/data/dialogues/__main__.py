"""Probe: `python -m src.data.dialogues extract PATH [-o build_dialogues.key=value ...]`.

Prints the conversations `build_dialogues` would extract from one file, one JSON object per line
(`{"conversation": [...], "source": ..., "doc_id": ...}`), and the extraction counts to stderr:
- an SRT file (`.srt`): cleaned like `clean_subs` does, then cut into windows of one scene;
- a lib.ru page (`.html`, `.htm`, `.shtml`, or a text whose start looks like HTML): cleaned like
  `clean_librus` does, then its direct speech;
- any other file: plain text (UTF-8, or windows-1251), its direct speech.
Conversations are normalized with the `normalize` section when `build_dialogues.normalize_text` is on.
Exit status 0 on success, 1 when the file cannot be read or holds nothing extractable, 2 on a bad override.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from src.config import ConfigError, compose, load_config
from src.data.dialogues.build import literature_conversations, read_text_file
from src.data.dialogues.conversation import alternating
from src.data.dialogues.windows import line_windows
from src.errors import InputError

HTML_SUFFIXES = (".html", ".htm", ".shtml")


def _srt(path: Path, cfg: Any, counts: Counter[str]) -> Iterator[tuple[list[str], str]]:
    from src.data.subtitles.file_cleaner import clean_subtitle_bytes, load_normalizer

    sc = OmegaConf.to_object(cfg.clean_subs)
    normalize = None
    if sc.normalize_text:
        normalize, _ = load_normalizer(OmegaConf.to_object(cfg.normalize), sc.repair_mojibake)
    res = clean_subtitle_bytes(path.read_bytes(), path.name, sc, normalize)
    if res.status == "unreadable":
        raise InputError(f"{path}: {res.error}")
    s = cfg.build_dialogues.subtitles
    rows = ((path.name, res.language, i, u.start_ms, u.end_ms, u.scene, u.text)
            for i, u in enumerate(res.utterances))
    # The probe shows what the file turns into whatever its language (the stage filters languages).
    for win in line_windows(rows, [res.language], s.max_gap_ms, s.window.min_turns, s.window.max_turns,
                            s.window.max_turn_chars, counts):
        yield win.turns, f"subtitles:{path.name}:{win.first_line}"


def _page_text(path: Path, cfg: Any) -> str:
    from src.data.librus.decode import decode_bytes
    from src.data.librus.document import Cleaner, clean_page

    page, _ = decode_bytes(path.read_bytes(), None)
    cleaner = Cleaner.build(OmegaConf.to_object(cfg.clean_librus), OmegaConf.to_object(cfg.normalize))
    doc = clean_page(page, cleaner, str(path))
    if not doc.text:
        raise InputError(f"{path}: {doc.reason}")
    return doc.text


def extract(path: Path, cfg: Any, counts: Counter[str]) -> Iterator[dict[str, Any]]:
    """The conversations of one file, as the stage's records (before the contract checks)."""
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if path.suffix.lower() == ".srt":
        found: Iterator[tuple[list[str], str]] = _srt(path, cfg, counts)
        source = "subtitles"
    else:
        text = read_text_file(path)
        looks_html = path.suffix.lower() in HTML_SUFFIXES or "<html" in text[:2000].lower()
        text = _page_text(path, cfg) if looks_html else text
        lcfg = cfg.build_dialogues.literature
        found = ((turns, f"text:{path.name}#{k}")
                 for k, turns in enumerate(literature_conversations(text, lcfg, counts)))
        source = "literature"
    normalize = None
    if cfg.build_dialogues.normalize_text:
        from src.text.normalize import as_normalize_config, normalize_text

        ncfg = as_normalize_config(OmegaConf.to_container(cfg.normalize, resolve=True))
        normalize = lambda t: normalize_text(t, ncfg).strip()  # noqa: E731
    for turns, doc_id in found:
        if normalize is not None:
            turns = [normalize(t) for t in turns]
        yield {"conversation": alternating(turns), "source": source, "doc_id": doc_id}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m src.data.dialogues")
    sub = parser.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("extract", help="print the conversations of a .txt, lib.ru page or .srt file")
    ex.add_argument("path")
    ex.add_argument("-o", "--override", action="append", default=[],
                    help="Hydra override, e.g. build_dialogues.literature.window.max_turns=4")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(compose(args.override))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    counts: Counter[str] = Counter()
    n = turns = 0
    try:
        for record in extract(Path(args.path), cfg, counts):
            sys.stdout.write(json.dumps(record, ensure_ascii=False) + "\n")
            n += 1
            turns += len(record["conversation"])
    except (InputError, OSError) as exc:
        print(f"error: {args.path}: {exc}", file=sys.stderr)
        return 1
    details = ", ".join(f"{k}={v}" for k, v in sorted(counts.items()))
    print(f"# {args.path}: {n} conversations, {turns} turns ({details})", file=sys.stderr)
    return 0 if n else 1


if __name__ == "__main__":
    sys.exit(main())
