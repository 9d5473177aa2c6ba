"""From a validated request to token ids, limits and stops: the checks that depend on the model.

Chat requests go through the chat REPL's code path (src/generation/chat_template.py): each message
through the corpus normalizer (`normalize_user_text`), special-token strings refused
(`check_content`), the conversation fitted to the context with room for the reply (`fit_to_context`:
whole old messages give way; how many is reported, never silent), replies stopped at every special
token. Every refusal is a `RequestError` naming the field, which the app answers in the OpenAI error
format.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from src.config.sections.generation import GenerationConfig
from src.config.sections.serve import ServeConfig
from src.generation import chat_template
from src.generation.loading import LoadedModel
from src.generation.sampling import SamplingParams
from src.serve.schemas import ChatCompletionRequest, CompletionRequest, Message, Sampling
from src.tokenizers.base import SPECIAL_TOKENS


class RequestError(Exception):
    """An answer other than 200: HTTP status, message, and the request field it is about."""

    def __init__(self, status: int, message: str, param: str | None = None,
                 code: str | None = None, kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


@dataclass
class PreparedRequest:
    ids: list[int]
    params: SamplingParams
    n: int
    stop_ids: frozenset[int]
    stop_strings: tuple[str, ...]
    seed: int | None
    # Chat: the oldest messages left out so the prompt leaves room for the reply.
    dropped_messages: int = 0
    messages: list[dict[str, str]] = field(default_factory=list)


class PromptBuilder:
    """The model's tokenizer, context and normalize settings, and the server's limits."""

    def __init__(self, loaded: LoadedModel, chat: bool, limits: ServeConfig,
                 defaults: GenerationConfig | None = None) -> None:
        if loaded.tokenizer is None:
            raise ValueError(f"{loaded.source}: a server needs the model's tokenizer")
        self.tokenizer = loaded.tokenizer
        self.chat = chat
        self.normalize = loaded.normalize
        self.context = loaded.model.block_size
        self.limits = limits
        self.defaults = defaults or GenerationConfig()
        # At least one new token must fit after the prompt.
        self.max_prompt_tokens = min(limits.max_prompt_tokens or self.context - 1, self.context - 1)

    # --- chat ---------------------------------------------------------------------------------------
    def normalized_messages(self, messages: list[Message]) -> list[dict[str, str]]:
        out = []
        for i, m in enumerate(messages):
            text = chat_template.normalize_user_text(m.text(), self.normalize)
            try:
                chat_template.check_content(m.role, text)
            except ValueError as exc:
                raise RequestError(400, f"messages[{i}].content: {exc}", f"messages.{i}.content") from None
            out.append({"role": m.role, "content": text})
        return out

    def fit_chat(self, messages: list[Message], max_tokens: int) -> chat_template.FittedPrompt:
        normalized = self.normalized_messages(messages)
        try:
            fitted = chat_template.fit_to_context(self.tokenizer, normalized, self.context, max_tokens,
                                                  self.defaults.reply_share)
        except chat_template.ContextError as exc:
            raise RequestError(400, f"messages: {exc}", "messages", "context_length_exceeded") from None
        except ValueError as exc:  # roles in a wrong order ("message 3: a system message may only come first")
            found = re.match(r"message (\d+): ", str(exc))
            param = f"messages.{found.group(1)}.role" if found else "messages"
            raise RequestError(400, f"messages: {exc}", param) from None
        if len(fitted.ids) > self.max_prompt_tokens:
            raise RequestError(400, f"messages: the prompt has {len(fitted.ids)} tokens, more than "
                                    f"max_prompt_tokens={self.max_prompt_tokens}", "messages",
                               "context_length_exceeded")
        return fitted

    def chat_request(self, req: ChatCompletionRequest) -> PreparedRequest:
        if not self.chat:
            raise RequestError(400, "model: this is a base model (not chat-tuned); use /v1/completions, "
                                    "or start the server with --mode chat", "model")
        if req.max_tokens is not None and req.max_completion_tokens is not None:
            raise RequestError(400, "give max_tokens or max_completion_tokens, not both", "max_completion_tokens")
        param = "max_completion_tokens" if req.max_completion_tokens is not None else "max_tokens"
        max_tokens = self.max_tokens(req.max_completion_tokens or req.max_tokens, param)
        fitted = self.fit_chat(req.messages, max_tokens)
        stops = self.stop_strings(req)
        return PreparedRequest(fitted.ids, self.sampling(req, max_tokens), self.n(req),
                               frozenset(chat_template.special_ids(self.tokenizer)),
                               (*SPECIAL_TOKENS, *stops), req.seed, fitted.dropped, fitted.messages)

    # --- text completion ------------------------------------------------------------------------------
    def completion_request(self, req: CompletionRequest) -> PreparedRequest:
        max_tokens = self.max_tokens(req.max_tokens, "max_tokens")
        text = chat_template.normalize_user_text(req.prompt, self.normalize)
        try:
            chat_template.check_content("prompt", text)
        except ValueError as exc:
            raise RequestError(400, f"prompt: {exc}", "prompt") from None
        # An empty prompt starts a new document, as after the end-of-text token in training.
        ids = self.tokenizer.encode(text) if text else [self.tokenizer.eot_id]
        if len(ids) > self.max_prompt_tokens:
            raise RequestError(400, f"prompt: {len(ids)} tokens, more than max_prompt_tokens="
                                    f"{self.max_prompt_tokens} (the context holds {self.context})",
                               "prompt", "context_length_exceeded")
        return PreparedRequest(ids, self.sampling(req, max_tokens), self.n(req),
                               frozenset([self.tokenizer.eot_id]), tuple(self.stop_strings(req)), req.seed)

    # --- shared ---------------------------------------------------------------------------------------
    def max_tokens(self, requested: int | None, param: str) -> int:
        if requested is None:
            return min(self.defaults.max_new_tokens, self.limits.max_new_tokens)
        if requested > self.limits.max_new_tokens:
            raise RequestError(400, f"{param}={requested} is more than this server allows "
                                    f"(serve.max_new_tokens={self.limits.max_new_tokens})", param)
        return requested

    def n(self, req: Sampling) -> int:
        if req.n > self.limits.max_n:
            raise RequestError(400, f"n={req.n} is more than this server allows (serve.max_n="
                                    f"{self.limits.max_n})", "n")
        return req.n

    def stop_strings(self, req: Sampling) -> list[str]:
        stops = req.stop_strings()
        for i, s in enumerate(stops):
            if not s:
                raise RequestError(400, "stop: an empty stop string would stop before the first token",
                                   "stop" if isinstance(req.stop, str) else f"stop.{i}")
        return stops

    def sampling(self, req: Sampling, max_tokens: int) -> SamplingParams:
        d = self.defaults
        return SamplingParams(
            temperature=d.temperature if req.temperature is None else req.temperature,
            top_k=d.top_k if req.top_k is None else req.top_k,
            top_p=d.top_p if req.top_p is None else req.top_p,
            repetition_penalty=d.repetition_penalty if req.repetition_penalty is None else req.repetition_penalty,
            max_new_tokens=max_tokens)

    def detokenize(self, tokens: list[int]) -> str:
        vocab = self.tokenizer.vocab_size
        for i, t in enumerate(tokens):
            if t >= vocab:
                raise RequestError(400, f"tokens[{i}]={t} is not an id of this vocabulary (0..{vocab - 1})",
                                   f"tokens.{i}")
        return self.tokenizer.decode(tokens)
