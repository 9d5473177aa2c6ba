"""Serve a model over HTTP with the OpenAI API (chat and text completions, streamed or not).

    python -m src.serve CHECKPOINT_OR_EXPORT [--host 127.0.0.1] [--port 8000] [--mode auto|chat|base]
                        [--no-batching] [--max-concurrent N] [--max-queue N] [--queue-timeout S]
                        [--rerank RERANKER_DIR [--rerank-n 16]]

Defaults come from the `serve` and `generation` sections of params.yaml (conf/serve/,
conf/generation/); flags override them. The API key, when wanted, is read from the environment
variable named by serve.api_key_env (HOMUNCULUS_API_KEY), never from the command line, where other
users of the machine could read it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

from src.config.sections.generation import GenerationConfig
from src.config.sections.serve import ServeConfig
from src.generation.engine import Engine
from src.generation.loading import LoadError, load_for_generation
from src.generation.precision import PRECISIONS
from src.serve.app import ServedModel, create_app
from src.serve.prompts import PromptBuilder
from src.serve.rerank import RerankService
from src.serve.scheduler import Scheduler


def config_sections() -> tuple[Any, Any]:
    """The serve and generation sections of params.yaml, or the schemas' defaults without one."""
    from src.config import ConfigError, load_config

    try:
        cfg = load_config()
    except ConfigError:
        return ServeConfig(), GenerationConfig()
    return getattr(cfg, "serve", None) or ServeConfig(), cfg.generation


def default_name(path: Path) -> str:
    """data/models/sft/last.ckpt -> "sft-last"; an export directory -> its name."""
    path = path.resolve()
    return path.name if path.is_dir() else f"{path.parent.name}-{path.stem}"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    serve, gen = config_sections()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="a Lightning .ckpt or an export directory (python -m src.export)")
    ap.add_argument("--name", default=None, help="the model id clients send (default: from the path)")
    ap.add_argument("--host", default=serve.host)
    ap.add_argument("--port", type=int, default=serve.port)
    ap.add_argument("--mode", choices=("auto", "chat", "base"), default="auto",
                    help="chat: /v1/chat/completions renders the chat template; base: only /v1/completions; "
                         "auto: chat when the checkpoint is marked chat-tuned")
    ap.add_argument("--no-batching", dest="batching", action="store_false", default=serve.batching,
                    help="decode one request at a time (the others queue)")
    ap.add_argument("--max-concurrent", type=int, default=serve.max_concurrent_requests)
    ap.add_argument("--max-rows", type=int, default=serve.max_batch_rows)
    ap.add_argument("--max-queue", type=int, default=serve.max_queue)
    ap.add_argument("--queue-timeout", type=float, default=serve.queue_timeout_s)
    ap.add_argument("--rerank", default=None, metavar="RERANKER_DIR",
                    help="serve reranked best-of-N chat replies too (model id NAME+rerank, or \"rerank\": true)")
    ap.add_argument("--rerank-n", type=int, default=serve.rerank_candidates, help="candidates per reranked reply")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--precision", default=gen.precision, choices=("auto", *PRECISIONS))
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0 = torch's default)")
    args = ap.parse_args(argv)
    args.serve = ServeConfig(**{**_as_dict(serve), "host": args.host, "port": args.port,
                                "batching": args.batching, "max_concurrent_requests": args.max_concurrent,
                                "max_batch_rows": args.max_rows, "max_queue": args.max_queue,
                                "queue_timeout_s": args.queue_timeout, "rerank_candidates": args.rerank_n})
    args.generation = gen
    return args


def _as_dict(section: Any) -> dict[str, Any]:
    from dataclasses import asdict, is_dataclass

    from omegaconf import OmegaConf

    return asdict(section) if is_dataclass(section) else dict(OmegaConf.to_container(section))


def build(model_path: str | Path, settings: ServeConfig, generation: GenerationConfig | Any, *,
          mode: str = "auto", name: str | None = None, precision: str = "auto",
          device: str = "cpu", reranker: str | Path | Any | None = None) -> ServedModel:
    """Load the model (and the reranker: a directory, or any object with `score`) and start its
    scheduler thread (stop it with served.scheduler.stop())."""
    loaded = load_for_generation(model_path)
    chat = loaded.chat if mode == "auto" else mode == "chat"
    rerank = None
    if reranker is not None:
        if not chat:
            raise ValueError("--rerank needs a chat model (reranked replies answer a conversation)")
        if settings.rerank_candidates > settings.max_batch_rows:
            raise ValueError(f"--rerank-n {settings.rerank_candidates} is more than the batch's "
                             f"{settings.max_batch_rows} rows (--max-rows)")
        if isinstance(reranker, (str, Path)):
            from src.generation.reranker import load_reranker

            reranker = load_reranker(reranker, device)
        rerank = RerankService(reranker, settings.rerank_candidates, settings.rerank_context_lines)
    engine = Engine(loaded.model, loaded.tokenizer, precision=precision, device=device)
    scheduler = Scheduler(engine, max_active=settings.max_concurrent_requests,
                          max_rows=settings.max_batch_rows, max_queue=settings.max_queue,
                          queue_timeout_s=settings.queue_timeout_s, batching=settings.batching)
    prompts = PromptBuilder(loaded, chat, settings, generation)
    scheduler.start()
    return ServedModel(name or default_name(Path(model_path)), prompts, scheduler, int(time.time()), rerank)


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    problems = ServeConfig.problems(_as_dict(args.serve))
    if problems:
        key, message = problems[0]
        sys.exit(f"error: serve: serve.{key} {message}")
    try:
        served = build(args.model, args.serve, args.generation, mode=args.mode, name=args.name,
                       precision=args.precision, device=args.device, reranker=args.rerank)
    except (LoadError, ValueError) as exc:
        sys.exit(f"error: serve: {exc}")
    api_key = os.environ.get(args.serve.api_key_env) or None
    app = create_app(served, api_key)
    engine = served.scheduler.engine
    print(f"serving {served.name} ({'chat' if served.prompts.chat else 'base'} model, context "
          f"{engine.block_size}, {engine.device} {engine.precision}, batching "
          f"{'on' if args.serve.batching else 'off'}{', reranked replies as ' + served.model_ids()[-1] if served.rerank else ''}) at http://{args.host}:{args.port}/v1; API key "
          f"{'required' if api_key else 'off'} (${args.serve.api_key_env})", flush=True)
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    finally:
        served.scheduler.stop()


if __name__ == "__main__":
    main()
