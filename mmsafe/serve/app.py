"""An OpenAI-compatible endpoint in front of any mmsafe target: ``/v1/chat/completions`` (plain and streamed),
``/v1/models``, ``/healthz``.

Concurrent requests are batched into the target: a request waits up to ``batch_wait_s`` for others, and while the
target works on one batch the next one fills, up to ``target.batch_size``. One batch runs at a time, in a worker
thread (targets are not thread-safe), so the event loop keeps accepting requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from concurrent.futures import Executor
from dataclasses import asdict, dataclass
from typing import Any, Generic, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.responses import Response as HTTPResponse

from mmsafe.batching import each_or_alone
from mmsafe.serve.faults import Faults
from mmsafe.serve.openai_types import (AssistantMessage, ChatChunk, ChatRequest, ChatResponse, Choice, ChunkChoice,
                                       Delta, ModelCard, ModelList, Usage, WireError, error_body, request_sample)
from mmsafe.targets import Target
from mmsafe.types import Response

T = TypeVar("T")
X = TypeVar("X")
Y = TypeVar("Y")


@dataclass
class Stats:
    """What the server saw, for ``/healthz``, tests and benchmarks: requests received, how many were being handled
    at once (most), batches run and the largest."""

    requests: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    batches: int = 0
    max_batch: int = 0


class Batcher(Generic[X, Y]):
    """Collects concurrent calls into batches for ``fn`` (a target's ``generate``, a guard's defense stage), at most
    ``size`` at a time. A call waits up to ``wait_s`` for others; while one batch runs (in a worker thread of
    ``executor``, the default one if None) the next one fills. One batch at a time, so ``fn`` need not be
    thread-safe; a batch that raises is retried item by item (``each_or_alone``)."""

    def __init__(self, fn: Callable[[list[X]], list[Y]], size: int, wait_s: float, stats: Stats | None = None,
                 executor: Executor | None = None) -> None:
        self.fn, self.size, self.wait_s, self.stats, self.executor = fn, max(1, size), wait_s, stats, executor
        self.queue: asyncio.Queue[tuple[X, asyncio.Future[Y | Exception]]] = asyncio.Queue()

    async def submit(self, item: X) -> Y | Exception:
        future: asyncio.Future[Y | Exception] = asyncio.get_running_loop().create_future()
        await self.queue.put((item, future))
        return await future

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self.queue.get()]
            deadline = loop.time() + self.wait_s
            while len(batch) < self.size:
                try:
                    batch.append(self.queue.get_nowait() if loop.time() >= deadline else
                                 await asyncio.wait_for(self.queue.get(), deadline - loop.time()))
                except (asyncio.QueueEmpty, TimeoutError):
                    break
            batch = [(s, f) for s, f in batch if not f.done()]  # their clients left while they queued
            if not batch:
                continue
            if self.stats is not None:
                self.stats.batches += 1
                self.stats.max_batch = max(self.stats.max_batch, len(batch))
            outs = await loop.run_in_executor(self.executor, each_or_alone, [s for s, _ in batch], self.fn)
            for (_, future), out in zip(batch, outs):
                if not future.done():
                    future.set_result(out)


def create_app(target: Target, model_name: str, faults: Faults | None = None, api_key: str | None = None,
               batch_wait_s: float = 0.005) -> FastAPI:
    """The FastAPI app serving ``target`` as ``model_name``. ``api_key``: when set, requests must carry it as a
    bearer token. ``faults``: inject failures (tests). The app loads the target on startup; closing it is the
    caller's."""
    stats = Stats()
    faults = faults or Faults()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(target.load)
        batcher = Batcher(target.generate, target.batch_size, batch_wait_s, stats)
        app.state.batcher = batcher
        task = asyncio.create_task(batcher.run())
        yield
        task.cancel()

    app = FastAPI(title=f"mmsafe serve-model: {model_name}", lifespan=lifespan)
    app.state.stats, app.state.faults = stats, faults

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        where = "; ".join(f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors())
        return error_response(400, f"invalid request: {where}", "invalid_request_error")

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "model": model_name, "stats": asdict(stats), "faults": dict(faults.injected)}

    @app.get("/v1/models")
    async def models() -> ModelList:
        return ModelList(data=[ModelCard(id=model_name)])

    @app.post("/v1/chat/completions", response_model=None)
    async def chat(request: ChatRequest, http: Request) -> Any:
        stats.requests += 1
        stats.in_flight += 1
        stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)
        try:
            if not has_key(http, api_key):
                return error_response(401, "invalid or missing API key (send it as a bearer token)",
                                      "authentication_error")
            fault = faults.draw(request.model_dump_json().encode())
            if fault == "500":
                return error_response(500, "injected fault: internal server error", "server_error")
            if fault == "429":
                return error_response(429, "injected fault: rate limited", "rate_limit_error",
                                      {"Retry-After": f"{faults.retry_after_s:g}"})
            if fault == "drop":
                return _Dropped()
            try:
                sample = request_sample(request, f"req-{uuid.uuid4().hex[:12]}")
            except WireError as e:
                return error_response(400, str(e), "invalid_request_error")

            async def answer() -> Response | Exception:
                if fault == "stall":
                    await asyncio.sleep(faults.stall_s)
                return await app.state.batcher.submit(sample)

            out = await unless_client_leaves(http, answer())
            if out is None:
                return HTTPResponse(status_code=499)  # nobody to answer; nginx's "client closed request"
            if isinstance(out, Exception):
                out = Response(error=f"{type(out).__name__}: {out}")
            if out.error:  # this request, not the server: retrying it would fail the same way
                return error_response(422, f"the target could not answer: {out.error}", "target_error")
            if request.stream:
                return StreamingResponse(sse_answer(out.text, model_name), media_type="text/event-stream")
            usage = None
            if out.prompt_tokens is not None and out.completion_tokens is not None:
                usage = Usage(prompt_tokens=out.prompt_tokens, completion_tokens=out.completion_tokens,
                              total_tokens=out.prompt_tokens + out.completion_tokens)
            return ChatResponse(model=model_name, choices=[Choice(message=AssistantMessage(content=out.text))],
                                usage=usage)
        finally:
            stats.in_flight -= 1

    return app


def error_response(status: int, message: str, kind: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """An OpenAI-style JSON error."""
    return JSONResponse(error_body(message, kind, status), status_code=status, headers=headers)


def has_key(http: Request, key: str | None) -> bool:
    """True when no key is required or the request carries ``key`` as its bearer token (compared in constant
    time)."""
    return key is None or secrets.compare_digest(http.headers.get("authorization", "").encode(),
                                                 f"Bearer {key}".encode())


async def unless_client_leaves(http: Request, work: Coroutine[Any, Any, T]) -> T | None:
    """``work``'s result, or None when the client disconnects first (a timed-out client): its work is cancelled,
    so a request given up on is not generated and does not hold the server's shutdown."""

    async def disconnected() -> None:
        while (await http.receive())["type"] != "http.disconnect":
            pass

    task, watch = asyncio.ensure_future(work), asyncio.ensure_future(disconnected())
    await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
    watch.cancel()
    if task.done():
        return task.result()
    task.cancel()
    return None


async def sse_answer(text: str, model: str, finish_reason: str = "stop", extra: dict[str, Any] | None = None
                     ) -> AsyncIterator[str]:
    """A whole answer as server-sent events: the role, the text, the finish (carrying ``extra`` fields, e.g. a
    guard's decisions), ``[DONE]``. For servers whose answer comes whole (generation is batched; a guard holds the
    answer back for its output defenses)."""
    head = ChatChunk(model=model, choices=[])
    for choice in (ChunkChoice(delta=Delta(role="assistant")), ChunkChoice(delta=Delta(content=text)),
                   ChunkChoice(delta=Delta(), finish_reason=finish_reason)):
        chunk = head.model_copy(update={"choices": [choice]}).model_dump(exclude_none=True)
        if extra and choice.finish_reason is not None:
            chunk.update(extra)
        yield f"data: {json.dumps(chunk)}\n\n"
    yield "data: [DONE]\n\n"


class _Dropped(HTTPResponse):
    """An ASGI response that starts a body it never finishes: the server closes the connection mid-response, as a
    crashed upstream or a proxy timeout does."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"4096")]})
        await send({"type": "http.response.body", "body": b'{"id": "chatcmpl-', "more_body": True})
