"""Benchmark: parse+clean throughput of the subtitle cleaner.

`python -m src.bench.clean_subs [--root DIR] [--workers N] [--repeat K]` cleans every *.srt under DIR
(default: ../shared/data/srt_real) K times in a pool of N processes, the way the stage does, and
reports wall-clock MB/s and files/s per repeat (best and median, and per worker) and MB per CPU
second of the workers, the per-core figure that other load on a shared machine disturbs least.
Files are read into memory first, so disk speed is not measured.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from src.config import compose
from src.config.sections.clean_subs import CleanSubsConfig
from src.config.sections.normalize import NormalizeConfig
from src.data.subtitles.file_cleaner import clean_subtitle_bytes, load_normalizer
from src.data.subtitles.fluff import FluffPatterns
from src.paths import shared_data_dir
from src.worker_pool import process_pool

_STATE: dict[str, Any] = {}


def _init(cfg: CleanSubsConfig, normalize_cfg: NormalizeConfig) -> None:
    normalize = load_normalizer(normalize_cfg, cfg.repair_mojibake)[0] if cfg.normalize_text else None
    _STATE.update(cfg=cfg, normalize=normalize, patterns=FluffPatterns.build(cfg.rules))
    gc.freeze()  # as the stage's pool workers do (src.data.subtitles.stage._init_pool_worker)


def _clean(item: tuple[str, bytes]) -> tuple[int, float]:
    """Lines out and the CPU seconds the worker spent (robust to other load on the machine)."""
    name, data = item
    started = time.process_time()
    res = clean_subtitle_bytes(data, name, _STATE["cfg"], _STATE["normalize"], _STATE["patterns"])
    return len(res.utterances), time.process_time() - started


def _configs() -> tuple[CleanSubsConfig, NormalizeConfig]:
    composed = compose()
    sc = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(CleanSubsConfig), composed.clean_subs))
    nc = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(NormalizeConfig), composed.normalize))
    return sc, nc


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m src.bench.clean_subs", description=__doc__)
    parser.add_argument("--root", type=Path, default=shared_data_dir() / "srt_real")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    paths = sorted(args.root.rglob("*.srt"))
    if not paths:
        print(f"error: no .srt files under {args.root}", file=sys.stderr)
        return 2
    items = [(p.name, p.read_bytes()) for p in paths]
    total_mb = sum(len(d) for _, d in items) / 1e6
    sc, nc = _configs()
    print(f"{len(items)} files, {total_mb:.3f} MB from {args.root}; workers={args.workers}")
    rates, cpu_rates = [], []
    with process_pool(args.workers, _init, (sc, nc)) as pool:
        list(pool.map(_clean, items[:args.workers]))  # warm the workers (imports, compiled regexes)
        for k in range(args.repeat):
            started = time.perf_counter()
            done = list(pool.map(_clean, items, chunksize=1))
            seconds = time.perf_counter() - started
            lines, cpu = sum(n for n, _ in done), sum(c for _, c in done)
            rates.append(total_mb / seconds)
            cpu_rates.append(total_mb / cpu)
            print(f"repeat {k + 1}: {seconds:.3f} s wall, {total_mb / seconds:.2f} MB/s, "
                  f"{len(items) / seconds:.1f} files/s; {cpu:.3f} CPU s, {total_mb / cpu:.2f} MB/s per "
                  f"CPU second; {lines} lines")
    best, median = max(rates), statistics.median(rates)
    print(f"wall: best {best:.2f} MB/s ({best / args.workers:.2f} MB/s per worker, "
          f"{best / total_mb * len(items):.1f} files/s), median {median:.2f} MB/s")
    print(f"per core (MB per CPU second): best {max(cpu_rates):.2f}, median {statistics.median(cpu_rates):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
