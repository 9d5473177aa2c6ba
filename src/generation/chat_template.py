"""The chat template: how a conversation becomes the one document the model reads.

Format (each message is a role tag, a newline, the content, the end tag, a newline):

    <|system|>\\n{system}<|end|>\\n          (only when there is a system message; first only)
    <|user|>\\n{user}<|end|>\\n
    <|assistant|>\\n{assistant}<|end|>\\n
    ...
    <|assistant|>\\n                          (the generation prompt: the model writes the reply
                                             and closes it with <|end|>)

The tags are special tokens, one id each. Nothing else is added: no begin-of-text token, no
trimming of the contents. For supervised fine-tuning, `encode_for_training` marks the tokens that
carry loss: each assistant message's content and its closing <|end|> (not the newline after it,
which the template adds, nor any system/user tokens).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from src.tokenizers.base import SPECIAL_TOKENS

ROLES = ("system", "user", "assistant")
END = "<|end|>"


def role_tag(role: str) -> str:
    return f"<|{role}|>"


def validate(messages: Sequence[Mapping[str, Any]]) -> None:
    """Roles known, system only first, contents are strings free of special-token strings (which
    would otherwise be read as tags: a user could forge an assistant turn)."""
    for i, m in enumerate(messages):
        role, content = m.get("role"), m.get("content")
        if role not in ROLES:
            raise ValueError(f"message {i}: unknown role {role!r}; expected one of {list(ROLES)}")
        if role == "system" and i != 0:
            raise ValueError(f"message {i}: a system message may only come first")
        if not isinstance(content, str):
            raise ValueError(f"message {i}: content must be a string, got {type(content).__name__}")
        found = [t for t in SPECIAL_TOKENS if t in content]
        if found:
            raise ValueError(f"message {i} ({role}): content contains special token(s) {found}")


def segments(messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool) -> list[tuple[str, bool]]:
    """The rendered document as (text, carries_loss) pieces, in order."""
    validate(messages)
    out: list[tuple[str, bool]] = []
    for m in messages:
        out.append((f"{role_tag(m['role'])}\n", False))
        is_reply = m["role"] == "assistant"
        out.append((m["content"] + END, is_reply))
        out.append(("\n", False))
    if add_generation_prompt:
        out.append((f"{role_tag('assistant')}\n", False))
    return [(text, loss) for text, loss in out if text]


def render(messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool = True) -> str:
    """The exact text the model is fed for `messages` (see the module docstring)."""
    return "".join(text for text, _ in segments(messages, add_generation_prompt))


def encode(tokenizer: Any, messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool = True) -> list[int]:
    return tokenizer.encode(render(messages, add_generation_prompt))


def encode_for_training(tokenizer: Any, messages: Sequence[Mapping[str, Any]]) -> tuple[list[int], list[bool]]:
    """Token ids of the whole conversation and, per token, whether it carries loss. Pieces are
    encoded separately, which matches `encode` because every piece boundary touches a special
    token (atomic) or a newline (atomic in our tokenizers)."""
    ids: list[int] = []
    mask: list[bool] = []
    for text, loss in segments(messages, add_generation_prompt=False):
        piece = tokenizer.encode(text)
        ids.extend(piece)
        mask.extend([loss] * len(piece))
    return ids, mask


def show_tokens(tokenizer: Any, ids: Sequence[int]) -> str:
    """A debug view: the text with special tokens visible, then each id with its piece."""
    specials = set(tokenizer.special_tokens.values())
    parts: list[str] = []
    run: list[int] = []  # ordinary ids decode together, so multi-byte characters stay whole
    for i in [*ids, None]:
        if i is not None and i not in specials:
            run.append(i)
            continue
        if run:
            parts.append(tokenizer.decode(run))
            run = []
        if i is not None:
            parts.append(tokenizer.id_to_piece(i))
    text = "".join(parts)
    pairs = " ".join(f"{i}:{tokenizer.id_to_piece(i)!r}" for i in ids)
    return f"--- text ({len(ids)} tokens) ---\n{text}\n--- ids ---\n{pairs}"
