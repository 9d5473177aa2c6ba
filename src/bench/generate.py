"""Generation benchmark: time to first token, batch-1 decode tokens/s, batch-N tokens/s.

    python -m src.bench.generate [--preset dialog48m] [--device cpu|cuda] [--precision auto,fp32]

Random weights (throughput does not depend on them); prompts are random token ids and stop tokens
are disabled, so every row generates exactly --new-tokens tokens. For each weight format other
than fp32 it also prints how far its logits are from the fp32 model's on the same input.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from omegaconf import OmegaConf

from src.generation.engine import Engine
from src.generation.precision import (
    PRECISIONS,
    convert_for_decoding,
    default_precision,
    logit_agreement,
)
from src.generation.sampling import SamplingParams
from src.models.gpt import GPT
from src.paths import CONF_DIR

# For presets whose vocabulary comes from the data (vocab_size 0): a char alphabet's size.
CHAR_VOCAB_SIZE = 201


def build_model(preset: str, overrides: dict | None = None) -> GPT:
    """conf/model/<preset>.yaml with random weights; `overrides` replace keys (e.g. tiny shapes)."""
    cfg = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "model" / f"{preset}.yaml"))
    cfg.update(overrides or {})
    if cfg["vocab_size"] == 0:
        cfg["vocab_size"] = CHAR_VOCAB_SIZE
    torch.manual_seed(0)
    return GPT.from_config_dict(cfg).eval()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_generation(engine: Engine, batch: int, prompt_len: int, new_tokens: int, vocab: int,
                    repeats: int) -> tuple[float, float]:
    """Median (seconds to first token, decode tokens/s after the first) over `repeats` runs."""
    params = SamplingParams(temperature=1.0, top_k=50, max_new_tokens=new_tokens)
    generator = torch.Generator().manual_seed(1)
    firsts, rates = [], []
    for _ in range(repeats):
        prompts = torch.randint(0, vocab, (batch, prompt_len), generator=generator).tolist()
        _sync(engine.device)
        start = time.perf_counter()
        first = None
        for _ in engine.iter_events(prompts, params, stop_ids=[], seed=0):
            first = first or time.perf_counter()  # the first event comes after the first sync
        _sync(engine.device)
        end = time.perf_counter()
        firsts.append(first - start)
        rates.append(batch * (new_tokens - 1) / (end - first))
    return statistics.median(firsts), statistics.median(rates)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="dialog48m", help="comma-separated conf/model presets")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--precision", default="auto",
                    help=f"comma-separated weight formats: auto or {', '.join(PRECISIONS)}")
    ap.add_argument("--prompt-len", type=int, default=64)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--batch", type=int, default=64, help="the large batch size")
    ap.add_argument("--batch-new-tokens", type=int, default=32, help="new tokens per row at --batch")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                    help="torch.compile the decode step (default: on CUDA only)")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0 = torch's default)")
    args = ap.parse_args(argv)

    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"device={device} threads={torch.get_num_threads()} torch={torch.__version__} "
          f"prompt={args.prompt_len} new={args.new_tokens} batch={args.batch}x{args.batch_new_tokens}")
    for preset in args.preset.split(","):
        model = build_model(preset)
        vocab = model.cfg["vocab_size"]
        print(f"\n{preset}: {model.num_params() / 1e6:.1f}M parameters")
        probe = torch.randint(0, vocab, (2, min(128, model.block_size)), generator=torch.Generator().manual_seed(2))
        reference = model.to(device)
        for precision in args.precision.split(","):
            precision = default_precision(device) if precision == "auto" else precision
            engine = Engine(model, precision=precision, device=device, compile_model=args.compile)
            # Warm-up: first-call allocations, kernel selection, graph capture / compilation.
            for batch in (1, args.batch):
                time_generation(engine, batch, args.prompt_len, 4, vocab, 1)
            ttft, rate1 = time_generation(engine, 1, args.prompt_len, args.new_tokens, vocab, args.repeats)
            _, rate_n = time_generation(engine, args.batch, args.prompt_len, args.batch_new_tokens, vocab,
                                        max(1, args.repeats - 1))
            line = (f"  {precision:>5}: first token {ttft * 1e3:7.1f} ms | batch 1 {rate1:8.1f} tok/s | "
                    f"batch {args.batch} {rate_n:9.1f} tok/s")
            if precision != "fp32":
                candidate = convert_for_decoding(model, precision, device).eval()
                agree = logit_agreement(reference, candidate, probe.to(device))
                line += f" | vs fp32: rel. logit error {agree['relative_logit_error']:.4f}"
            print(line, flush=True)
            del engine


if __name__ == "__main__":
    main()
