"""Request bodies of the server's endpoints (the OpenAI API's fields that this server implements).

Every model forbids unknown fields and is strict about types (no "0.5" for a number, no 1 for a
string): a field the server would ignore, or a value it would have to guess at, is a 400 naming the
field, never a silent default. Ranges the schema can state are stated here; limits that depend on
the model or the server's settings (context, max_tokens, n) are checked in src/serve/prompts.py.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class TextPart(Strict):
    type: Literal["text"]
    text: str


class Message(Strict):
    role: Literal["system", "user", "assistant"]
    # A string, or the OpenAI form of a list of text parts (joined without a separator).
    content: str | list[TextPart]

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class StreamOptions(Strict):
    include_usage: bool = False


class Sampling(Strict):
    """Fields shared by chat and text completions."""

    model: str
    temperature: Annotated[float, Field(ge=0)] | None = None
    top_p: Annotated[float, Field(gt=0, le=1)] | None = None
    # Not in the OpenAI API (llama.cpp and vLLM accept them): 0 = off, 1.0 = off.
    top_k: Annotated[int, Field(ge=0)] | None = None
    repetition_penalty: Annotated[float, Field(gt=0)] | None = None
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    n: Annotated[int, Field(ge=1)] = 1
    stop: str | Annotated[list[str], Field(max_length=4)] | None = None
    seed: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None

    def stop_strings(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)


class ChatCompletionRequest(Sampling):
    messages: Annotated[list[Message], Field(min_length=1)]
    # The OpenAI API's newer name for max_tokens; give one of the two.
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None
    # Not in the OpenAI API: the best of several candidates by the server's reranker (--rerank);
    # the model id NAME+rerank selects it too.
    rerank: bool | None = None


class CompletionRequest(Sampling):
    prompt: str


class ApplyTemplateRequest(Strict):
    messages: Annotated[list[Message], Field(min_length=1)]
    add_generation_prompt: bool = True
    # The reply length the prompt must leave room for (older messages give way), as in a completion.
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    model: str | None = None


class TokenizeRequest(Strict):
    content: str
    model: str | None = None


class DetokenizeRequest(Strict):
    tokens: list[Annotated[int, Field(ge=0)]]
    model: str | None = None
