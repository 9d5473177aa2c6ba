"""Time to make one turn's candidates: our Markov writer against `markovify` on the same lines.

    python -m src.bench.markov                       # Pride and Prejudice from ../shared/data
    python -m src.bench.markov --text book.txt --order 3 --n 4096 --repeats 5

The text is cut into sentences (as the markov stage's `sentences` mode does). Both models are built
with keys of `--order` words; markovify's chain is compiled (its fastest form). Timed, after one
warm-up call each, as the median of `--repeats` runs:

- ours: `MarkovModel.generate(n, context)`: n distinct lines, half grown from words of the context;
- ours_from_starts: the same with no context (every line from a line start);
- markovify_unchecked: `make_sentence(test_output=False)` (no novelty check, its fastest) until n
  distinct lines are made (repeats are no extra candidates for the reranker), at most 4n calls;
- markovify_default: `make_sentence()` with its novelty check (rejects lines that copy the corpus),
  timed on `--default-calls` calls and scaled to n (it is too slow to run n times on every bench).

Printed as a table and one JSON line (--json FILE writes it too).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from src.errors import InputError
from src.generation.markov import MarkovModel
from src.paths import shared_data_dir

DEFAULT_TEXT = "corpus_en/pride_and_prejudice__pg1342-0.txt"


def sentences_of(path: Path) -> list[str]:
    from collections import Counter

    from src.data.dialogues.speech import split_paragraphs
    from src.generation.markov_stage import read_text_file, split_sentences

    text = read_text_file(path, Counter())
    return [s for p in split_paragraphs(text) for s in split_sentences(p) if len(s.split()) >= 2]


def median_seconds(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    result = fn()  # warm-up (caches, lazy imports)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def bench(lines: list[str], order: int, n: int, repeats: int, context: str, min_choices: int,
          default_calls: int) -> dict[str, Any]:
    import markovify

    out: dict[str, Any] = {"lines": len(lines), "order": order, "n": n, "min_choices": min_choices}
    start = time.perf_counter()
    ours = MarkovModel.build(lines, order, min_choices)
    out["ours_build_s"] = time.perf_counter() - start
    start = time.perf_counter()
    theirs = markovify.NewlineText("\n".join(lines), state_size=order).compile()
    out["markovify_build_s"] = time.perf_counter() - start

    corpus = {" ".join(line.split()) for line in lines}

    def copied(made: list[str]) -> float:  # share of lines that are a corpus line verbatim
        return sum(m in corpus for m in made) / max(len(made), 1)

    t, made = median_seconds(lambda: ours.generate(n, [context], seed=0), repeats)
    out |= {"ours_s": t, "ours_lines": len(made.texts), "ours_copied": copied(made.texts),
            "ours_seeded_lines": sum(s is not None for s in made.seeds)}
    t, made = median_seconds(lambda: ours.generate(n, seed=0, seeded_share=0.0), repeats)
    out |= {"ours_from_starts_s": t, "ours_from_starts_lines": len(made.texts)}
    def distinct_lines() -> tuple[set[str], int]:
        found: set[str] = set()
        calls = 0
        while len(found) < n and calls < 4 * n:
            line = theirs.make_sentence(test_output=False)
            calls += 1
            if line:
                found.add(line)
        return found, calls

    t, (distinct, calls) = median_seconds(distinct_lines, repeats)
    out |= {"markovify_unchecked_s": t, "markovify_unchecked_lines": len(distinct),
            "markovify_unchecked_calls": calls, "markovify_unchecked_copied": copied(list(distinct))}
    if default_calls:
        t, made = median_seconds(lambda: [theirs.make_sentence() for _ in range(default_calls)], 1)
        out |= {"markovify_default_s": t * n / default_calls,
                "markovify_default_success": sum(m is not None for m in made) / default_calls}
    out["speedup_vs_unchecked"] = out["markovify_unchecked_s"] / out["ours_s"]
    out["speedup_from_starts_vs_unchecked"] = out["markovify_unchecked_s"] / out["ours_from_starts_s"]
    if default_calls:
        out["speedup_vs_default"] = out["markovify_default_s"] / out["ours_s"]
    return out


def render(r: dict[str, Any]) -> str:
    rows = [("ours (context-seeded)", r["ours_s"], r["ours_lines"]),
            ("ours (from line starts)", r["ours_from_starts_s"], r["ours_from_starts_lines"]),
            ("markovify, test_output=False", r["markovify_unchecked_s"], r["markovify_unchecked_lines"])]
    copies = (f"markovify made its {r['markovify_unchecked_lines']:,} distinct lines in "
              f"{r['markovify_unchecked_calls']:,} calls; lines copied verbatim from the corpus: ours {r['ours_copied']:.0%}, markovify "
              f"test_output=False {r['markovify_unchecked_copied']:.0%}")
    if "markovify_default_s" in r:
        rows.append(("markovify, default (scaled)", r["markovify_default_s"],
                     f"{r['markovify_default_success']:.0%} ok"))
    out = [f"{r['lines']:,} lines, order {r['order']}, {r['n']:,} candidates per turn "
           f"(build: ours {r['ours_build_s']:.2f} s, markovify {r['markovify_build_s']:.2f} s)",
           f"{'writer':<32}{'seconds':>10}{'distinct':>12}"]
    out += [f"{name:<32}{sec:>10.3f}{lines!s:>12}" for name, sec, lines in rows]
    out.append(copies)
    out.append(f"ours vs markovify: {r['speedup_vs_unchecked']:.1f}x (from line starts "
               f"{r['speedup_from_starts_vs_unchecked']:.1f}x) faster than test_output=False"
               + (f", {r['speedup_vs_default']:.0f}x than its default" if "speedup_vs_default" in r else ""))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--text", type=Path, default=None, help=f"a plain-text book (default: ../shared/data/{DEFAULT_TEXT})")
    ap.add_argument("--order", type=int, default=3)
    ap.add_argument("--min-choices", type=int, default=2)
    ap.add_argument("--n", type=int, default=4096)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--default-calls", type=int, default=256,
                    help="make_sentence() calls timed for markovify's default mode (0: skip it)")
    ap.add_argument("--context", default="Do you really think she will dance with him at the ball?")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    path = args.text or shared_data_dir() / DEFAULT_TEXT
    try:
        if not path.is_file():
            raise InputError(f"{path}: no such file (--text)")
        result = bench(sentences_of(path), args.order, args.n, args.repeats, args.context,
                       args.min_choices, args.default_calls)
    except InputError as exc:
        print(f"error: bench.markov: {exc}", file=sys.stderr)
        return 1
    result["text"] = str(path)
    print(render(result))
    print(json.dumps(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
