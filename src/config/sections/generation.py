from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from src.config.checks import above, at_least, field_problems


def open_unit(v: float) -> str | None:
    return None if 0 < v < 1 else "must be in (0, 1)"


def open_closed_unit(v: float) -> str | None:
    return None if 0 < v <= 1 else "must be in (0, 1]"


@dataclass
class GenerationConfig:
    """Default decoding settings for the chat REPL and anything else that generates text."""

    # 0 = greedy
    temperature: float = 0.8
    # 0 = off
    top_k: int = 0
    # 1.0 = off
    top_p: float = 1.0
    # 1.0 = off; CTRL-style penalty on tokens already in the context
    repetition_penalty: float = 1.0
    # reply length limit; capped by reply_share of the model's context in chat
    max_new_tokens: int = 256
    # Share of the context kept free for the reply in chat (the rest holds the conversation, cropped
    # by whole messages from the oldest). A quarter leaves the prompt three times the longest reply,
    # so the last exchange still fits beside the next message even with a 128-token context.
    reply_share: float = 0.25
    # auto (int8 on CPU, the checkpoint's dtype on GPU) | fp32 | fp16 | bf16 | int8 | int4
    precision: str = "auto"
    # the system message chat mode starts with ("" = none)
    system: str = ""

    @staticmethod
    def problems(g: Mapping[str, Any]) -> list[tuple[str, str]]:
        return field_problems(g, {
            "temperature": at_least(0), "top_k": at_least(0), "top_p": open_closed_unit,
            "repetition_penalty": above(0), "max_new_tokens": at_least(1), "reply_share": open_unit})
