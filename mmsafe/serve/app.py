"""An OpenAI-compatible endpoint in front of any mmsafe target: ``/v1/chat/completions`` (plain and streamed),
``/v1/models``, ``/healthz``.

Concurrent requests are batched into the target: a request waits up to ``batch_wait_s`` for others, and while the
target works on one batch the next one fills, up to ``target.batch_size``. One batch runs at a time, in a worker
thread (targets are not thread-safe), so the event loop keeps accepting requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import uuid
from collections.abc import AsyncIterator, Coroutine
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.responses import Response as HTTPResponse

from mmsafe.batching import each_or_alone
from mmsafe.serve.faults import Faults
from mmsafe.serve.openai_types import (AssistantMessage, ChatChunk, ChatRequest, ChatResponse, Choice, ChunkChoice,
                                       Delta, ModelCard, ModelList, Usage, WireError, error_body, request_sample)
from mmsafe.targets import Target
from mmsafe.types import Response, Sample

T = TypeVar("T")


@dataclass
class Stats:
    """What the server saw, for ``/healthz``, tests and benchmarks: requests received, how many were being handled
    at once (most), batches run and the largest."""

    requests: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    batches: int = 0
    max_batch: int = 0


class Batcher:
    """Collects concurrent samples into batches for ``target.generate``."""

    def __init__(self, target: Target, wait_s: float, stats: Stats) -> None:
        self.target, self.wait_s, self.stats = target, wait_s, stats
        self.queue: asyncio.Queue[tuple[Sample, asyncio.Future[Response | Exception]]] = asyncio.Queue()

    async def submit(self, sample: Sample) -> Response | Exception:
        future: asyncio.Future[Response | Exception] = asyncio.get_running_loop().create_future()
        await self.queue.put((sample, future))
        return await future

    async def run(self) -> None:
        size = max(1, self.target.batch_size)
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self.queue.get()]
            deadline = loop.time() + self.wait_s
            while len(batch) < size:
                try:
                    batch.append(self.queue.get_nowait() if loop.time() >= deadline else
                                 await asyncio.wait_for(self.queue.get(), deadline - loop.time()))
                except (asyncio.QueueEmpty, TimeoutError):
                    break
            batch = [(s, f) for s, f in batch if not f.done()]  # their clients left while they queued
            if not batch:
                continue
            self.stats.batches += 1
            self.stats.max_batch = max(self.stats.max_batch, len(batch))
            outs = await asyncio.to_thread(each_or_alone, [s for s, _ in batch], self.target.generate)
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
        batcher = Batcher(target, batch_wait_s, stats)
        app.state.batcher = batcher
        task = asyncio.create_task(batcher.run())
        yield
        task.cancel()

    app = FastAPI(title=f"mmsafe serve-model: {model_name}", lifespan=lifespan)
    app.state.stats, app.state.faults = stats, faults

    def error(status: int, message: str, kind: str, headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse(error_body(message, kind, status), status_code=status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        where = "; ".join(f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors())
        return error(400, f"invalid request: {where}", "invalid_request_error")

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
            if api_key is not None and not secrets.compare_digest(
                    http.headers.get("authorization", "").encode(), f"Bearer {api_key}".encode()):
                return error(401, "invalid or missing API key (send it as a bearer token)", "authentication_error")
            fault = faults.draw(request.model_dump_json().encode())
            if fault == "500":
                return error(500, "injected fault: internal server error", "server_error")
            if fault == "429":
                return error(429, "injected fault: rate limited", "rate_limit_error",
                             {"Retry-After": f"{faults.retry_after_s:g}"})
            if fault == "drop":
                return _Dropped()
            try:
                sample = request_sample(request, f"req-{uuid.uuid4().hex[:12]}")
            except WireError as e:
                return error(400, str(e), "invalid_request_error")

            async def answer() -> Response | Exception:
                if fault == "stall":
                    await asyncio.sleep(faults.stall_s)
                return await app.state.batcher.submit(sample)

            out = await _unless_client_leaves(http, answer())
            if out is None:
                return HTTPResponse(status_code=499)  # nobody to answer; nginx's "client closed request"
            if isinstance(out, Exception):
                out = Response(error=f"{type(out).__name__}: {out}")
            if out.error:  # this request, not the server: retrying it would fail the same way
                return error(422, f"the target could not answer: {out.error}", "target_error")
            if request.stream:
                return StreamingResponse(_events(out.text, model_name), media_type="text/event-stream")
            usage = None
            if out.prompt_tokens is not None and out.completion_tokens is not None:
                usage = Usage(prompt_tokens=out.prompt_tokens, completion_tokens=out.completion_tokens,
                              total_tokens=out.prompt_tokens + out.completion_tokens)
            return ChatResponse(model=model_name, choices=[Choice(message=AssistantMessage(content=out.text))],
                                usage=usage)
        finally:
            stats.in_flight -= 1

    return app


async def _unless_client_leaves(http: Request, work: Coroutine[Any, Any, T]) -> T | None:
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


async def _events(text: str, model: str) -> AsyncIterator[str]:
    """The answer as server-sent events: the role, the text, the finish, ``[DONE]`` (generation is batched, so the
    text comes whole)."""
    head = ChatChunk(model=model, choices=[])
    for choice in (ChunkChoice(delta=Delta(role="assistant")), ChunkChoice(delta=Delta(content=text)),
                   ChunkChoice(delta=Delta(), finish_reason="stop")):
        yield f"data: {head.model_copy(update={'choices': [choice]}).model_dump_json(exclude_none=True)}\n\n"
    yield "data: [DONE]\n\n"


class _Dropped(HTTPResponse):
    """An ASGI response that starts a body it never finishes: the server closes the connection mid-response, as a
    crashed upstream or a proxy timeout does."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"4096")]})
        await send({"type": "http.response.body", "body": b'{"id": "chatcmpl-', "more_body": True})
