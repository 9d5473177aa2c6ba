"""Probe: `python -m src.data.librus clean PATH_OR_URL` prints one page's cleaned text to stdout.

Uses the composed config (conf/, with any Hydra overrides after the page). A URL is fetched with
httpx; a file is read as bytes and decoded like the crawler does. Rule counts go to stderr.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from omegaconf import OmegaConf

from src.config import compose, load_config
from src.data.librus.decode import decode_bytes
from src.data.librus.document import Cleaner, clean_page


def _fetch(source: str) -> tuple[bytes, str | None]:
    if source.startswith(("http://", "https://")):
        import httpx

        response = httpx.get(source, follow_redirects=True, timeout=30.0)
        response.raise_for_status()
        return response.content, response.charset_encoding
    return Path(source).read_bytes(), None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m src.data.librus")
    sub = parser.add_subparsers(dest="command", required=True)
    clean = sub.add_parser("clean", help="print the cleaned text of one page (file or URL)")
    clean.add_argument("source", help="a page file (.html/.txt/.shtml) or an http(s) URL")
    clean.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. clean_librus.rules.note_markers=false")
    args = parser.parse_args(argv)

    cfg = load_config(compose(args.overrides))
    cleaner = Cleaner.build(OmegaConf.to_object(cfg.clean_librus), OmegaConf.to_object(cfg.normalize))
    try:
        data, declared = _fetch(args.source)
        page, encoding = decode_bytes(data, declared)
    except (OSError, ValueError) as exc:
        print(f"error: {args.source}: {exc}", file=sys.stderr)
        return 1
    doc = clean_page(page, cleaner, args.source)
    print(f"# {args.source}: {encoding}, format={doc.format}, kind={doc.kind}, "
          f"{doc.chars_in} -> {doc.n_chars} chars", file=sys.stderr)
    for name, (matches, chars) in doc.rules.items():
        if matches:
            print(f"#   {name}: {matches} matches, {chars} chars", file=sys.stderr)
    if not doc.text:
        print(f"error: {args.source}: {doc.reason}", file=sys.stderr)
        return 1
    if not doc.ok:  # e.g. shorter than min_doc_chars: the stage would drop it, the probe still shows it
        print(f"# note: the stage would drop this page: {doc.reason}", file=sys.stderr)
    sys.stdout.write(doc.text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
