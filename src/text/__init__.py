"""Text utilities shared by the cleaners and the tokenizer: normalization, mojibake repair, reflow."""

from src.text.normalize import normalize_text

__all__ = ["normalize_text"]
