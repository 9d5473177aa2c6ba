"""The conversation contract shared with the `sft` stage, and the checks that enforce it.

A conversation is a list of {role, content}: an optional system message first, then user and
assistant turns alternating, starting with user and ending with assistant. Contents are non-empty
strings free of our special-token strings (which the chat template would read as tags).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from src.tokenizers.base import SPECIAL_TOKENS

SYSTEM, USER, ASSISTANT = "system", "user", "assistant"
ROLES = (SYSTEM, USER, ASSISTANT)

# Why a conversation is rejected; each is a key of the report's `bad_rows` counts.
BAD_REASONS = (
    "not_a_list", "no_turns", "not_a_message", "missing_role", "unknown_role", "missing_content",
    "content_not_string", "empty_content", "special_token_in_content", "system_not_first",
    "starts_with_assistant", "two_user_turns_in_a_row", "two_assistant_turns_in_a_row",
    "not_ending_with_assistant",
)


def conversation_problem(messages: Any) -> str | None:
    """The first reason (one of BAD_REASONS) `messages` breaks the contract, or None when it holds."""
    if not isinstance(messages, Sequence) or isinstance(messages, str | bytes):
        return "not_a_list"
    if not messages:
        return "no_turns"
    previous: str | None = None
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping):
            return "not_a_message"
        role, content = m.get("role"), m.get("content")
        if role is None:
            return "missing_role"
        if role not in ROLES:
            return "unknown_role"
        if content is None:
            return "missing_content"
        if not isinstance(content, str):
            return "content_not_string"
        if not content.strip():
            return "empty_content"
        if any(token in content for token in SPECIAL_TOKENS):
            return "special_token_in_content"
        if role == SYSTEM and i != 0:
            return "system_not_first"
        if role == ASSISTANT and previous in (None, SYSTEM):
            return "starts_with_assistant"
        if role == USER and previous == USER:
            return "two_user_turns_in_a_row"
        if role == ASSISTANT and previous == ASSISTANT:
            return "two_assistant_turns_in_a_row"
        previous = role
    if previous != ASSISTANT:
        return "not_ending_with_assistant"
    return None


def alternating(turns: Sequence[str], system: str | None = None) -> list[dict[str, str]]:
    """Turns of a dialogue as user, assistant, user, ... (the caller passes an even number)."""
    out = [{"role": SYSTEM, "content": system}] if system else []
    out.extend({"role": USER if i % 2 == 0 else ASSISTANT, "content": t} for i, t in enumerate(turns))
    return out


def conversation_hash(messages: Sequence[Mapping[str, str]]) -> str:
    """A stable id of the content: the same conversation always hashes the same, anywhere."""
    canon = json.dumps([[m["role"], m["content"]] for m in messages], ensure_ascii=False,
                       separators=(",", ":"))
    return hashlib.blake2b(canon.encode("utf-8"), digest_size=12).hexdigest()
