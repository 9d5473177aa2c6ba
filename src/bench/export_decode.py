"""Decode speed and agreement of the same weights in three runtimes, side by side in one run:
our engine (PyTorch, CPU), transformers (the --format hf export) and llama.cpp through
llama-cpp-python (the --format gguf exports, fp16 and q8_0; skipped with a note when the package
is not installed: `pip install llama-cpp-python` builds it from source).

    python -m src.bench.export_decode [--model data/models/pretrain/last.ckpt] [--preset classics46m]
                                      [--new-tokens 64] [--threads 1] [--repeats 3]

--model: a checkpoint or native export (its tokenizer is used throughout). --preset NAME: random
weights of conf/model/NAME.yaml instead, with the model's tokenizer (vocab_size set to its size),
for speed at a realistic depth and width. Every runtime decodes greedily, one token at a time with
its own key/value cache, from the same prompt, with stop tokens off, so all produce --new-tokens
tokens. Printed per runtime: time to first token (the prompt's prefill), decode tokens/s after it,
how many greedy tokens agree with our engine's before the first difference, and the largest logit
difference from ours at the prompt's last position. Not a test: it builds nothing in CI.
"""

from __future__ import annotations

import argparse
import inspect
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

from src.generation.loading import LoadedModel, load_for_generation
from src.generation.precision import default_precision
from src.models.gpt import GPT
from src.paths import CONF_DIR

PROMPT = "Утром над рекой стоял туман, и лодочник долго не решался"
# Texts llama.cpp's tokenizer is checked on besides the prompt: double spaces, tabs, digits,
# newlines, the chat tags (parsed as special), characters a small vocabulary lacks (byte fallback).
TOKENIZER_PROBES = [
    PROMPT,
    "  два  пробела и\tтаб, 2024 год\n\n\nновые строки ",
    "<|user|>\nЗдравствуй!<|end|>\n<|assistant|>\nПривет<|end|>\n<|endoftext|>",
    "Ёлка, щука — «кавычки» и многоточие… 😀 ☃ Ω",
]


@dataclass
class Run:
    tokens: list[int]
    first_logits: np.ndarray  # logits after the prompt
    ttft_s: float
    decode_tok_s: float


def greedy_loop(prefill: Callable[[list[int]], np.ndarray], step: Callable[[int], np.ndarray],
                prompt: list[int], new_tokens: int) -> Run:
    """Greedy decoding through a runtime's `prefill(prompt) -> logits` and `step(token) -> logits`."""
    start = time.perf_counter()
    logits = prefill(prompt)
    first_logits = logits.copy()
    tokens = [int(np.argmax(logits))]
    first = time.perf_counter()
    for _ in range(new_tokens - 1):
        logits = step(tokens[-1])
        tokens.append(int(np.argmax(logits)))
    end = time.perf_counter()
    rate = (new_tokens - 1) / (end - first) if new_tokens > 1 else float("nan")
    return Run(tokens, first_logits, first - start, rate)


def run_ours(model: GPT, prompt: list[int], new_tokens: int, precision: str = "fp32") -> Run:
    from src.generation.engine import Engine
    from src.generation.precision import convert_for_decoding
    from src.generation.sampling import GREEDY

    engine = Engine(model, precision=precision)
    with torch.inference_mode():
        converted = convert_for_decoding(model, precision, torch.device("cpu")).eval()
        first_logits = converted(torch.tensor([prompt]))[0][0, -1].float().numpy()
    start = time.perf_counter()
    first = None
    tokens: list[int] = []
    for event in engine.iter_events([prompt], GREEDY.with_(max_new_tokens=new_tokens), stop_ids=[], seed=0):
        first = first or time.perf_counter()
        tokens.append(event.token)
    end = time.perf_counter()
    return Run(tokens, first_logits, first - start, (len(tokens) - 1) / (end - first))


def run_transformers(hf_dir: Path, prompt: list[int], new_tokens: int) -> Run:
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32).eval()
    # transformers 5.x names the key/value cache `cache`; 4.x `past_key_values`.
    key = "cache" if "cache" in inspect.signature(hf.forward).parameters else "past_key_values"
    state: dict = {}

    @torch.inference_mode()
    def prefill(ids: list[int]) -> np.ndarray:
        out = hf(torch.tensor([ids]), use_cache=True)
        state["cache"] = out[key]
        return out.logits[0, -1].float().numpy()

    @torch.inference_mode()
    def step(token: int) -> np.ndarray:
        out = hf(torch.tensor([[token]]), use_cache=True, **{key: state["cache"]})
        state["cache"] = out[key]
        return out.logits[0, -1].float().numpy()

    return greedy_loop(prefill, step, prompt, new_tokens)


def run_llama_cpp(gguf_path: Path, prompt: list[int], new_tokens: int, threads: int, n_ctx: int,
                  extra_buffers: bool, repeats: int) -> tuple[Run, list[list[int]]]:
    """The median of `repeats` greedy runs in llama.cpp, and its ids for TOKENIZER_PROBES. Runs in
    a child process (see llama_cpp_isolated)."""
    import llama_cpp
    import llama_cpp.llama_cpp as low

    default_params = low.llama_model_default_params

    def model_params():  # noqa: ANN202 - a ctypes struct
        params = default_params()
        # Repacked/AMX weight buffers: llama.cpp's faster CPU layouts (0.3.36 crashes with q8_0
        # in them on an AVX-512/AMX CPU, so they are off unless asked for).
        params.use_extra_bufts = extra_buffers
        return params

    low.llama_model_default_params = model_params
    llm = llama_cpp.Llama(model_path=str(gguf_path), n_ctx=n_ctx, n_threads=threads,
                          n_threads_batch=threads, n_batch=n_ctx, verbose=False)
    n_vocab = llm.n_vocab()

    def logits_now() -> np.ndarray:
        # The last decoded position's logits (Llama.scores holds them only with logits_all=True).
        pointer = llama_cpp.llama_get_logits(llm.ctx)
        return np.ctypeslib.as_array(pointer, shape=(n_vocab,)).astype(np.float32)

    def prefill(ids: list[int]) -> np.ndarray:
        llm.reset()
        llm.eval(ids)
        return logits_now()

    def step(token: int) -> np.ndarray:
        llm.eval([token])
        return logits_now()

    run = best_of(repeats, lambda: greedy_loop(prefill, step, prompt, new_tokens))
    return run, [llm.tokenize(t.encode("utf-8"), add_bos=False, special=True) for t in TOKENIZER_PROBES]


def llama_cpp_isolated(*args) -> tuple[Run | None, list[list[int]], str]:
    """run_llama_cpp in a child process, so a crash inside llama.cpp is reported, not fatal."""
    from concurrent.futures.process import BrokenProcessPool

    from src.worker_pool import process_pool

    with process_pool(1, start_method="spawn") as pool:
        try:
            run, ids = pool.submit(run_llama_cpp, *args).result()
        except BrokenProcessPool:
            return None, [], "llama.cpp crashed (the child process died)"
    return run, ids, ""


def agreeing_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def random_preset(preset: str, vocab_size: int) -> GPT:
    cfg = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "model" / f"{preset}.yaml"))
    cfg["vocab_size"] = vocab_size
    torch.manual_seed(0)
    return GPT.from_config_dict(cfg).eval()


def best_of(repeats: int, fn: Callable[[], Run]) -> Run:
    """The run with the median decode rate of `repeats` (after one warm-up run)."""
    fn()
    runs = sorted((fn() for _ in range(repeats)), key=lambda r: r.decode_tok_s)
    return runs[len(runs) // 2]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=Path("data/models/pretrain/last.ckpt"))
    ap.add_argument("--preset", default="", help="random weights of this conf/model preset instead")
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--llama-extra-buffers", action="store_true",
                    help="let llama.cpp repack weights into its CPU-specific layouts (AMX, AVX-512)")
    args = ap.parse_args(argv)

    from src.exporting.gguf_file import write_gguf
    from src.exporting.hf import write_hf

    torch.set_num_threads(args.threads)
    loaded = load_for_generation(args.model)
    if args.preset:
        loaded = LoadedModel(random_preset(args.preset, loaded.tokenizer.vocab_size), loaded.tokenizer,
                             False, args.model, loaded.tokenizer_sha256, loaded.normalize)
    model, tok = loaded.model.float().eval(), loaded.tokenizer
    prompt = tok.encode(PROMPT)
    new_tokens = min(args.new_tokens, model.block_size - len(prompt))
    print(f"model: {args.preset or args.model} ({model.num_params() / 1e6:.2f}M parameters, "
          f"vocab {model.cfg['vocab_size']}, context {model.block_size}); prompt {len(prompt)} tokens, "
          f"{new_tokens} new; threads {args.threads}; torch {torch.__version__}")
    rows: list[tuple[str, Run | None, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        hf_dir = Path(tmp) / "hf"
        write_hf(loaded, hf_dir, "fp32")
        ggufs = {}
        for dtype in ("fp32", "fp16", "q8_0"):
            ggufs[dtype] = Path(tmp) / f"model-{dtype}.gguf"
            write_gguf(loaded, ggufs[dtype], dtype)
        ours = best_of(args.repeats, lambda: run_ours(model, prompt, new_tokens))
        rows.append(("ours (PyTorch fp32)", ours, ""))
        default = default_precision(torch.device("cpu"))
        if default != "fp32":  # the engine's CPU default (int8 weights), to set beside q8_0
            rows.append((f"ours (PyTorch {default})", best_of(
                args.repeats, lambda: run_ours(model, prompt, new_tokens, default)), ""))
        theirs = best_of(args.repeats, lambda: run_transformers(hf_dir, prompt, new_tokens))
        rows.append(("transformers fp32", theirs, ""))
        try:
            import llama_cpp  # noqa: F401
        except ImportError:
            rows.append(("llama.cpp", None, "llama-cpp-python is not installed; not measured"))
        else:
            for dtype, path in ggufs.items():
                run, ids, note = llama_cpp_isolated(path, prompt, new_tokens, args.threads,
                                                    model.block_size, args.llama_extra_buffers, args.repeats)
                if run is not None:
                    same = sum(theirs == tok.encode(text) for theirs, text in zip(ids, TOKENIZER_PROBES, strict=True))
                    note = f"ids = ours on {same}/{len(TOKENIZER_PROBES)} probe texts"
                rows.append((f"llama.cpp {dtype} ({path.stat().st_size / 1e6:.1f} MB)", run, note))
    print(f"{'runtime':<32} {'first token':>12} {'decode':>12} {'greedy = ours':>14} {'max |dlogit|':>13}")
    for name, run, note in rows:
        if run is None:
            print(f"{name:<32} {note}")
            continue
        same = agreeing_prefix(run.tokens, ours.tokens)
        diff = float(np.abs(run.first_logits - ours.first_logits).max())
        print(f"{name:<32} {run.ttft_s * 1e3:9.1f} ms {run.decode_tok_s:8.1f} t/s "
              f"{same:>6}/{len(ours.tokens):<7} {diff:13.2e}  {note}")


if __name__ == "__main__":
    main()
