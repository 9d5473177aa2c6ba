"""Probe: `python -m src.data.subtitles clean FILE... [-o clean_subs.key=value ...]`.

Prints each file's cleaned utterances to stdout (one per line) and a one-line summary per file to
stderr. Exit status 0 when every file was read, 1 when some input is unreadable (missing, not text,
not a subtitle). The language filter and dedup are stage decisions: the summary only names them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from src.config import ConfigError, compose
from src.config.sections.clean_subs import CleanSubsConfig
from src.config.sections.normalize import NormalizeConfig
from src.data.subtitles.file_cleaner import FileResult, clean_subtitle_bytes, load_normalizer


def _summary(path: str, res: FileResult) -> str:
    rules = ", ".join(f"{k}={v}" for k, v in sorted(res.rules.items()) if v)
    if res.status == "unreadable":
        return f"{path}: UNREADABLE: {res.error}"
    return (f"{path}: {res.status} encoding={res.encoding} parser={res.parser} language={res.language}"
            f" cues={res.cues_in} lines={len(res.utterances)} warnings={len(res.warnings)}"
            + (f" rules: {rules}" if rules else ""))


def _sections(overrides: list[str]) -> tuple[CleanSubsConfig, Any]:
    """The probe's two config sections from conf/, each validated against its own schema only, so a
    half-edited unrelated section does not stop it."""
    composed = compose(overrides)
    sections = []
    for name, schema in (("clean_subs", CleanSubsConfig), ("normalize", NormalizeConfig)):
        try:
            merged = OmegaConf.merge(OmegaConf.structured(schema), composed[name])
        except OmegaConfBaseException as exc:
            raise ConfigError(f"conf/{name}: {str(exc).splitlines()[0]}") from None
        sections.append(OmegaConf.to_object(merged))
    return sections[0], sections[1]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m src.data.subtitles")
    sub = parser.add_subparsers(dest="command", required=True)
    clean = sub.add_parser("clean", help="print the cleaned utterances of SRT files")
    clean.add_argument("files", nargs="+")
    clean.add_argument("-o", "--override", action="append", default=[],
                       help="Hydra override, e.g. clean_subs.rules.parenthetical=false")
    clean.add_argument("--times", action="store_true", help="prefix each line with start/end ms and scene")
    args = parser.parse_args(argv)
    try:
        sc, normalize_cfg = _sections(args.override)
    except (ConfigError, OmegaConfBaseException) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    normalize = None
    if sc.normalize_text:
        normalize, problem = load_normalizer(normalize_cfg, sc.repair_mojibake)
        if problem:
            print(f"note: {problem}", file=sys.stderr)
    unreadable = 0
    for name in args.files:
        path = Path(name)
        try:
            data = path.read_bytes()
        except OSError as exc:
            print(f"{name}: UNREADABLE: {exc.strerror or exc}", file=sys.stderr)
            unreadable += 1
            continue
        res = clean_subtitle_bytes(data, path.name, sc, normalize)
        for utt in res.utterances:
            prefix = f"{utt.start_ms}\t{utt.end_ms}\t{utt.scene}\t" if args.times else ""
            print(prefix + utt.text)
        print(_summary(name, res), file=sys.stderr)
        unreadable += res.status == "unreadable"
    return 1 if unreadable else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
