"""Model definitions: the GPT decoder (src/models/gpt.py)."""

from src.models.gpt import GPT, KVCache

__all__ = ["GPT", "KVCache"]
