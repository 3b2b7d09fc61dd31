"""A model behind an OpenAI-compatible chat-completions API: vLLM (``vllm serve``), Ollama, llama.cpp's server,
hosted APIs, or ``mmsafe serve-model``.

Requests go out concurrently (at most ``max_concurrency`` at once) through the official ``openai`` SDK, whose
retries are exponential backoff with jitter on 408/409/429/5xx, timeouts and dropped connections, and honour
``Retry-After`` (up to two minutes). Every row gets an answer or an error that says what happened (HTTP status and
the server's message, a timeout, a connection failure, an empty answer): never an empty string passed off as an
answer. The API key is read from the environment variable named by ``api_key_env`` and is never stored or shown.
A sample with ``metadata["tools"]`` (the tool-misuse scenario) sends them as the request's ``tools``; the answer's
``tool_calls`` come back in ``Response.details`` for the ``tool-call`` judge.
"""

from __future__ import annotations

import asyncio
import os
import re
import threading
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

from mmsafe.images import ImageError
from mmsafe.targets.base import Target, targets
from mmsafe.types import Response, Sample

T = TypeVar("T")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
RETRIED = (408, 409, 429)  # and every 5xx: what the SDK retries


@targets.register("openai")
class OpenAIChat(Target):
    """Any OpenAI-compatible chat API (vLLM, Ollama, llama.cpp, hosted, mmsafe serve-model): images as base64 data
    URLs, concurrent requests with retries, tokens and cost per row."""

    needs_args = "the server's base URL, e.g. openai:http://127.0.0.1:8000/v1"

    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        api_key_env: str | None = None,
        max_concurrency: int = 8,
        timeout_s: float = 120.0,
        max_retries: int = 3,
        max_image_side: int | None = None,
        max_new_tokens: int | None = 256,
        temperature: float | None = 0.0,
        extra: dict[str, Any] | None = None,
        price_in: float | None = None,
        price_out: float | None = None,
        batch_size: int | None = None,
    ) -> None:
        """``base_url``: up to ``/v1``. ``model``: as the server names it (None: the server's only model).
        ``api_key_env``: the NAME of the environment variable holding the key (None: no key, for local servers).
        ``max_image_side``: shrink larger images to fit before sending. ``max_new_tokens`` and ``temperature`` are
        sent as ``max_tokens`` and ``temperature`` (None: not sent, the server's default); ``extra``: more request
        fields (``{"seed": 0}``, ``{"max_completion_tokens": 512}``), sent as they are. ``price_in`` /
        ``price_out``: price per million prompt / completion tokens, to record each row's cost. ``batch_size``:
        rows per ``generate`` call (default twice ``max_concurrency``, so the requests overlap)."""
        if max_concurrency < 1 or timeout_s <= 0 or max_retries < 0:
            raise ValueError("max_concurrency must be >= 1, timeout_s > 0 and max_retries >= 0")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key_env = api_key_env
        self.max_concurrency = max_concurrency
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.max_image_side = max_image_side
        self.params = {k: v for k, v in (("max_tokens", max_new_tokens), ("temperature", temperature)) if v is not None}
        self.extra = dict(extra or {})
        self.price_in, self.price_out = price_in, price_out
        self.batch_size = batch_size or 2 * max_concurrency
        self._key = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._client: Any = None
        self._slots: asyncio.Semaphore | None = None

    def _api_key(self) -> str:
        if self.api_key_env is None:
            return ""
        if not ENV_NAME.fullmatch(self.api_key_env):
            # Checked here, not when built: the registry's errors quote a component's arguments, and this is where
            # people paste the key itself.
            raise ValueError(f"target openai:{self.base_url}: api_key_env takes the NAME of an environment variable "
                             "holding the key (e.g. OPENAI_API_KEY), not the key itself")
        key = os.environ.get(self.api_key_env, "")
        if not key:
            raise ValueError(f"target openai:{self.base_url}: the environment variable {self.api_key_env} "
                             f"(api_key_env) is {'empty' if self.api_key_env in os.environ else 'not set'}; "
                             f"export {self.api_key_env}=<your key> and run again")
        return key

    def load(self) -> None:
        """Start the client on its own event loop (a thread), so ``generate`` can be called from synchronous code;
        with no ``model`` given, ask the server for its only one."""
        if self._client is not None:
            return
        self._key = self._api_key()
        from openai import AsyncOpenAI

        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="mmsafe-openai", daemon=True)
        self._thread.start()

        async def start() -> Any:
            # Local servers want no key but the SDK wants one, and given None it would read OPENAI_API_KEY unasked.
            return AsyncOpenAI(base_url=self.base_url, api_key=self._key or "none", timeout=self.timeout_s,
                               max_retries=self.max_retries)

        self._client = self._run(start())
        self._slots = asyncio.Semaphore(self.max_concurrency)
        if self.model is None:
            try:
                self.model = self._run(self._only_model())
            except BaseException:
                self.close()
                raise

    async def _only_model(self) -> str:
        try:
            names = [m.id async for m in self._client.models.list()]
        except Exception as e:  # noqa: BLE001 - any failure here means: name the model yourself
            raise ValueError(f"target openai:{self.base_url}: no model given and {self.base_url}/models failed "
                             f"({self._redact(self._describe(e))}); set the target's model argument") from None
        if len(names) != 1:
            raise ValueError(f"target openai:{self.base_url}: no model given and the server lists "
                             f"{len(names)} ({', '.join(names) or 'none'}); set the target's model argument")
        return names[0]

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)  # type: ignore[arg-type]
        try:
            return future.result()
        except BaseException:  # Ctrl-C included: stop the requests in flight, not only our wait for them
            future.cancel()
            raise

    def generate(self, samples: list[Sample]) -> list[Response]:
        self.load()
        from mmsafe.serve.openai_types import chat_messages

        requests: list[list[dict[str, Any]] | Response] = []
        for s in samples:
            try:
                requests.append(chat_messages(s, self.max_image_side))
            except ImageError as e:
                requests.append(Response(error=str(e)))

        async def row(request: list[dict[str, Any]] | Response, sample: Sample) -> Response:
            return request if isinstance(request, Response) else await self._request(request, sample)

        async def rows() -> list[Response]:
            return list(await asyncio.gather(*(row(r, s) for r, s in zip(requests, samples))))

        return self._run(rows())

    async def _request(self, messages: list[dict[str, Any]], sample: Sample) -> Response:
        async with self._slots:  # type: ignore[union-attr]
            t0 = time.perf_counter()
            try:
                tools = {"tools": sample.metadata["tools"]} if sample.metadata.get("tools") else {}
                raw = await self._client.chat.completions.with_raw_response.create(
                    model=self.model, messages=messages, **tools, **self.params, extra_body=self.extra or None)
                completion = raw.parse()
            except Exception as e:  # noqa: BLE001 - every failure becomes this row's error, the batch goes on
                return Response(error=self._redact(self._describe(e, images=len(sample.images))),
                                latency_s=time.perf_counter() - t0)
        return self._response(completion, raw.retries_taken, time.perf_counter() - t0)

    def _response(self, completion: Any, retries: int, latency_s: float) -> Response:
        choices = getattr(completion, "choices", None)
        if not choices:
            return Response(error=f"{self.base_url} answered with no choices", latency_s=latency_s)
        choice = choices[0]
        text, details = choice.message.content, {"model": completion.model, "finish_reason": choice.finish_reason,
                                                 "retries": retries}
        if not (text or "").strip() and getattr(choice.message, "refusal", None):
            text, details["refusal_field"] = choice.message.refusal, True  # the API's structured refusal
        calls = [{"id": c.id, "type": "function", "function": {"name": c.function.name,
                                                               "arguments": c.function.arguments}}
                 for c in getattr(choice.message, "tool_calls", None) or [] if getattr(c, "function", None)]
        if calls:  # what the tool-call judge reads; a calls-only answer is written out so text judges see it too
            details["tool_calls"] = calls
            if not (text or "").strip():
                text = "\n".join(f"CALL {c['function']['name']}({c['function']['arguments']})" for c in calls)
        usage = completion.usage
        n_in = getattr(usage, "prompt_tokens", None)
        n_out = getattr(usage, "completion_tokens", None)
        if self.price_in is not None or self.price_out is not None:
            details["cost_usd"] = (None if n_in is None or n_out is None
                                   else (n_in * (self.price_in or 0) + n_out * (self.price_out or 0)) / 1e6)
        if not (text or "").strip():
            what = "no content" if text is None else "empty content"
            return Response(error=f"{self.base_url} answered with {what} (finish_reason {choice.finish_reason!r}): "
                            "no answer to judge", latency_s=latency_s, prompt_tokens=n_in, completion_tokens=n_out,
                            details=details)
        return Response(text=text, latency_s=latency_s, prompt_tokens=n_in, completion_tokens=n_out, details=details)

    def _describe(self, e: Exception, images: int = 0) -> str:
        import openai

        if isinstance(e, openai.APIStatusError):
            body = e.body.get("error", e.body) if isinstance(e.body, dict) else e.body
            message = (body.get("message") or body.get("detail") if isinstance(body, dict) else None) or e.message
            msg = f"HTTP {e.status_code} from {self.base_url}: {str(message)[:500]}"  # not a whole HTML error page
            if e.status_code in RETRIED or e.status_code >= 500:
                msg += self._retried
            if images and e.status_code == 500:
                msg += f"; the request had {images} image(s), which a text-only server fails on this way"
            return msg
        if isinstance(e, openai.APITimeoutError):
            return f"no answer from {self.base_url} within {self.timeout_s:g} s{self._retried}"
        if isinstance(e, openai.APIConnectionError):
            return f"connection to {self.base_url} failed: {e.__cause__ or e}{self._retried}"
        return f"request to {self.base_url} failed: {type(e).__name__}: {e}"

    @property
    def _retried(self) -> str:
        return f" (after up to {self.max_retries} retries)" if self.max_retries else ""

    def _redact(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key else text

    def close(self) -> None:
        if self._loop is None:
            return
        if self._client is not None:
            self._run(self._client.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)  # type: ignore[union-attr]
        self._loop.close()
        self._loop = self._thread = self._client = self._slots = None
        self._key = ""
