"""The HTTP API: OpenAI's chat and text completions (plain and streamed as server-sent events),
models and health, and the template/tokenizer views (`/apply-template` shows the exact text and ids
a conversation becomes, like the chat REPL's /template).

Every failure is answered in the OpenAI error format, `{"error": {"message", "type", "param",
"code"}}`: bad input 400 naming the field, a missing or wrong API key 401, an unknown model or path
404, a full queue 429, a queue timeout 503; a bug is a 500 and the server keeps serving. No endpoint
reads or writes a file named by a request.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException

from src.generation import chat_template
from src.serve.prompts import PreparedRequest, PromptBuilder, RequestError
from src.serve.rerank import RERANK_SUFFIX, CandidatesAbandoned, RerankService, rerank_fields
from src.serve.scheduler import GenerationJob, JobUpdate, QueueFull, Scheduler
from src.serve.schemas import (
    ApplyTemplateRequest,
    ChatCompletionRequest,
    CompletionRequest,
    DetokenizeRequest,
    TokenizeRequest,
)

# Seconds between checks that a client waiting for a whole (not streamed) reply is still connected.
DISCONNECT_POLL_S = 0.25


@dataclass
class ServedModel:
    name: str
    prompts: PromptBuilder
    scheduler: Scheduler
    created: int
    rerank: RerankService | None = None

    def model_ids(self) -> list[str]:
        return [self.name, *([self.name + RERANK_SUFFIX] if self.rerank else [])]


def field_name(loc: tuple[Any, ...]) -> str:
    """("body", "messages", 0, "content") -> "messages.0.content"; the body itself -> "body"."""
    parts = [str(p) for p in loc if p != "body"]
    return ".".join(parts) or "body"


def validation_error(exc: RequestValidationError) -> RequestError:
    """The first problem pydantic found, as one line naming the field."""
    first = exc.errors()[0]
    kind, loc = first.get("type", ""), tuple(first.get("loc", ()))
    if kind == "json_invalid":
        return RequestError(400, f"body: malformed JSON ({first.get('ctx', {}).get('error', first['msg'])})", "body")
    # A union (str | list[...]) reports one error per branch; the field is the common prefix.
    loc = tuple(p for p in loc if not (isinstance(p, str) and ("[" in p or p in {"str", "list", "int"})))
    param = field_name(loc)
    if kind == "extra_forbidden":
        return RequestError(400, f"{param}: unknown field (this server does not implement it)", param)
    if kind == "missing":
        return RequestError(400, f"{param}: required field missing", param)
    return RequestError(400, f"{param}: {first['msg']}", param)


def sse(payload: dict[str, Any] | str) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
    return f"data: {data}\n\n".encode()


class BodyLimit:
    """Refuses a request whose Content-Length exceeds `limit` (413) before anything reads it, and
    one whose body grows past it while being read (a chunked upload). A plain ASGI middleware:
    Starlette's HTTP middleware would hide client disconnects from the handlers."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            return await self.refuse(send)
        seen = 0

        async def counted() -> dict:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise BodyTooLarge(self.limit)
            return message

        try:
            await self.app(scope, counted, send)
        except BodyTooLarge:
            await self.refuse(send)

    async def refuse(self, send: Callable) -> None:
        body = json.dumps(BodyTooLarge(self.limit).error().body()).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class BodyTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"body: larger than {limit} bytes (serve.max_body_bytes)")

    def error(self) -> RequestError:
        return RequestError(413, str(self), "body")


def create_app(served: ServedModel, api_key: str | None = None) -> FastAPI:
    async def check_api_key(request: Request) -> None:
        # A dependency of every route rather than an HTTP middleware: Starlette's middleware wraps
        # the receive channel, and the handlers could no longer see a client disconnect.
        if api_key and request.url.path != "/health":
            scheme, _, given = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), api_key.encode()):
                raise RequestError(401, "missing or wrong API key (send Authorization: Bearer KEY)",
                                   code="invalid_api_key")

    app = FastAPI(title="homunculus", docs_url=None, redoc_url=None, openapi_url=None,
                  dependencies=[Depends(check_api_key)])
    app.add_middleware(BodyLimit, limit=served.prompts.limits.max_body_bytes)
    prompts, scheduler = served.prompts, served.scheduler

    @app.exception_handler(RequestError)
    async def request_error(_: Request, exc: RequestError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        error = validation_error(exc)
        return JSONResponse(error.body(), status_code=error.status)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        if isinstance(exc.__cause__, BodyTooLarge):  # FastAPI turns errors while reading into a 400
            error = exc.__cause__.error()
            return JSONResponse(error.body(), status_code=error.status)
        return JSONResponse(RequestError(exc.status_code, str(exc.detail)).body(), status_code=exc.status_code)

    @app.exception_handler(ClientGone)
    async def client_gone(_: Request, exc: ClientGone) -> JSONResponse:
        # Nobody reads it (nginx's 499 "client closed request"); the job is already cancelled.
        return JSONResponse(RequestError(499, "client disconnected").body(), status_code=499)

    @app.exception_handler(Exception)
    async def bug(_: Request, exc: Exception) -> JSONResponse:
        error = RequestError(500, f"internal error: {type(exc).__name__}: {exc}", kind="server_error")
        return JSONResponse(error.body(), status_code=500)

    def check_model(name: str | None) -> bool:
        """Whether the model id selects reranked replies; 404 for an id not served here."""
        if name is not None and name not in served.model_ids():
            raise RequestError(404, f"model {name!r} is not served here (GET /v1/models lists "
                                    f"{served.model_ids()})", "model", "model_not_found")
        return name is not None and name != served.name

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": served.name, "chat": prompts.chat, **scheduler.load()}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": name, "object": "model", "created": served.created,
                                            "owned_by": "homunculus"} for name in served.model_ids()]}

    @app.post("/apply-template")
    async def apply_template(req: ApplyTemplateRequest) -> dict[str, Any]:
        check_model(req.model)
        if req.add_generation_prompt:
            fitted = prompts.fit_chat(req.messages, prompts.max_tokens(req.max_tokens, "max_tokens"))
            messages, ids, dropped = fitted.messages, fitted.ids, fitted.dropped
        else:
            messages, dropped = prompts.normalized_messages(req.messages), 0
            try:
                ids = chat_template.encode(prompts.tokenizer, messages, add_generation_prompt=False)
            except ValueError as exc:
                raise RequestError(400, f"messages: {exc}", "messages") from None
        return {"prompt": chat_template.render(messages, req.add_generation_prompt), "tokens": ids,
                "n_tokens": len(ids), "dropped_messages": dropped}

    @app.post("/tokenize")
    async def tokenize(req: TokenizeRequest) -> dict[str, Any]:
        check_model(req.model)
        ids = prompts.tokenizer.encode(req.content)
        return {"tokens": ids, "pieces": [prompts.tokenizer.id_to_piece(i) for i in ids]}

    @app.post("/detokenize")
    async def detokenize(req: DetokenizeRequest) -> dict[str, Any]:
        check_model(req.model)
        return {"content": prompts.detokenize(req.tokens)}

    @app.post("/v1/chat/completions")
    async def chat_completions(req: ChatCompletionRequest, request: Request) -> Any:
        selected = check_model(req.model)
        if req.rerank if req.rerank is not None else selected:
            return await reranked(req, request)
        prepared = prompts.chat_request(req)
        return await complete(request, prepared, req.stream, req.stream_options is not None
                              and req.stream_options.include_usage, chat=True)

    @app.post("/v1/completions")
    async def completions(req: CompletionRequest, request: Request) -> Any:
        check_model(req.model)
        prepared = prompts.completion_request(req)
        return await complete(request, prepared, req.stream, req.stream_options is not None
                              and req.stream_options.include_usage, chat=False)

    async def reranked(req: ChatCompletionRequest, request: Request) -> dict[str, Any]:
        if served.rerank is None:
            raise RequestError(400, "rerank: this server has no reranker (start it with --rerank DIR)", "rerank")
        if req.stream:
            raise RequestError(400, "stream: a reranked reply is chosen once every candidate is written, "
                                    "so it cannot be streamed; send stream=false", "stream")
        if req.n > served.rerank.candidates:
            raise RequestError(400, f"n={req.n}: only {served.rerank.candidates} candidates are written "
                                    "(--rerank-n)", "n")
        prepared = prompts.chat_request(req)
        gone = threading.Event()
        work = asyncio.ensure_future(asyncio.to_thread(served.rerank.reply, scheduler, prepared, gone))
        try:
            while not work.done():
                await asyncio.wait({work}, timeout=DISCONNECT_POLL_S)
                if not work.done() and await request.is_disconnected():
                    gone.set()  # the writer cancels its candidates' rows
            ranked, tokens = work.result()
        except CandidatesAbandoned:
            raise ClientGone() from None
        finally:
            gone.set()
        # When every candidate was left out (empty, an echo: counted under rerank.dropped), one empty
        # reply: clients expect at least one choice.
        texts = [s.text for s in ranked.ranked[:req.n]] or [""]
        choices = [{"index": i, "message": {"role": "assistant", "content": text}, "finish_reason": "stop",
                    "logprobs": None} for i, text in enumerate(texts)]
        reply = Reply(req.model, prepared, chat=True)
        reply.tokens = [tokens]
        return {**reply.head(), "choices": choices, "usage": reply.usage(), "rerank": rerank_fields(ranked)}

    async def complete(request: Request, prepared: PreparedRequest, stream: bool, include_usage: bool,
                       chat: bool) -> Any:
        loop = asyncio.get_running_loop()
        updates = Updates(request)

        def deliver(update: JobUpdate) -> None:
            if not loop.is_closed():
                loop.call_soon_threadsafe(updates.queue.put_nowait, update)

        job = updates.job = GenerationJob(prepared.ids, prepared.params, deliver, prepared.n, prepared.stop_ids,
                                          prepared.stop_strings, prepared.seed)
        try:
            scheduler.submit(job)
        except QueueFull as exc:
            raise RequestError(429, f"server busy: {exc}; retry later", code="queue_full",
                               kind="rate_limit_error") from None
        reply = Reply(served.name, prepared, chat)
        try:
            first = await updates.next()
        except BaseException:
            job.cancel()
            raise
        if first.error:
            raise RequestError(first.error[0], first.error[1], kind="server_error")
        if stream:
            return StreamingResponse(reply.stream(updates, include_usage), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache"})
        try:
            while True:
                update = await updates.next()
                if update.error:
                    raise RequestError(update.error[0], update.error[1], kind="server_error")
                reply.add(update)
                if update.done:
                    return reply.whole()
        finally:
            job.cancel()  # a no-op once done; frees the rows when the client left or on error

    return app


class ClientGone(Exception):
    pass


class Updates:
    """A job's updates as the HTTP side awaits them, watching that the client is still there: at
    least every DISCONNECT_POLL_S, also while updates keep coming (a busy decode never waits out a
    timeout, so checking only on timeouts would miss a client that left)."""

    def __init__(self, request: Request) -> None:
        self.request = request
        self.job: GenerationJob | None = None
        self.queue: asyncio.Queue[JobUpdate] = asyncio.Queue()
        self.checked = time.monotonic()

    async def next(self) -> JobUpdate:
        """The next update; ClientGone (and the job cancelled) when the client disconnected."""
        while True:
            if time.monotonic() - self.checked >= DISCONNECT_POLL_S:
                self.checked = time.monotonic()
                if await self.request.is_disconnected():
                    if self.job is not None:
                        self.job.cancel()
                    raise ClientGone()
            try:
                return await asyncio.wait_for(self.queue.get(), DISCONNECT_POLL_S)
            except asyncio.TimeoutError:
                continue


class Reply:
    """Builds the OpenAI response objects of one request from the scheduler's updates."""

    def __init__(self, model: str, prepared: PreparedRequest, chat: bool) -> None:
        self.model, self.prepared, self.chat = model, prepared, chat
        self.id = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.texts = [""] * prepared.n
        self.finish: list[str | None] = [None] * prepared.n
        self.tokens = [0] * prepared.n

    def add(self, update: JobUpdate) -> None:
        for d in update.deltas:
            self.texts[d.index] += d.text
            self.finish[d.index] = d.finish_reason or self.finish[d.index]
        if update.done:
            self.tokens = update.tokens

    def usage(self) -> dict[str, int]:
        prompt, completion = len(self.prepared.ids), sum(self.tokens)
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    def head(self) -> dict[str, Any]:
        head = {"id": self.id, "object": "chat.completion" if self.chat else "text_completion",
                "created": self.created, "model": self.model}
        if self.prepared.dropped_messages:
            # Not in the OpenAI API: the oldest messages that did not fit beside the reply.
            head["dropped_messages"] = self.prepared.dropped_messages
        return head

    def whole(self) -> dict[str, Any]:
        if self.chat:
            choices = [{"index": i, "message": {"role": "assistant", "content": text},
                        "finish_reason": self.finish[i], "logprobs": None} for i, text in enumerate(self.texts)]
        else:
            choices = [{"index": i, "text": text, "finish_reason": self.finish[i], "logprobs": None}
                       for i, text in enumerate(self.texts)]
        return {**self.head(), "choices": choices, "usage": self.usage()}

    def chunk(self, index: int, text: str, finish: str | None, first: bool) -> dict[str, Any]:
        head = self.head()
        if self.chat:
            head["object"] = "chat.completion.chunk"
            delta: dict[str, Any] = {"role": "assistant", "content": text} if first else {"content": text}
            choice = {"index": index, "delta": delta, "finish_reason": finish, "logprobs": None}
        else:
            choice = {"index": index, "text": text, "finish_reason": finish, "logprobs": None}
        return {**head, "choices": [choice]}

    async def stream(self, updates: Updates, include_usage: bool) -> AsyncIterator[bytes]:
        """Server-sent events: a chunk per new piece of text per choice, an error event if the
        decode fails midway, then [DONE]. Leaving early (the client disconnected) cancels the job."""
        opened = [False] * self.prepared.n
        try:
            if self.chat:  # the role first, as OpenAI does, so clients can show the turn at once
                for i in range(self.prepared.n):
                    opened[i] = True
                    yield sse(self.chunk(i, "", None, first=True))
            while True:
                update = await updates.next()
                if update.error:
                    yield sse(RequestError(update.error[0], update.error[1], kind="server_error").body())
                    break
                self.add(update)
                for d in update.deltas:
                    yield sse(self.chunk(d.index, d.text, d.finish_reason, first=not opened[d.index]))
                    opened[d.index] = True
                if update.done:
                    if include_usage:
                        yield sse({**self.head(), "object": "chat.completion.chunk" if self.chat
                                   else "text_completion", "choices": [], "usage": self.usage()})
                    break
            yield sse("[DONE]")
        except ClientGone:
            pass
        finally:
            if updates.job is not None:
                updates.job.cancel()
