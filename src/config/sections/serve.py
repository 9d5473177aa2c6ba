from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from src.config.checks import at_least, field_problems, within


@dataclass
class ServeConfig:
    """The OpenAI-compatible HTTP server (`python -m src.serve`); its flags override these."""

    # 127.0.0.1: reachable from this machine only; 0.0.0.0 exposes the model to the network
    host: str = "127.0.0.1"
    port: int = 8000
    # Requests decoded together in one batch (false: one at a time, the others queue); the rows of a
    # batch are the sum of the requests' n.
    batching: bool = True
    max_concurrent_requests: int = 16
    max_batch_rows: int = 64
    # Requests waiting beyond the concurrent ones; more are refused at once (HTTP 429).
    max_queue: int = 64
    # A queued request not started within this many seconds is answered HTTP 503.
    queue_timeout_s: float = 30.0
    # Limits on a request (HTTP 400 naming the field above them). max_prompt_tokens 0 = the model's
    # context less one (room for at least one new token).
    max_prompt_tokens: int = 0
    max_new_tokens: int = 1024
    max_n: int = 8
    # A request body larger than this is refused (HTTP 413) before it is read.
    max_body_bytes: int = 1_000_000
    # Environment variable that holds the API key; when it is set and not empty every endpoint but
    # /health needs `Authorization: Bearer KEY`.
    api_key_env: str = "HOMUNCULUS_API_KEY"
    # With --rerank: candidates written per reranked reply, and the newest lines the reranker reads.
    rerank_candidates: int = 16
    rerank_context_lines: int = 6

    @staticmethod
    def problems(s: Mapping[str, Any]) -> list[tuple[str, str]]:
        return field_problems(s, {
            "port": within(0, 65535), "max_concurrent_requests": at_least(1), "max_batch_rows": at_least(1),
            "max_queue": at_least(0), "queue_timeout_s": at_least(0), "max_prompt_tokens": at_least(0),
            "max_new_tokens": at_least(1), "max_n": at_least(1), "max_body_bytes": at_least(1), "rerank_candidates": at_least(1),
            "rerank_context_lines": at_least(0)})
