"""Compare chat checkpoints on held-out prompts: failure rates of sampled replies and desirable drift.

    python -m src.eval.reply_check --pairs outputs/kto_ru_classics/pairs/pairs.parquet \\
        outputs/sft_ru_classics/models/sft/best.ckpt outputs/kto_ru_classics/models/kto/last.ckpt

The prompts are those of the pairs file's `--split` (default val, the rows KTO never trained on),
each once; every checkpoint samples one reply per prompt with the same seed and settings. Per
checkpoint: the rates of the failure detectors (src/eval/detectors.py `failure_rates`: loop,
canned, markdown wall, no end; end-of-turn rate), mean reply length, distinct-2, and the mean
summed log-prob of the split's desirable replies (src/generation/scoring.py); `drift` is that
mean minus the first checkpoint's (nats per reply), the number KTO's collapse guard watches. A
markdown table goes to stdout, `--json` writes the figures, `--show N` prints N prompts with each
checkpoint's reply. The tokenizer is the checkpoint's own (it must be the pairs' tokenizer).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import torch

from src.errors import InputError
from src.eval.detectors import distinct_n, failure_rates
from src.generation import chat_template
from src.generation.engine import Engine
from src.generation.loading import load_for_generation
from src.generation.sampling import SamplingParams
from src.generation.scoring import completion_logprobs
from src.training.kto_data import encode_pairs, read_pairs

COLUMNS = ("loop_rate", "canned_rate", "markdown_wall_rate", "eot_rate", "mean_reply_tokens", "distinct2",
           "desirable_logp", "drift")


def check(path: str, rows: list[Any], params: SamplingParams, seed: int, batch_size: int) -> dict[str, Any]:
    """One checkpoint's figures on the split's rows (see the module docstring), with its replies."""
    loaded = load_for_generation(path)
    if not loaded.chat or loaded.tokenizer is None:
        raise InputError(f"{path}: not a chat model with its tokenizer")
    tok, model = loaded.tokenizer, loaded.model.eval()
    seen: dict[tuple, Any] = {}
    for row in rows:  # each prompt once, in file order
        seen.setdefault(tuple((m["role"], m["content"]) for m in row.prompt), row)
    prompts = list(seen.values())
    ids = [chat_template.encode(tok, r.prompt, add_generation_prompt=True) for r in prompts]
    end_id = tok.special_tokens[chat_template.END]
    stopped_on: dict[int, int] = {}

    def on_token(event: Any) -> None:
        if event.finish_reason == "stop_token":
            stopped_on[event.row] = event.token

    engine = Engine(model, tok, precision="fp32", static_cache=False, cuda_graphs=False, compile_model=False)
    replies = engine.generate(ids, params, stop_ids=sorted(tok.special_tokens.values()), seed=seed,
                              on_token=on_token)
    tokens = [c.tokens for c in replies]
    ended = [c.finish_reason == "stop_token" and stopped_on.get(i) == end_id for i, c in enumerate(replies)]
    texts = [c.text or "" for c in replies]
    figures: dict[str, Any] = failure_rates(texts, [r.prompt[-1]["content"] for r in prompts], ended=ended,
                                            tokens=tokens, max_new_tokens=params.max_new_tokens)
    figures["mean_reply_tokens"] = sum(map(len, tokens)) / len(tokens) if tokens else 0.0
    figures["distinct2"] = distinct_n(tokens, 2)
    dropped: Counter = Counter()
    desirable = encode_pairs(tok, [r for r in rows if r.label], model.block_size, dropped)
    with torch.no_grad():
        logps, _ = completion_logprobs(model, desirable.prompts, desirable.completions, batch_size=batch_size)
    figures["desirable_logp"] = float(logps.mean()) if len(desirable) else None
    figures.update(prompts=len(prompts), desirable=len(desirable), dropped=dict(dropped))
    return {"checkpoint": path, "figures": figures,
            "replies": [{"prompt": r.prompt[-1]["content"], "reply": t} for r, t in zip(prompts, texts, strict=True)]}


def table(results: list[dict[str, Any]]) -> str:
    lines = ["| checkpoint | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for r in results:
        f = r["figures"]
        cells = ["-" if f.get(c) is None else f"{f[c]:.3f}" for c in COLUMNS]
        lines.append(f"| {r['checkpoint']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoints", nargs="+", help="chat checkpoints; the first is the baseline for drift")
    ap.add_argument("--pairs", required=True, help="a kto_pairs pairs.parquet")
    ap.add_argument("--split", default="val", choices=("train", "val"))
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--temperature", type=float, default=0.8)
    ap.add_argument("--top-k", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=16, help="pairs per scoring forward")
    ap.add_argument("--show", type=int, default=0, help="prompts to print with every checkpoint's reply")
    ap.add_argument("--json", help="write the figures and replies here")
    args = ap.parse_args(argv)
    try:
        rows = read_pairs(Path(args.pairs))[0][args.split]
        if not rows:
            raise InputError(f"{args.pairs}: no {args.split} rows")
        params = SamplingParams(temperature=args.temperature, top_k=args.top_k, max_new_tokens=args.max_new_tokens)
        results = [check(c, rows, params, args.seed, args.batch_size) for c in args.checkpoints]
    except InputError as exc:
        print(f"error: reply_check: {exc}", file=sys.stderr)
        return 1
    base = results[0]["figures"]["desirable_logp"]
    for r in results:
        logp = r["figures"]["desirable_logp"]
        r["figures"]["drift"] = None if logp is None or base is None else logp - base
    print(f"{results[0]['figures']['prompts']} {args.split} prompts, {results[0]['figures']['desirable']} "
          f"desirable replies; sampling T={args.temperature} top-k {args.top_k}, {args.max_new_tokens} tokens, "
          f"seed {args.seed}")
    print(table(results))
    for i in range(min(args.show, len(results[0]["replies"]))):
        print(f"\n> {results[0]['replies'][i]['prompt']}")
        for r in results:
            print(f"  [{Path(r['checkpoint']).parent.name}/{Path(r['checkpoint']).name}] {r['replies'][i]['reply']!r}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, ensure_ascii=False, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
