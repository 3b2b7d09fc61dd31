"""``mmsafe serve-model``: the real server on 127.0.0.1 in front of the real embedded reader (and a cheap echo
target where only the server's own behaviour is tested), called with the official ``openai`` client."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest
from PIL import Image

from http_helpers import Echo, png_url, served, user_messages
from mmsafe.serve.faults import Faults
from mmsafe.serve.openai_types import decode_data_url
from mmsafe.serve.server import free_port, wait_until_up
from mmsafe.types import Sample


def _text_image(text: str) -> Image.Image:
    from PIL import ImageDraw

    from mmsafe.fonts import load_font

    im = Image.new("RGB", (420, 140), "white")
    ImageDraw.Draw(im).text((30, 40), text, fill="black", font=load_font(40))
    return im


def test_models_health_and_answers_from_the_embedded_reader(reader):
    with served(reader, name="reader") as (url, _):
        client = openai.OpenAI(base_url=url, api_key="none", max_retries=0, timeout=300)
        assert [m.id for m in client.models.list()] == ["reader"]
        health = httpx.get(url.removesuffix("/v1") + "/healthz").json()
        assert health["status"] == "ok" and health["model"] == "reader"

        ask = lambda *image_urls, **kw: client.chat.completions.create(  # noqa: E731
            model="reader", messages=user_messages("What does it say?", *image_urls), **kw)
        plain = ask()
        assert plain.choices[0].message.content.strip() and plain.model == "reader"
        image = png_url(_text_image("GREEN APPLE"))
        seen = ask(image)
        # Streaming gives the same (greedy) answer as a plain request.
        streamed = "".join(c.choices[0].delta.content or "" for c in ask(stream=True) if c.choices)
    assert streamed == plain.choices[0].message.content
    # The image reached the model as it reaches the reader in process: its text read, the same prompt.
    direct = reader.generate([Sample(id="1", prompt="What does it say?", images=(decode_data_url(image),))])[0]
    assert direct.details["ocr"][0].split() == ["GREEN", "APPLE"]
    assert seen.usage.prompt_tokens == direct.prompt_tokens > plain.usage.prompt_tokens
    assert seen.choices[0].message.content.strip()


def test_concurrent_requests_are_batched_into_the_target():
    target = Echo(batch_size=8, delay_s=0.2)
    with served(target) as (url, app):
        client = openai.OpenAI(base_url=url, api_key="none", max_retries=0)
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda i: client.chat.completions.create(
                model="echo", messages=user_messages(f"question {i}")).choices[0].message.content, range(8)))
    assert answers == [f"echo: question {i} | images: none | system: None" for i in range(8)]
    stats = app.state.stats
    assert stats.requests == 8 and stats.max_batch > 1 and stats.batches < 8


def test_bad_requests_get_a_400_that_names_the_problem():
    bomb = Image.new("L", (9000, 9000))  # 81 MP of zeros: a small file that would decode to gigabytes
    with served(Echo()) as (url, _):
        post = lambda body: httpx.post(f"{url}/chat/completions", json=body, timeout=30)  # noqa: E731
        cases = {
            "only base64 data: URLs": user_messages("hi", "https://example.com/cat.png"),
            "invalid base64": user_messages("hi", "data:image/png;base64,@@@"),
            "not a readable image": user_messages("hi", "data:image/png;base64," + base64.b64encode(b"not a png").decode()),
            "over the 40 MP limit": user_messages("hi", png_url(bomb)),
            "got these turns: user, assistant, user": [*user_messages("a"), {"role": "assistant", "content": "b"},
                                                       *user_messages("c")],
        }
        for expected, messages in cases.items():
            r = post({"model": "echo", "messages": messages})
            assert r.status_code == 400, (expected, r.text)
            assert expected in r.json()["error"]["message"]
        r = post({"model": "echo"})
        assert r.status_code == 400 and "messages" in r.json()["error"]["message"]


def test_a_key_is_required_when_configured():
    with served(Echo(), api_key="s3cret-key") as (url, _):
        ok = openai.OpenAI(base_url=url, api_key="s3cret-key", max_retries=0)
        assert ok.chat.completions.create(model="echo", messages=user_messages("hi")).choices[0].message.content
        with pytest.raises(openai.AuthenticationError) as e:
            openai.OpenAI(base_url=url, api_key="wrong", max_retries=0).chat.completions.create(
                model="echo", messages=user_messages("hi"))
        assert "s3cret" not in str(e.value)


def _outcome(url: str, prompt: str) -> str:
    """What one plain request met: ``ok``, an HTTP status, ``stall`` (timed out) or ``drop``."""
    try:
        httpx.post(f"{url}/chat/completions", json={"messages": user_messages(prompt)}, timeout=1.5).raise_for_status()
        return "ok"
    except httpx.HTTPStatusError as e:
        return str(e.response.status_code)
    except httpx.TimeoutException:
        return "stall"
    except httpx.TransportError:
        return "drop"


def test_faults_are_deterministic_and_a_retry_can_succeed():
    def run() -> tuple[list[str], dict[str, int], list[str]]:
        faults = Faults(rate=0.5, seed=3, retry_after_s=0.1, stall_s=2.0)
        with served(Echo(), faults=faults) as (url, _):
            first = [_outcome(url, f"q{i}") for i in range(16)]
            injected = dict(faults.injected)
            again = [_outcome(url, f"q{i}") for i, o in enumerate(first) if o != "ok"]
        return first, injected, again

    first, injected, again = run()
    assert run() == (first, injected, again)  # same seed, same requests: same faults, retries included
    assert sorted(o for o in first if o != "ok") == sorted(k for k, n in injected.items() for _ in range(n))
    assert set(injected) == {"500", "429", "stall", "drop"}  # every kind drawn (16 requests, seed 3)
    assert "ok" in again  # a second attempt draws again


def test_the_cli_serves_the_reader(tmp_path):
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "mmsafe.cli.main", "serve-model", "--port", str(port),
                                 "--max-new-tokens", "8"], stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "COLUMNS": "200"})
    try:
        wait_until_up(f"http://127.0.0.1:{port}/healthz", proc, timeout_s=300)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0, timeout=300)
        answer = client.chat.completions.create(model="reader", messages=user_messages("Say hello."))
        assert answer.choices[0].message.content.strip() and answer.usage.completion_tokens <= 8
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    assert f"serving reader at http://127.0.0.1:{port}/v1" in log.read_text()
