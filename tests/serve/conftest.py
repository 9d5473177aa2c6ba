"""A tiny model served on a free port of 127.0.0.1 by uvicorn in a thread, for the real clients."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import torch

from src.config.sections.generation import GenerationConfig
from src.config.sections.serve import ServeConfig
from src.serve.__main__ import build
from src.serve.app import ServedModel, create_app
from src.tokenizers.char import CharTokenizer

ALPHABET = "abcdefghijklmnopqrstuvwxyz .,?!\n"
LIMITS = ServeConfig(max_new_tokens=64, max_n=4, max_queue=8, queue_timeout_s=5.0, max_body_bytes=50_000)


def write_checkpoint(directory: Path, chat: bool, block_size: int = 96, seed: int = 0) -> Path:
    from src.models.gpt import GPT

    tok = CharTokenizer(ALPHABET)
    tok.save(directory / "tokenizer")
    torch.manual_seed(seed)
    model = GPT({"vocab_size": tok.vocab_size, "block_size": block_size, "n_layer": 1, "n_head": 2,
                 "n_embd": 32})
    path = directory / "model.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
                "hyper_parameters": {"model": model.config_dict(), "chat": chat, "tokenizer_sha256": tok.sha256,
                                     "tokenizer_dir": str(directory / "tokenizer")}}, path)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    url: str  # http://127.0.0.1:PORT
    served: ServedModel

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"


def start_server(model: Path, limits: ServeConfig = LIMITS, api_key: str | None = None,
                 **build_options) -> tuple[Server, callable]:
    import uvicorn

    served = build(model, limits, GenerationConfig(temperature=0.0), precision="fp32", **build_options)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(served, api_key), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout=10)
        served.scheduler.stop()

    return Server(f"http://127.0.0.1:{port}", served), stop


@pytest.fixture(scope="module")
def chat_server(tmp_path_factory) -> Iterator[Server]:
    model = write_checkpoint(tmp_path_factory.mktemp("chat_model"), chat=True)
    server, stop = start_server(model, name="tiny-chat")
    yield server
    stop()


@pytest.fixture(scope="module")
def base_server(tmp_path_factory) -> Iterator[Server]:
    model = write_checkpoint(tmp_path_factory.mktemp("base_model"), chat=False)
    server, stop = start_server(model, replace(LIMITS, max_prompt_tokens=40), name="tiny-base")
    yield server
    stop()


@contextlib.contextmanager
def slow_and_endless(scheduler, seconds_per_step: float):
    """Decode steps take `seconds_per_step`, and no special token is ever picked (a reply of the
    random model runs to max_tokens), for as long as the block runs."""
    batch = scheduler.batch
    step, join_many = batch.step, batch.join_many
    specials = list(scheduler.tokenizer.special_tokens.values())

    def no_specials(logits):
        logits = logits.clone()
        logits[:, specials] = float("-inf")
        return logits

    def slow_step(tokens):
        time.sleep(seconds_per_step)
        return no_specials(step(tokens))

    batch.step = slow_step
    batch.join_many = lambda requests: [no_specials(x) for x in join_many(requests)]
    try:
        yield
    finally:
        batch.step, batch.join_many = step, join_many
