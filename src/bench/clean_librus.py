"""Cleaning throughput on a directory of plain texts (default: ../shared/data/corpus_ru).

`python -m src.bench.clean_librus [--root DIR] [--workers N] [--top K]` runs every .txt under
DIR through the local-directory path of clean_librus (read bytes, decode, parse as plain text,
reflow, rules, normalize) on a process pool and prints MB, seconds, MB/s, docs/s and per-rule
counts. On clean literary text the rules should remove next to nothing, so the per-rule figures
double as the false-positive measurement; `--top` lists the files the rules cut most.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from omegaconf import OmegaConf

from src.config import compose, load_config
from src.data.librus.clean import run_pool
from src.data.librus.document import clean_local_file
from src.data.librus.rules import RULE_ORDER
from src.paths import shared_data_dir


def main(argv: list[str] | None = None) -> None:
    cfg = load_config(compose())
    conf = OmegaConf.to_object(cfg.clean_librus)
    normalize = OmegaConf.to_object(cfg.normalize)
    parser = argparse.ArgumentParser(prog="python -m src.bench.clean_librus")
    parser.add_argument("--root", type=Path, default=shared_data_dir() / conf.bench_subdir)
    parser.add_argument("--workers", type=int, default=conf.workers)
    parser.add_argument("--top", type=int, default=10, help="list the K files the rules cut most")
    args = parser.parse_args(argv)
    if not args.root.is_dir():
        raise SystemExit(f"error: {args.root} is not a directory (../shared/data absent?)")
    conf.workers = args.workers
    paths = sorted(str(p) for p in args.root.rglob("*.txt"))
    total_bytes = sum(Path(p).stat().st_size for p in paths)

    started = time.perf_counter()
    docs = list(run_pool(clean_local_file, paths, conf, normalize, "bench clean_librus"))
    seconds = time.perf_counter() - started

    mb = total_bytes / 1e6
    chars_in = sum(d.chars_in for d in docs)
    chars_out = sum(d.n_chars for d in docs if d.ok)
    print(f"root      {args.root}")
    print(f"files     {len(paths)} ({sum(d.ok for d in docs)} ok), {mb:.1f} MB, {chars_in:,} chars in, "
          f"{chars_out:,} chars out")
    print(f"time      {seconds:.1f} s on {args.workers} worker(s): {mb / seconds:.2f} MB/s, "
          f"{len(paths) / seconds:.1f} docs/s")
    print(f"reflowed  {sum(d.reflowed for d in docs)} files; mojibake repaired in "
          f"{sum(bool(d.mojibake_fixed) for d in docs)}; encodings "
          f"{sorted({d.encoding or '?' for d in docs})}")
    print(f"{'rule':<20}{'matches':>10}{'chars removed':>15}{'share of input':>16}")
    for name in RULE_ORDER:
        matches = sum(d.rules.get(name, (0, 0))[0] for d in docs)
        chars = sum(d.rules.get(name, (0, 0))[1] for d in docs)
        print(f"{name:<20}{matches:>10,}{chars:>15,}{chars / max(chars_in, 1):>16.4%}")
    for d, p in zip(docs, paths, strict=True):
        if not d.ok:
            print(f"dropped   {p}: {d.reason}")
    ranked = sorted(zip(docs, paths, strict=True), key=lambda dp: -sum(c for _, c in dp[0].rules.values()))
    for d, p in ranked[: args.top]:
        cut = {k: v for k, v in d.rules.items() if v[1]}
        if cut:
            print(f"top cut   {Path(p).relative_to(args.root)}: {d.chars_in:,} chars, {cut}")


if __name__ == "__main__":
    main()
