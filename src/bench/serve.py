"""Load test of the HTTP server through the real `openai` client, with batching on and off.

    python -m src.bench.serve MODEL [--clients 1,4,16] [--requests 4] [--max-tokens 32]
                              [--batching on,off] [--threads 1] [--json PATH]
    python -m src.bench.serve --preset dialog48m [--tokenizer data/tokenizer] ...

--preset serves random weights of a conf/model/ preset (the vocabulary of --tokenizer), marked as
a chat model: what a request costs does not depend on the weights, only on the shape.

For each batching mode a server (`python -m src.serve`, a child process on a free port of
127.0.0.1) serves MODEL; for each number of clients C (the modes in turn), C concurrent clients
each send --requests streamed requests one after another (chat completions for a chat model, text
completions for a base model; fixed prompts, temperature 0.8 and a seed per request, so both modes
get the same work).
Per cell: requests/s, time to first token and per-request decode tokens/s (p50/p95), all tokens/s,
and errors. Bounded by construction: C x --requests requests of at most --max-tokens tokens.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from src.paths import PROJECT_ROOT

PROMPTS = ["Привет! Как дела?", "Что ты читаешь?", "Расскажи про Москву.", "Куда ты идёшь?",
           "Который час?", "Почему ты молчишь?", "Где мы встретимся?", "Что было дальше?"]


@dataclass
class Cell:
    batching: str
    clients: int
    requests: int
    errors: int
    wall_s: float
    requests_per_s: float
    ttft_p50_ms: float
    ttft_p95_ms: float
    decode_tok_s_p50: float
    decode_tok_s_p95: float
    total_tok_s: float
    completion_tokens: int


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def start_server(model: str, port: int, batching: bool, threads: int, max_concurrent: int,
                 ) -> subprocess.Popen:
    command = [sys.executable, "-m", "src.serve", model, "--host", "127.0.0.1", "--port", str(port),
               "--threads", str(threads), "--max-concurrent", str(max_concurrent)]
    if not batching:
        command.append("--no-batching")
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    env.pop("HOMUNCULUS_API_KEY", None)
    # Its output goes to a file: a pipe nobody reads would block the server once full.
    log = tempfile.NamedTemporaryFile("w+", prefix="bench_serve_", suffix=".log", delete=False)
    proc = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited: {Path(log.name).read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.terminate()
    raise RuntimeError("the server did not answer /health within 120 s")


async def one_request(client, model: str, chat: bool, prompt: str, seed: int, max_tokens: int,
                      ) -> tuple[float, float, int]:
    """(seconds to the first text, seconds from then to the end, completion tokens) of one request."""
    start = time.perf_counter()
    first = None
    options = dict(model=model, max_tokens=max_tokens, temperature=0.8, seed=seed, stream=True,
                   stream_options={"include_usage": True})
    if chat:
        stream = await client.chat.completions.create(messages=[{"role": "user", "content": prompt}], **options)
    else:
        stream = await client.completions.create(prompt=prompt, **options)
    tokens = 0
    async for chunk in stream:
        if chunk.usage is not None:
            tokens = chunk.usage.completion_tokens
        if not chunk.choices:
            continue
        piece = chunk.choices[0].delta.content if chat else chunk.choices[0].text
        if piece and first is None:
            first = time.perf_counter()
    end = time.perf_counter()
    first = first or end
    return first - start, end - first, tokens


async def run_cell(base_url: str, model: str, chat: bool, clients: int, requests: int,
                   max_tokens: int) -> tuple[list[tuple[float, float, int]], int, float]:
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=600)
    results: list[tuple[float, float, int]] = []
    errors = 0

    async def worker(c: int) -> None:
        nonlocal errors
        for r in range(requests):
            k = c * requests + r
            try:
                results.append(await one_request(client, model, chat, PROMPTS[k % len(PROMPTS)], k, max_tokens))
            except Exception as exc:  # counted and shown; the load test goes on
                errors += 1
                print(f"  error: {type(exc).__name__}: {exc}", file=sys.stderr)

    start = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in range(clients)))
    wall = time.perf_counter() - start
    await client.close()
    return results, errors, wall


def measure(model: str, modes: list[str], clients: list[int], requests: int, max_tokens: int,
            threads: int) -> list[Cell]:
    """Both servers run side by side (the idle one waits on its socket) and the modes alternate per
    number of clients, so a change in the machine's load over the run hits both alike."""
    cells = []
    servers: dict[str, tuple[subprocess.Popen, str, str, bool]] = {}
    try:
        for mode in dict.fromkeys(modes):
            port = free_port()
            proc = start_server(model, port, mode == "on", threads, max(clients))
            base = f"http://127.0.0.1:{port}"
            served = httpx.get(f"{base}/v1/models").json()["data"][0]["id"]
            chat = bool(httpx.get(f"{base}/health").json()["chat"])
            servers[mode] = (proc, f"{base}/v1", served, chat)
            asyncio.run(run_cell(f"{base}/v1", served, chat, 1, 1, 2))  # warm-up
        for c in clients:
            for mode in modes:
                _, url, served, chat = servers[mode]
                results, errors, wall = asyncio.run(run_cell(url, served, chat, c, requests, max_tokens))
                ttft = [r[0] * 1e3 for r in results]
                rates = [r[2] / r[1] for r in results if r[1] > 0 and r[2] > 1]
                tokens = sum(r[2] for r in results)
                cells.append(Cell(mode, c, len(results) + errors, errors, wall, len(results) / wall,
                                  percentile(ttft, 0.5), percentile(ttft, 0.95), percentile(rates, 0.5),
                                  percentile(rates, 0.95), tokens / wall, tokens))
                print(format_row(cells[-1]), flush=True)
    finally:
        for proc, *_ in servers.values():
            proc.terminate()
            proc.wait(timeout=30)
    return cells


HEADER = ("| batching | clients | requests | errors | req/s | TTFT p50 ms | TTFT p95 ms | decode tok/s p50 "
          "| decode tok/s p95 | all tok/s |\n|---|---|---|---|---|---|---|---|---|---|")


def format_row(c: Cell) -> str:
    return (f"| {c.batching} | {c.clients} | {c.requests} | {c.errors} | {c.requests_per_s:.2f} | "
            f"{c.ttft_p50_ms:.0f} | {c.ttft_p95_ms:.0f} | {c.decode_tok_s_p50:.0f} | {c.decode_tok_s_p95:.0f} | "
            f"{c.total_tok_s:.0f} |")


def random_checkpoint(preset: str, tokenizer_dir: Path, directory: Path) -> Path:
    """A chat-marked checkpoint of random weights of conf/model/PRESET.yaml for `tokenizer_dir`."""
    import torch
    from omegaconf import OmegaConf

    from src.models.gpt import GPT
    from src.paths import CONF_DIR
    from src.tokenizers import load_tokenizer

    source = CONF_DIR / "model" / f"{preset}.yaml"
    if not source.is_file():
        sys.exit(f"error: bench serve: {source}: no such model preset")
    tokenizer = load_tokenizer(tokenizer_dir)
    cfg = {**OmegaConf.to_container(OmegaConf.load(source)), "vocab_size": tokenizer.vocab_size, "dropout": 0.0}
    torch.manual_seed(0)
    model = GPT.from_config_dict(cfg)
    path = directory / f"{preset}.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
                "hyper_parameters": {"model": model.config_dict(), "chat": True,
                                     "tokenizer_dir": str(tokenizer_dir.resolve()),
                                     "tokenizer_sha256": tokenizer.sha256}}, path)
    print(f"{preset}: random weights, {model.num_params() / 1e6:.1f}M parameters, context "
          f"{cfg['block_size']}, vocabulary {tokenizer.vocab_size} ({tokenizer_dir})")
    return path


def main(argv: list[str] | None = None) -> list[Cell]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", nargs="?", help="a checkpoint or export directory, as for python -m src.serve")
    ap.add_argument("--preset", default=None, help="serve random weights of this conf/model/ preset instead")
    ap.add_argument("--tokenizer", type=Path, default=Path("data/tokenizer"), help="for --preset")
    ap.add_argument("--clients", default="1,4,16", help="comma-separated numbers of concurrent clients")
    ap.add_argument("--requests", type=int, default=4, help="requests per client, one after another")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--batching", default="on,off", help="on, off or on,off")
    ap.add_argument("--threads", type=int, default=1, help="the server's CPU threads")
    ap.add_argument("--json", type=Path, default=None, help="also write the cells here")
    args = ap.parse_args(argv)
    clients = [int(c) for c in args.clients.split(",")]
    modes = args.batching.split(",")
    if not clients or min(clients) < 1 or args.requests < 1 or any(m not in ("on", "off") for m in modes):
        sys.exit("error: bench serve: --clients >= 1, --requests >= 1, --batching of on/off")
    if (args.model is None) == (args.preset is None):
        sys.exit("error: bench serve: give a MODEL or --preset, not both")
    if args.preset:
        with tempfile.TemporaryDirectory(prefix="bench_serve_") as tmp:
            args.model = str(random_checkpoint(args.preset, args.tokenizer, Path(tmp)))
            return run(args, clients, modes)
    return run(args, clients, modes)


def run(args: argparse.Namespace, clients: list[int], modes: list[str]) -> list[Cell]:
    print(f"{args.model}: {args.requests} streamed request(s) per client, at most {args.max_tokens} tokens "
          f"each; server on {args.threads} thread(s)\n{HEADER}", flush=True)
    cells = measure(args.model, modes, clients, args.requests, args.max_tokens, args.threads)
    if args.json:
        args.json.write_text(json.dumps([asdict(c) for c in cells], indent=2))
    on = {c.clients: c for c in cells if c.batching == "on"}
    for c in cells:
        if c.batching == "off" and c.clients in on and c.requests_per_s > 0:
            print(f"{c.clients} clients: batching gives {on[c.clients].requests_per_s / c.requests_per_s:.2f}x "
                  f"requests/s, TTFT p50 {on[c.clients].ttft_p50_ms:.0f} vs {c.ttft_p50_ms:.0f} ms")
    if statistics.fsum(c.errors for c in cells):
        print("errors occurred (see above)", file=sys.stderr)
    return cells


if __name__ == "__main__":
    main()
