"""python -m src.bench.gpu_suite --out DIR [--dry-run] [--budget-s 480] [--parts a,b,...]"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from src.bench.gpu_suite import PARTS
from src.bench.gpu_suite.runner import RESULTS_FILE, SUMMARY_FILE, run_suite
from src.paths import PROJECT_ROOT

DEVICE_DIR = PROJECT_ROOT / ".device"


def main(argv: list[str] | None = None) -> int:
    names = [p.name for p in PARTS]
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True, type=Path, help="where results.json, summary.md and suite.log go")
    ap.add_argument("--dry-run", action="store_true", help="every part at tiny shapes on the CPU")
    ap.add_argument("--budget-s", type=float, default=480.0, help="wall-clock budget of the whole suite")
    ap.add_argument("--parts", default=",".join(names), help=f"comma-separated subset of {','.join(names)}")
    ap.add_argument("--isolate", choices=["auto", "process", "inline"], default="auto",
                    help="each part in its own process (auto: yes, except in a dry run) or all in this one")
    ap.add_argument("--quality-data", type=Path, default=DEVICE_DIR / "classics_bpe16k",
                    help="token files of the quality part (src/bench/gpu_prepare.py makes them)")
    args = ap.parse_args(argv)
    wanted = [n.strip() for n in args.parts.split(",") if n.strip()]
    unknown = sorted(set(wanted) - set(names))
    if unknown:
        print(f"error: --parts: unknown part(s) {unknown}; the parts are {names}", file=sys.stderr)
        return 2
    isolate = args.isolate if args.isolate != "auto" else ("inline" if args.dry_run else "process")
    options = {"quality_data": str(args.quality_data), "tokenizer_dir": str(args.quality_data / "tokenizer"),
               "out_dir": str(args.out)}  # where a part may leave files (the profile trace)
    results = run_suite([p for p in PARTS if p.name in wanted], args.out, args.budget_s, args.dry_run, isolate,
                        options, argv=sys.argv[1:] if argv is None else argv)
    print((args.out / SUMMARY_FILE).read_text(encoding="utf-8"))
    print(f"results: {args.out / RESULTS_FILE}")
    return 0 if all(e["status"] == "ok" for e in results["parts"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
