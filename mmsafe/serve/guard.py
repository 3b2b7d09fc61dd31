"""``mmsafe serve``: a guard proxy that puts mmsafe's defenses, the very objects a scan measures, in front of any
OpenAI-compatible chat server.

A request's text and images become a ``Sample`` (images decoded within the limits, remote ones fetched only from
allowed hosts, ``image_fetch``); the input defenses screen it (``DefendedTarget.check_inputs``: a purifier rewrites
the image, ``ocr-filter`` may block); what is left goes upstream (httpx); the answer goes through the output defenses
(``check_outputs``: ``protector`` may rewrite or block it). A block is an ordinary chat completion: the refusal,
``finish_reason: "content_filter"`` and an ``mmsafe`` field saying which defense decided what and why.

Defenses are synchronous and CPU-bound: they run in one worker thread, batched over the requests that arrive
together (``Batcher``), so the event loop keeps accepting, forwarding and streaming meanwhile, and a defense is never
called from two threads at once. Streaming: without output defenses the upstream's events are relayed as they come;
with any (they judge the whole answer) the answer is held back, reviewed, then sent as events.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import ValidationError
from starlette.responses import Response as HTTPResponse

from mmsafe.defenses import Defense, defenses
from mmsafe.defenses.base import Chain
from mmsafe.defenses.defended import DefendedTarget, Screened
from mmsafe.serve.app import Batcher, error_response, has_key, sse_answer, unless_client_leaves
from mmsafe.serve.audit import AuditLog
from mmsafe.serve.guard_config import GuardConfig
from mmsafe.serve.guard_metrics import GuardMetrics
from mmsafe.serve.image_fetch import ImageFetcher
from mmsafe.serve.openai_types import (AssistantMessage, ChatRequest, ChatResponse, Choice, ImagePart, ModelCard,
                                       ModelList, WireError, checked_image, conversation_messages,
                                       conversation_sample, decode_data_url, error_body)
from mmsafe.targets.openai_http import OpenAIChat
from mmsafe.types import ImageRef, Response, Sample

log = logging.getLogger("mmsafe.guard")
DEFENSE_BATCH = 16  # requests screened in one call of a defense stage, at most
PUBLIC_FIELDS = ("defense", "stage", "action", "reason", "seconds")  # a decision's details stay in the audit log


class GuardError(Exception):
    """A request the guard answers with an error: HTTP ``status``, OpenAI-style ``kind``, the audit ``outcome``."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", outcome: str = "invalid",
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.outcome, self.headers = status, message, kind, outcome, headers


def _env_key(name: str | None, option: str) -> str | None:
    if name is None:
        return None
    key = os.environ.get(name, "")
    if not key:
        raise ValueError(f"{option}: the environment variable {name} is "
                         f"{'empty' if name in os.environ else 'not set'}")
    return key


def build_defense(config: GuardConfig) -> Defense | None:
    """The configured defenses as one (a chain when several), None for none: built, not loaded."""
    parts = [defenses.build(spec) for spec in config.defenses]
    if len(parts) > 1:
        return Chain(parts)
    return parts[0] if parts else None


class Guard:
    """The proxy's state and request handling; ``create_guard_app`` serves it. Keys are read from the environment
    variables the config names, here, so a missing one fails before serving."""

    def __init__(self, config: GuardConfig) -> None:
        self.config = config
        self.api_key = _env_key(config.api_key_env, "api_key_env")
        self.upstream_key = _env_key(config.upstream_key_env, "upstream_key_env")
        defense = build_defense(config)
        # Model-in-the-loop defenses (self-moderation, ecso, jailguard) ask the upstream model itself.
        upstream = OpenAIChat(config.upstream, model=config.model, api_key_env=config.upstream_key_env,
                              timeout_s=config.timeout_s)
        self.defended = DefendedTarget(upstream, defense, owns_target=True) if defense is not None else None
        parts = self.defended.parts if self.defended is not None else []
        self.defense_names = [p.name for p in parts]
        self.holds_answers = any("output" in p.stages for p in parts)
        self.max_image_bytes = int(config.max_image_mb * 2**20)
        self.metrics = GuardMetrics()
        self.in_flight = 0
        self.pool: ThreadPoolExecutor | None = None
        self.client: httpx.AsyncClient | None = None
        self.fetcher: ImageFetcher | None = None
        self.audit: AuditLog | None = None
        self.tasks: list[asyncio.Task[None]] = []

    # --- lifecycle ----------------------------------------------------------------------------------------------
    async def start(self) -> None:
        c = self.config
        if self.defended is not None:
            self.pool = ThreadPoolExecutor(1, thread_name_prefix="mmsafe-guard-defense")
            loop = asyncio.get_running_loop()
            for part in self.defended.parts:  # models load before the first request, not during it
                await loop.run_in_executor(self.pool, part.load)
            d = self.defended
            self.inputs: Batcher[Sample, Screened] = Batcher(d.check_inputs, DEFENSE_BATCH, 0.0, executor=self.pool)
            self.outputs: Batcher[tuple[Screened, Response], Response] = Batcher(
                lambda pairs: d.check_outputs([s for s, _ in pairs], [r for _, r in pairs]), DEFENSE_BATCH, 0.0,
                executor=self.pool)
            self.tasks = [asyncio.create_task(b.run()) for b in (self.inputs, self.outputs)]
        headers = {"Authorization": f"Bearer {self.upstream_key}"} if self.upstream_key else None
        self.client = httpx.AsyncClient(
            base_url=c.upstream, headers=headers, timeout=httpx.Timeout(c.timeout_s, connect=c.connect_timeout_s),
            limits=httpx.Limits(max_connections=c.max_concurrency, max_keepalive_connections=c.max_concurrency))
        if c.allow_image_hosts:
            self.fetcher = ImageFetcher(c.allow_image_hosts, c.allow_image_networks, self.max_image_bytes,
                                        c.image_timeout_s)
        if c.audit is not None:
            self.audit = AuditLog(c.audit, c.audit_images)

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        for closing in (self.client, self.fetcher):
            if closing is not None:
                await closing.aclose()
        if self.audit is not None:
            self.audit.close()
        if self.pool is not None:
            self.pool.shutdown(wait=True)
        if self.defended is not None:
            self.defended.close()

    # --- requests -----------------------------------------------------------------------------------------------
    async def chat(self, http: Request) -> HTTPResponse:
        """One chat completion request, start to end: never raises; every request leaves one audit row."""
        t0 = time.perf_counter()
        entry: dict[str, Any] = {"id": f"guard-{uuid.uuid4().hex[:16]}", "time": time.time(),
                                 "client": http.client.host if http.client else None, "blocked": False,
                                 "rewritten": False, "decisions": []}
        held = False
        try:
            if not has_key(http, self.api_key):
                raise GuardError(401, "invalid or missing API key (send it as a bearer token)",
                                 "authentication_error", "unauthorized")
            if self.in_flight >= self.config.max_concurrency:
                raise GuardError(429, f"the guard is at its limit of {self.config.max_concurrency} requests at once; "
                                 "retry shortly", "rate_limit_error", "overloaded", {"Retry-After": "1"})
            held = True
            self.in_flight += 1
            self.metrics.in_flight.inc()
            response = await self._chat(http, entry)
        except GuardError as e:
            entry.update(outcome=e.outcome, error=e.message)
            response = error_response(e.status, e.message, e.kind, e.headers)
        except Exception as e:  # noqa: BLE001 - a bug answers 500 and is logged; the proxy goes on
            log.exception("guard: request %s failed", entry["id"])
            entry.update(outcome="error", error=f"{type(e).__name__}: {e}")
            response = error_response(500, f"internal error in the guard ({type(e).__name__})", "server_error")
        entry["status"] = response.status_code
        entry["latency_s"] = time.perf_counter() - t0
        if isinstance(response, StreamingResponse):  # finished when the last event has gone
            response.body_iterator = self._finishing(response.body_iterator, entry, held)
        else:
            self._finish(entry, held)
        return response

    async def _finishing(self, events: AsyncIterator[Any], entry: dict[str, Any], held: bool
                         ) -> AsyncIterator[Any]:
        try:
            async for event in events:
                yield event
        finally:
            self._finish(entry, held)

    def _finish(self, entry: dict[str, Any], held: bool) -> None:
        if held:
            self.in_flight -= 1
            self.metrics.in_flight.dec()
        blobs = entry.pop("blobs", None)
        entry.setdefault("outcome", "passed")
        self.metrics.observe(entry)
        if self.audit is not None:
            self.audit.record(entry, blobs)

    async def _chat(self, http: Request, entry: dict[str, Any]) -> HTTPResponse:
        request = self._parse(await self._body(http))
        model = self.config.model or request.model
        entry.update(model=model, stream=request.stream)
        sample = await self._sample(request, entry)
        screened = await self._screen(sample, entry)
        if screened.blocked is not None:
            return self._answer(screened.blocked.text, model, "content_filter", self._verdict(entry), request.stream)
        try:
            messages = await self._off_loop(bool(screened.sent.images), conversation_messages, request, screened.sent)
        except WireError as e:
            raise GuardError(500, f"{e}; the request was not forwarded", "defense_error", "defense_error") from None
        forward = {**(request.model_extra or {}), "model": model, "stream": request.stream, "messages": messages}
        entry["sent_images"] = [im.sha256 for im in screened.sent.images]
        if request.stream and not self.holds_answers:
            return await self._relay(forward, entry)
        forward["stream"] = False
        forward.pop("stream_options", None)  # only valid on streamed requests
        data = await self._ask(http, forward, entry)
        message = data["choices"][0]["message"]
        finish = data["choices"][0].get("finish_reason") or "stop"
        if self.holds_answers:
            usage = data.get("usage") or {}
            answer = Response(text=message.get("content") or "", prompt_tokens=usage.get("prompt_tokens"),
                              completion_tokens=usage.get("completion_tokens"))
            final = await self._review(screened, answer)
            if final.text != answer.text:
                message["content"] = final.text
            if any(d["stage"] == "output" and d["action"] == "block" for d in screened.records):
                finish = "content_filter"
            data["choices"][0]["finish_reason"] = finish
        verdict = self._verdict(entry)
        if request.stream:
            return StreamingResponse(sse_answer(message.get("content") or "", data.get("model", model), finish,
                                                {"mmsafe": verdict}), media_type="text/event-stream")
        return JSONResponse({**data, "mmsafe": verdict})

    async def _body(self, http: Request) -> bytes:
        limit = int(self.config.max_body_mb * 2**20)
        too_big = GuardError(413, f"the request body is over the {self.config.max_body_mb:g} MiB limit")
        declared = http.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise too_big
        body = bytearray()
        async for chunk in http.stream():
            body += chunk
            if len(body) > limit:
                raise too_big
        return bytes(body)

    @staticmethod
    def _parse(body: bytes) -> ChatRequest:
        try:
            payload = json.loads(body)
        except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
            raise GuardError(400, f"the request body is not valid JSON: {e}") from None
        try:
            return ChatRequest.model_validate(payload)
        except ValidationError as e:
            where = "; ".join(f"{'.'.join(str(x) for x in err['loc']) or 'body'}: {err['msg']}" for err in e.errors())
            raise GuardError(400, f"invalid request: {where}") from None

    async def _sample(self, request: ChatRequest, entry: dict[str, Any]) -> Sample:
        """The request as a ``Sample``, its images checked against the limits (remote ones fetched first)."""
        urls = [(f"messages[{m}].content[{p}].image_url", part.image_url.url)
                for m, msg in enumerate(request.messages) if isinstance(msg.content, list)
                for p, part in enumerate(msg.content) if isinstance(part, ImagePart)]
        if len(urls) > self.config.max_images:
            raise GuardError(400, f"the request has {len(urls)} images, over the limit of {self.config.max_images}")
        fetched: dict[str, bytes] = {}
        for where, url in urls:
            if url.startswith(("http://", "https://")) and url not in fetched:
                if self.fetcher is None:
                    raise GuardError(400, f"{where}: remote image URLs are not fetched; send the image as a data: URL "
                                     "(or allow its host with --allow-image-host)")
                try:
                    fetched[url] = await self.fetcher.fetch(url, where)
                except WireError as e:
                    raise GuardError(400, str(e)) from None

        def decode(url: str, where: str) -> ImageRef:
            if url in fetched:
                return checked_image(ImageRef(data=fetched[url]), where, self.max_image_bytes, self.config.max_pixels)
            return decode_data_url(url, where, self.max_image_bytes, self.config.max_pixels)

        try:
            sample = await self._off_loop(bool(urls), conversation_sample, request, entry["id"], decode)
        except WireError as e:
            raise GuardError(400, str(e)) from None
        entry["prompt_sha256"] = hashlib.sha256(sample.prompt.encode()).hexdigest()
        entry["images"] = [im.sha256 for im in sample.images]
        if self.config.audit_images:
            entry["blobs"] = {im.sha256: im.read_bytes() for im in sample.images}
        return sample

    @staticmethod
    async def _off_loop(heavy: bool, fn: Any, *args: Any) -> Any:
        """``fn(*args)`` in a worker thread when ``heavy`` (image decoding and encoding), else right here: a thread
        hop costs more than a text-only request's whole conversion."""
        return await asyncio.to_thread(fn, *args) if heavy else fn(*args)

    async def _screen(self, sample: Sample, entry: dict[str, Any]) -> Screened:
        if self.defended is None:
            return Screened(sample)
        screened = await self.inputs.submit(sample)
        if isinstance(screened, Exception):
            raise GuardError(500, f"the input defenses failed ({type(screened).__name__}: {screened}); the request "
                             "was not forwarded", "defense_error", "defense_error")
        entry["decisions"] = screened.records
        if screened.blocked is not None and screened.blocked.error:  # fail closed: an unscreened request stays here
            raise GuardError(500, f"{screened.blocked.error}; the request was not forwarded", "defense_error",
                             "defense_error")
        if self.config.audit_images:
            entry["blobs"].update({im.sha256: im.read_bytes() for im in screened.sent.images})
        return screened

    async def _review(self, screened: Screened, answer: Response) -> Response:
        final = await self.outputs.submit((screened, answer))
        if isinstance(final, Exception) or final.error:
            why = f"{type(final).__name__}: {final}" if isinstance(final, Exception) else final.error
            raise GuardError(500, f"the output defenses failed ({why}); the answer was withheld", "defense_error",
                             "defense_error")
        return final

    def _verdict(self, entry: dict[str, Any]) -> dict[str, Any]:
        """The ``mmsafe`` field of an answer, and the audit's summary of the decisions."""
        decisions = entry["decisions"]
        block = next((d for d in decisions if d["action"] == "block"), None)
        entry["blocked"] = block is not None
        entry["rewritten"] = any(d["action"] == "rewrite" for d in decisions)
        entry["outcome"] = "blocked" if entry["blocked"] else "rewritten" if entry["rewritten"] else "passed"
        return {"blocked": entry["blocked"], "rewritten": entry["rewritten"],
                "defense": block["defense"] if block else None, "action": "block" if block else None,
                "reason": block["reason"] if block else None,
                "decisions": [{k: d[k] for k in PUBLIC_FIELDS} for d in decisions]}

    @staticmethod
    def _answer(text: str, model: str, finish: str, verdict: dict[str, Any], stream: bool) -> HTTPResponse:
        model = model or "mmsafe-guard"
        if stream:
            return StreamingResponse(sse_answer(text, model, finish, {"mmsafe": verdict}),
                                     media_type="text/event-stream")
        completion = ChatResponse(model=model, choices=[Choice(message=AssistantMessage(content=text),
                                                               finish_reason=finish)])
        return JSONResponse({**completion.model_dump(exclude_none=True), "mmsafe": verdict})

    # --- upstream -----------------------------------------------------------------------------------------------
    async def _ask(self, http: Request, forward: dict[str, Any], entry: dict[str, Any]) -> dict[str, Any]:
        """The upstream's chat completion (its JSON), or the ``GuardError`` that says how it failed."""
        t0 = time.perf_counter()
        try:
            r = await unless_client_leaves(http, self._upstream(self.client.post("/chat/completions", json=forward)))
        finally:
            entry["upstream_s"] = time.perf_counter() - t0
        if r is None:  # the client left: nothing to answer (nginx's "client closed request")
            raise GuardError(499, "the client closed the connection", outcome="client_left")
        entry["upstream_status"] = r.status_code
        if r.status_code != 200:
            raise self._status_error(r)
        try:
            data = r.json()
            if not isinstance(data["choices"][0]["message"], dict):
                raise TypeError("message is not an object")
        except (ValueError, KeyError, IndexError, TypeError) as e:
            self.metrics.upstream_errors.labels("status").inc()
            raise GuardError(502, f"the upstream's answer is not a chat completion ({type(e).__name__}: {e})",
                             "upstream_error", "upstream_error") from None
        return data

    async def _upstream(self, call: Any) -> Any:
        """``call``'s result; a timeout becomes a 504, a failed or dropped connection a 502."""
        try:
            return await call
        except httpx.HTTPError as e:
            raise self._transport_error(e) from None

    def _transport_error(self, e: httpx.HTTPError) -> GuardError:
        if isinstance(e, httpx.TimeoutException):
            self.metrics.upstream_errors.labels("timeout").inc()
            return GuardError(504, f"the upstream did not answer in time ({type(e).__name__}, limit "
                              f"{self.config.timeout_s:g} s)", "upstream_timeout", "upstream_error")
        self.metrics.upstream_errors.labels("connection").inc()
        return GuardError(502, f"the upstream connection failed ({type(e).__name__}: {self._redact(str(e))})",
                          "upstream_error", "upstream_error")

    async def _relay(self, forward: dict[str, Any], entry: dict[str, Any]) -> StreamingResponse:
        """A streamed answer relayed as the upstream sends it (no output defense to wait for)."""
        t0 = time.perf_counter()
        request = self.client.build_request("POST", "/chat/completions", json=forward)
        r = await self._upstream(self.client.send(request, stream=True))
        entry["upstream_status"] = r.status_code
        entry["upstream_s"] = time.perf_counter() - t0  # to the first byte
        if r.status_code != 200:
            try:
                await self._upstream(r.aread())
            finally:
                await r.aclose()
            raise self._status_error(r)
        # Relayed line by line, so a connection dropped mid-line never sends half an event; the first line is
        # awaited before answering, so an upstream that fails before it still gets a plain 502 / 504.
        lines = r.aiter_lines()
        try:
            first = await self._upstream(anext(lines))
        except StopAsyncIteration:
            first = None
        except GuardError:
            await r.aclose()
            raise
        head = []
        if self.defended is not None:  # the decisions, first, in a chunk with no choices (as usage chunks are)
            chunk = {"id": entry["id"], "object": "chat.completion.chunk", "created": int(time.time()),
                     "model": forward["model"], "choices": [], "mmsafe": self._verdict(entry)}
            head.append(f"data: {json.dumps(chunk)}\n\n")
        if first is not None:
            head.append(f"{first}\n")

        async def events() -> AsyncIterator[str]:
            try:
                for line in head:
                    yield line
                async for line in lines:
                    yield f"{line}\n"
            except httpx.HTTPError as e:  # dropped or stalled mid-answer: the client's SDK raises on this event
                err = self._transport_error(e)
                entry.update(outcome="upstream_error", error=f"the stream broke: {err.message}")
                yield f"\ndata: {json.dumps(error_body(err.message, err.kind, err.status))}\n\n"
            finally:
                await r.aclose()

        return StreamingResponse(events(), media_type="text/event-stream")

    def _status_error(self, r: httpx.Response) -> GuardError:
        """A ``GuardError`` for the upstream's error status: its 5xx a 502, its 429 passed on with its Retry-After,
        a refusal of the guard's own key a 502 (the client's request was fine), other 4xx passed on."""
        self.metrics.upstream_errors.labels("status").inc()
        try:
            body = r.json()
            message = str(body.get("error", body).get("message", body) if isinstance(body, dict) else body)
        except ValueError:
            message = r.text
        message = self._redact(message[:300])
        code = r.status_code
        if code in (401, 403):
            return GuardError(502, f"the upstream refused the guard's credentials (HTTP {code}); check "
                              "--upstream-key-env", "upstream_error", "upstream_error")
        if code == 429:
            return GuardError(429, f"the upstream is rate limiting: {message}", "rate_limit_error", "upstream_error",
                              {"Retry-After": r.headers.get("retry-after", "1")})
        if code >= 500:
            return GuardError(502, f"the upstream failed (HTTP {code}): {message}", "upstream_error",
                              "upstream_error")
        return GuardError(code, f"the upstream refused the request (HTTP {code}): {message}", outcome="upstream_error")

    def _redact(self, text: str) -> str:
        return text.replace(self.upstream_key, "***") if self.upstream_key else text

    async def models(self, http: Request) -> HTTPResponse:
        if not has_key(http, self.api_key):
            return error_response(401, "invalid or missing API key (send it as a bearer token)",
                                  "authentication_error")
        if self.config.model:
            return JSONResponse(ModelList(data=[ModelCard(id=self.config.model)]).model_dump())
        try:
            r = await self._upstream(self.client.get("/models"))
            if r.status_code != 200:
                raise self._status_error(r)
            return JSONResponse(r.json())
        except GuardError as e:
            return error_response(e.status, e.message, e.kind, e.headers)
        except ValueError:
            return error_response(502, "the upstream's model list is not JSON", "upstream_error")


def create_guard_app(config: GuardConfig) -> FastAPI:
    """The FastAPI app of a guard: ``/v1/chat/completions``, ``/v1/models``, ``/healthz``, ``/metrics``. Builds the
    defenses and reads the keys now (a ``ValueError`` or ``ComponentError`` for a bad setting); loads the defenses'
    models at startup."""
    guard = Guard(config)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await guard.start()
        yield
        await guard.stop()

    app = FastAPI(title="mmsafe guard", lifespan=lifespan)
    app.state.guard = guard

    @app.post("/v1/chat/completions", response_model=None)
    async def chat(http: Request) -> HTTPResponse:
        return await guard.chat(http)

    @app.get("/v1/models", response_model=None)
    async def models(http: Request) -> HTTPResponse:
        return await guard.models(http)

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "upstream": config.upstream, "model": config.model, "defenses": guard.defense_names,
                "holds_streamed_answers": guard.holds_answers, "in_flight": guard.in_flight,
                "max_concurrency": config.max_concurrency}

    @app.get("/metrics")
    async def metrics() -> HTTPResponse:
        from prometheus_client import CONTENT_TYPE_LATEST

        return HTTPResponse(guard.metrics.text(), media_type=CONTENT_TYPE_LATEST)

    return app
