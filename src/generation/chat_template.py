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

Every consumer that turns typed text into a conversation (chat REPL, serving, evaluation) uses the
same three steps from here: `normalize_user_text` (the corpus normalizer, so input looks like the
training text), `check_content` (no special-token strings), and `fit_to_context` (whole turns
dropped from the oldest so the prompt leaves room for the reply). A model's reply goes back into
a conversation through `clean_reply`, so no special token is ever stored in a history.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from src.config.sections.normalize import NormalizeConfig
from src.tokenizers.base import SPECIAL_TOKENS

ROLES = ("system", "user", "assistant")
END = "<|end|>"


def role_tag(role: str) -> str:
    return f"<|{role}|>"


def special_ids(tokenizer: Any) -> list[int]:
    """Ids of every special token (end of text and the chat tags): in chat mode a reply stops on
    any of them, and none counts for the repetition penalty."""
    return sorted(set((getattr(tokenizer, "special_tokens", None) or {}).values()))


def special_tokens_in(text: str) -> list[str]:
    return [t for t in SPECIAL_TOKENS if t in text]


def check_content(role: str, text: str) -> None:
    """Refuse text for a `role` message that holds special-token strings (they would be read as
    tags: a user could forge an assistant turn). The one message every consumer shows."""
    found = special_tokens_in(text)
    if found:
        raise ValueError(f"{role} message contains special token(s) {found}, which only the chat "
                         "template may write")


def validate(messages: Sequence[Mapping[str, Any]]) -> None:
    """Roles known, system only first, contents are strings free of special-token strings."""
    for i, m in enumerate(messages):
        role, content = m.get("role"), m.get("content")
        if role not in ROLES:
            raise ValueError(f"message {i}: unknown role {role!r}; expected one of {list(ROLES)}")
        if role == "system" and i != 0:
            raise ValueError(f"message {i}: a system message may only come first")
        if not isinstance(content, str):
            raise ValueError(f"message {i}: content must be a string, got {type(content).__name__}")
        try:
            check_content(role, content)
        except ValueError as exc:
            raise ValueError(f"message {i}: {exc}") from None


def normalize_user_text(text: str, settings: NormalizeConfig | Mapping[str, Any] | None = None) -> str:
    """Typed text -> the form the training text had (ё→е, quotes, dashes, ellipsis, spaces: a char
    model has no `ё` at all). `settings`: the `normalize` section the model's training text went
    through (LoadedModel.normalize); None -> that section's defaults."""
    from src.text.normalize import normalize_text

    return normalize_text(text, NormalizeConfig() if settings is None else settings)


def clean_reply(text: str) -> str:
    """A generated reply as it may enter a conversation: cut at the first special-token string (a
    tag spelled out of ordinary pieces means the model started another turn)."""
    cuts = [text.find(t) for t in SPECIAL_TOKENS if t in text]
    return text[:min(cuts)] if cuts else text


def reply_reserve(context: int, max_new_tokens: int, reply_share: float) -> int:
    """Tokens kept free for the reply: `reply_share` of the context, at most max_new_tokens, at
    least 1."""
    if not 0 < reply_share < 1:
        raise ValueError(f"reply_share must be in (0, 1), got {reply_share!r}")
    return max(1, min(max_new_tokens, int(context * reply_share)))


class ContextError(ValueError):
    """The messages that must be kept (system message and the newest message) do not fit."""


@dataclass
class FittedPrompt:
    ids: list[int]
    # The messages the ids render (system message first when there is one).
    messages: list[dict[str, Any]]
    # How many of the oldest non-system messages were left out.
    dropped: int
    # The reply length that fits: min(requested, the reserve).
    max_new_tokens: int


def fit_to_context(tokenizer: Any, messages: Sequence[Mapping[str, Any]], context: int,
                   max_new_tokens: int, reply_share: float,
                   add_generation_prompt: bool = True) -> FittedPrompt:
    """The prompt for `messages` that leaves `reply_reserve(...)` tokens of `context` to the reply:
    whole messages are dropped from the oldest (the system message stays, and the kept part starts
    with a user message) until the rest fits. ContextError when even the system message and the
    last message alone do not fit."""
    validate(messages)
    reserve = reply_reserve(context, max_new_tokens, reply_share)
    budget = context - reserve
    system = [dict(m) for m in messages[:1] if m["role"] == "system"]
    turns = [dict(m) for m in messages[len(system):]]
    # Each message encodes on its own exactly as inside the whole document (see encode_for_training).
    sizes = [len(encode(tokenizer, [m], add_generation_prompt=False)) for m in system + turns]
    tail = len(tokenizer.encode(f"{role_tag('assistant')}\n")) if add_generation_prompt else 0
    total = sum(sizes) + tail
    first = 0  # turns[first:] are kept
    while True:
        # The kept part opens with a user message: a reply without its question is no exchange.
        while first < len(turns) - 1 and turns[first]["role"] != "user":
            total -= sizes[len(system) + first]
            first += 1
        if total <= budget:
            break
        if first >= len(turns) - 1:
            raise ContextError(
                f"the prompt needs {total} tokens with only the system message and the newest message, "
                f"but the context of {context} tokens keeps {budget} for it ({reserve} are reserved for "
                "the reply): shorten the message or the system message")
        total -= sizes[len(system) + first]
        first += 1
    kept_messages = system + turns[first:]
    ids = encode(tokenizer, kept_messages, add_generation_prompt)
    return FittedPrompt(ids, kept_messages, first, reserve)


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
