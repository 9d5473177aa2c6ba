"""Benchmark: dialogue extraction on the real corpora in ../shared/data.

`python -m src.bench.build_dialogues [--root DIR]` extracts conversations the way `build_dialogues`
does, in one process:
- corpus_ru/ (every .txt: direct speech of Russian classics, author's remarks removed);
- srt_corpus/ (613 English TV episodes in their zip archives, 10 films) and srt_real/ (23 files):
  each SRT cleaned as `clean_subs` does, then cut into windows within one scene.
Prints per corpus: files, MB, conversations, turns, seconds (and the seconds of extraction alone,
without SRT cleaning). Files are read into memory first, so disk speed is not measured.
"""

from __future__ import annotations

import argparse
import sys
import time
import zipfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from src.config import compose, load_config
from src.data.dialogues.build import literature_conversations
from src.data.dialogues.windows import line_windows
from src.paths import shared_data_dir


def _srt_files(root: Path) -> Iterator[tuple[str, bytes]]:
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() == ".srt":
            yield str(path.relative_to(root)), path.read_bytes()
        elif path.suffix.lower() == ".zip":
            with zipfile.ZipFile(path) as zf:
                for name in sorted(zf.namelist()):
                    if name.lower().endswith(".srt"):
                        yield f"{path.name}/{name}", zf.read(name)


def bench_text(root: Path, cfg: Any) -> dict[str, Any]:
    files = [(p, p.read_bytes()) for p in sorted(root.rglob("*.txt"))]
    counts: Counter[str] = Counter()
    n = turns = 0
    started = time.perf_counter()
    for _, data in files:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            text = data.decode("cp1251", errors="replace")
        for conv in literature_conversations(text, cfg.build_dialogues.literature, counts):
            n += 1
            turns += len(conv)
    seconds = time.perf_counter() - started
    return {"files": len(files), "mb": sum(len(d) for _, d in files) / 1e6, "conversations": n,
            "turns": turns, "seconds": seconds, "extract_seconds": seconds, "counts": dict(counts)}


def bench_srt(root: Path, cfg: Any) -> dict[str, Any]:
    from src.data.subtitles.file_cleaner import clean_subtitle_bytes, load_normalizer
    from src.data.subtitles.fluff import FluffPatterns

    sc = OmegaConf.to_object(cfg.clean_subs)
    normalize, _ = load_normalizer(OmegaConf.to_object(cfg.normalize), sc.repair_mojibake)
    patterns = FluffPatterns.build(sc.rules)
    files = list(_srt_files(root))
    s = cfg.build_dialogues.subtitles
    counts: Counter[str] = Counter()
    n = turns = 0
    extract = 0.0
    started = time.perf_counter()
    for name, data in files:
        res = clean_subtitle_bytes(data, name, sc, normalize if sc.normalize_text else None, patterns)
        t0 = time.perf_counter()
        rows = ((name, res.language, i, u.start_ms, u.end_ms, u.scene, u.text)
                for i, u in enumerate(res.utterances))
        for win in line_windows(rows, list(s.languages), s.max_gap_ms, s.window.min_turns,
                                s.window.max_turns, s.window.max_turn_chars, counts):
            n += 1
            turns += len(win.turns)
        extract += time.perf_counter() - t0
    seconds = time.perf_counter() - started
    return {"files": len(files), "mb": sum(len(d) for _, d in files) / 1e6, "conversations": n,
            "turns": turns, "seconds": seconds, "extract_seconds": extract, "counts": dict(counts)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m src.bench.build_dialogues")
    parser.add_argument("--root", default=None, help="the shared data folder (default ../shared/data)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. build_dialogues.literature.window.max_turns=4")
    args = parser.parse_args(argv)
    root = Path(args.root) if args.root else shared_data_dir()
    cfg = load_config(compose(args.overrides))
    corpora = [("corpus_ru", bench_text), ("srt_corpus", bench_srt), ("srt_real", bench_srt)]
    missing = [name for name, _ in corpora if not (root / name).is_dir()]
    if missing:
        print(f"error: {root}: missing {missing} (the shared real data)", file=sys.stderr)
        return 1
    print(f"{'corpus':<12}{'files':>7}{'MB':>8}{'convs':>9}{'turns':>9}{'seconds':>9}{'extract s':>11}")
    for name, fn in corpora:
        r = fn(root / name, cfg)
        print(f"{name:<12}{r['files']:>7}{r['mb']:>8.1f}{r['conversations']:>9}{r['turns']:>9}"
              f"{r['seconds']:>9.1f}{r['extract_seconds']:>11.1f}", flush=True)
        print("    " + ", ".join(f"{k}={v}" for k, v in sorted(r["counts"].items())), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
