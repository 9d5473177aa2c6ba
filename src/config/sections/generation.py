from __future__ import annotations

from dataclasses import dataclass


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
    max_new_tokens: int = 256
    # auto (int8 on CPU, the checkpoint's dtype on GPU) | fp32 | fp16 | bf16 | int8 | int4
    precision: str = "auto"
    # the system message chat mode starts with ("" = none)
    system: str = ""
