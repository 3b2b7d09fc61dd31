"""The ``openai`` target against real HTTP servers on 127.0.0.1: ``mmsafe serve-model``'s app in front of the real
embedded reader or a cheap echo target (with fault injection), and a small odd upstream for answers a good server
never gives. Nothing is mocked: requests go through the ``openai`` SDK over real sockets."""

from __future__ import annotations

import dataclasses
import json
import re
import sqlite3
import time

import pytest
import yaml
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from PIL import Image
from typer.testing import CliRunner

from conftest import READER_ARGS
from http_helpers import Echo, served
from mmsafe.cli.main import app as cli
from mmsafe.config import load_config
from mmsafe.metrics import summarize
from mmsafe.runner.scan import Scan
from mmsafe.runner.store import Store
from mmsafe.serve.faults import Faults
from mmsafe.serve.server import BackgroundServer
from mmsafe.datasets import datasets
from mmsafe.judges import judges
from mmsafe.targets import targets
from mmsafe.types import Attempt, ImageRef, Sample

KEY_ENV = "MMSAFE_TEST_API_KEY"


def _scan(out, target_args: dict, limit: int = 12):
    cfg = load_config(target={"name": "openai", "args": target_args}, out=out, limit=limit, attacks="none,figstep")
    return Scan(cfg).run()


def _rows(out) -> list[dict]:
    store = Store.open_existing(out)
    rows = sorted(store.rows(), key=lambda r: (r["dataset"], r["sample_id"], r["attack"]))
    store.close()
    return rows


def _dump(out) -> str:
    """Everything the run folder's database holds, as text."""
    db = sqlite3.connect(out / "results.sqlite")
    text = "\n".join(db.iterdump())
    db.close()
    return text


def test_a_scan_through_the_served_reader_gets_the_readers_answers(tmp_path, reader):
    with served(reader, name="reader") as (url, _):
        result = _scan(tmp_path / "run", {"base_url": url, "max_new_tokens": READER_ARGS["max_new_tokens"]}, limit=2)
    rows = _rows(tmp_path / "run")
    assert result.errors == 0 and len(rows) == 4
    assert all(r["response"].strip() and r["verdicts"]["keywords"]["unsafe"] is not None for r in rows)
    assert all(r["details"]["model"] == "reader" and r["completion_tokens"] > 0 for r in rows)
    # What reached the model is what the reader gets in process: the same prompt, the image read the same way.
    store = Store.open_existing(tmp_path / "run")
    pick = [next(r for r in rows if r["attack"] == a) for a in ("none", "figstep")]
    direct = reader.generate([store.attempt(r).sent for r in pick])
    store.close()
    assert [r["prompt_tokens"] for r in pick] == [d.prompt_tokens for d in direct]


def test_faults_end_in_stored_errors_and_reruns_retry_only_those_until_the_table_equals_a_clean_run(tmp_path):
    faults = Faults(rate=1 / 3, seed=3, retry_after_s=0.2, stall_s=3.0)
    with served(Echo(), faults=faults) as (url, app):
        args = {"base_url": url, "max_retries": 0, "timeout_s": 1.0, "max_concurrency": 4}
        _scan(tmp_path / "faulty", args)
        rows = _rows(tmp_path / "faulty")
        assert len(rows) == 24
        assert all(bool(r["response"]) != bool(r["error"]) for r in rows)  # an answer or an error, never both/none
        errors = [r["error"] for r in rows if r["error"]]
        assert 4 <= len(errors) <= 14, errors
        kinds = {"500": r"HTTP 500 from .*injected fault", "429": r"HTTP 429 from .*rate limited",
                 "stall": r"no answer from .* within 1 s", "drop": r"connection to .* failed"}
        assert all(any(re.search(p, e) for p in kinds.values()) for e in errors), errors
        assert {k for k, p in kinds.items() if any(re.search(p, e) for e in errors)} == set(faults.injected)
        for _ in range(10):
            if not errors:
                break
            sent_before = app.state.stats.requests
            result = _scan(tmp_path / "faulty", {**args, "max_concurrency": 2})  # a runtime setting: same rows
            assert (result.generated, result.skipped) == (len(errors), 24 - len(errors))
            assert app.state.stats.requests - sent_before == len(errors)  # only the error rows went out again
            errors = [r["error"] for r in _rows(tmp_path / "faulty") if r["error"]]
        assert not errors
    with served(Echo()) as (url, _):
        _scan(tmp_path / "clean", {**args, "base_url": url})
    faulty, clean = _rows(tmp_path / "faulty"), _rows(tmp_path / "clean")
    assert [(r["sample_id"], r["attack"], r["response"]) for r in faulty] == \
           [(r["sample_id"], r["attack"], r["response"]) for r in clean]
    by = ("dataset", "defense", "attack")
    assert [s.as_dict() for s in summarize(faulty, by)] == [s.as_dict() for s in summarize(clean, by)]


def _retried(kinds: tuple[str, ...], rate: float, max_retries: int) -> tuple[Faults, list]:
    faults = Faults(rate=rate, kinds=kinds, seed=1, retry_after_s=0.6, stall_s=3.0)
    with served(Echo(), faults=faults) as (url, _):
        target = targets.build({"name": "openai", "args": {"base_url": url, "max_retries": max_retries,
                                                            "timeout_s": 1.0}})
        responses = target.generate([Sample(id=str(i), prompt=f"question {i}") for i in range(8)])
        target.close()
    assert all(r.error is None and r.text.startswith("echo: question") for r in responses), responses
    assert sum(r.details["retries"] for r in responses) == sum(faults.injected.values()) > 0
    return faults, [t1 - t0 for attempts in faults.arrivals.values()
                    for (t0, kind), (t1, _) in zip(attempts, attempts[1:]) if kind in ("429", "500")]


def test_retries_recover_from_every_fault_and_honour_retry_after():
    _, gaps = _retried(("429",), rate=0.5, max_retries=8)
    assert gaps and min(gaps) >= 0.55  # Retry-After: 0.6 s, above the SDK's own first backoff (at most 0.5 s)
    faults, gaps = _retried(("500", "stall", "drop"), rate=0.4, max_retries=6)
    assert set(faults.injected) == {"500", "stall", "drop"}
    assert min(gaps) >= 0.3  # backed off (0.5 s less up to 25% jitter), not hammered


def test_api_key_comes_from_the_named_variable_and_is_never_stored(tmp_path, monkeypatch):
    secret, wrong = "key-for-the-test-7f3a", "wrong-key-for-the-test-91c2"
    with served(Echo(), api_key=secret) as (url, _):
        args = {"base_url": url, "api_key_env": KEY_ENV, "max_retries": 0}
        config = tmp_path / "scan.yaml"
        config.write_text(yaml.safe_dump({"target": {"name": "openai", "args": args}, "limit": 2,
                                          "attacks": ["none"], "out": str(tmp_path / "missing")}))
        monkeypatch.delenv(KEY_ENV, raising=False)
        missing = CliRunner().invoke(cli, ["scan", "--config", str(config)], env={"COLUMNS": "300"})
        assert missing.exit_code == 2 and f"environment variable {KEY_ENV} (api_key_env) is not set" in missing.output
        assert not (tmp_path / "missing").exists()  # no rows of errors, no empty run folder

        monkeypatch.setenv(KEY_ENV, secret)
        _scan(tmp_path / "good", args, limit=2)
        monkeypatch.setenv(KEY_ENV, wrong)
        _scan(tmp_path / "bad", args, limit=2)
    assert all(r["response"] and not r["error"] for r in _rows(tmp_path / "good"))
    bad = _rows(tmp_path / "bad")
    assert bad and all(r["error"].startswith("HTTP 401") for r in bad)
    for out, key in ((tmp_path / "good", secret), (tmp_path / "bad", wrong)):
        dump = _dump(out)
        assert KEY_ENV in dump and key not in dump  # the variable's name is stored, its value never


def test_a_key_pasted_as_the_variable_name_is_refused_without_echoing_it():
    target = targets.build({"name": "openai", "args": {"base_url": "http://127.0.0.1:9/v1",
                                                        "api_key_env": "sk-abc123XYZ"}})
    with pytest.raises(ValueError) as e:
        target.load()
    assert "NAME of an environment variable" in str(e.value) and "abc123XYZ" not in str(e.value)


def _odd_upstream() -> FastAPI:
    """A server answering the way good servers do not, chosen by the request's model name."""
    app = FastAPI()

    @app.get("/v1/models")
    async def models() -> dict:
        return {"object": "list", "data": [{"id": "a", "object": "model"}, {"id": "b", "object": "model"}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> JSONResponse:
        model = (await request.json())["model"]
        if model == "echo-auth":  # an upstream that quotes the key back in its error
            return JSONResponse({"error": {"message": f"bad key: {request.headers['authorization']}"}}, 403)
        message = {"empty": {"content": ""}, "null": {"content": None}, "blank": {"content": " \n "},
                   "refusal": {"content": None, "refusal": "I can't help with that."}}.get(model)
        choices = [] if message is None else [{"index": 0, "finish_reason": "stop",
                                                "message": {"role": "assistant", **message}}]
        return JSONResponse({"id": "x", "object": "chat.completion", "created": 0, "model": model,
                             "choices": choices, "usage": {"prompt_tokens": 5, "completion_tokens": 0,
                                                           "total_tokens": 5}})

    return app


def test_empty_or_missing_content_is_an_error_never_an_answer(monkeypatch):
    monkeypatch.setenv(KEY_ENV, "key-quoted-back-3b9e")
    with BackgroundServer(_odd_upstream()) as server:
        def ask(model: str, **args):
            target = targets.build({"name": "openai", "args": {"base_url": f"{server.url}/v1", "model": model,
                                                                "max_retries": 0, **args}})
            try:
                return target.generate([Sample(id="1", prompt="hello")])[0]
            finally:
                target.close()

        for model, what in (("empty", "empty content"), ("null", "no content"), ("blank", "empty content"),
                            ("none", "no choices")):
            r = ask(model)
            assert r.text == "" and what in r.error, (model, r)
        refusal = ask("refusal")
        assert refusal.error is None and refusal.text == "I can't help with that." and refusal.details["refusal_field"]
        quoted = ask("echo-auth", api_key_env=KEY_ENV)
        assert quoted.error.startswith("HTTP 403") and "***" in quoted.error and "key-quoted-back" not in quoted.error
        with pytest.raises(ValueError, match=r"the server lists 2 \(a, b\); set the target's model argument"):
            ask(None)
    with served(Echo(text="")) as (url, _):  # mmsafe's own server passing on a target's empty answer
        target = targets.build({"name": "openai", "args": {"base_url": url, "max_retries": 0}})
        assert "empty content" in target.generate([Sample(id="1", prompt="hi")])[0].error
        target.close()


def test_concurrency_is_limited_and_used():
    with served(Echo(batch_size=1, delay_s=0.1)) as (url, app):
        target = targets.build({"name": "openai", "args": {"base_url": url, "max_concurrency": 3}})
        assert target.batch_size == 6
        responses = target.generate([Sample(id=str(i), prompt=f"q{i}") for i in range(12)])
        target.close()
    assert all(r.text == f"echo: q{i} | images: none | system: None" for i, r in enumerate(responses))
    assert app.state.stats.max_in_flight == 3


def test_images_system_prompt_and_model_name_reach_the_server(tmp_path):
    image = Image.new("RGB", (200, 100), "red")
    ref = ImageRef.from_pil(image)
    (tmp_path / "broken.png").write_bytes(b"not an image")
    samples = [Sample(id="1", prompt="describe", images=(ref,), system="Be brief."),
               Sample(id="2", prompt="describe", images=(ImageRef(path=tmp_path / "broken.png"),))]
    with served(Echo(), name="echo-model") as (url, app):
        plain = targets.build({"name": "openai", "args": {"base_url": url}})
        small = targets.build({"name": "openai", "args": {"base_url": url, "max_image_side": 64}})
        (sent, broken), (shrunk, _) = plain.generate(samples), small.generate(samples)
        plain.close()
        small.close()
    assert sent.text == f"echo: describe | images: 200x100:{ref.sha256[:8]} | system: Be brief."  # bytes as they were
    assert "images: 64x32:" in shrunk.text
    assert sent.details["model"] == "echo-model"  # no model given: the server's only one
    assert "broken.png" in broken.error and "not a readable image" in broken.error
    assert app.state.stats.requests == 2  # the broken image was never sent


def test_an_unreachable_server_is_a_row_error():
    target = targets.build({"name": "openai", "args": {"base_url": "http://127.0.0.1:9/v1", "model": "m",
                                                        "max_retries": 1}})
    t0 = time.monotonic()
    r = target.generate([Sample(id="1", prompt="hi")])[0]
    target.close()
    assert r.error.startswith("connection to http://127.0.0.1:9/v1 failed") and time.monotonic() - t0 < 30


def test_scenario_tools_go_out_and_native_tool_calls_come_back():
    """The tool-misuse scenario over HTTP: its tools travel in the request's ``tools``; a model that answers with a
    native tool call (no text) gets it judged by ``tool-call`` like a written one."""
    bodies: list[dict] = []
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> JSONResponse:
        body = await request.json()
        bodies.append(body)
        # the stand-in model calls send_email with the arguments the user's text spells out
        goal = {"obey": ("send_email", body["messages"][-1]["content"][-1]["text"])}.get(body["model"])
        message: dict = {"role": "assistant", "content": "It is a receipt."}
        if goal:  # call the first tool offered with the attacker's argument taken from the test's marker
            message = {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function",
                 "function": {"name": goal[0], "arguments": goal[1]}}]}
        return JSONResponse({"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                             "choices": [{"index": 0, "finish_reason": "tool_calls" if goal else "stop",
                                          "message": message}]})

    sample = next(s for s in datasets.build("tool-misuse").load() if s.metadata["tool_goal"]["tool"] == "send_email")
    goal = sample.metadata["tool_goal"]
    asked = dataclasses.replace(sample, prompt=json.dumps({goal["argument"]: goal["value"]}))
    judge = judges.build("tool-call")
    with BackgroundServer(app) as server:
        for model, unsafe in (("obey", True), ("ignore", False)):
            target = targets.build({"name": "openai", "args": {"base_url": f"{server.url}/v1", "model": model,
                                                                "max_retries": 0}})
            try:
                response = target.generate([asked])[0]
            finally:
                target.close()
            assert response.error is None, response.error
            assert bodies[-1]["tools"] == sample.metadata["tools"]
            assert [t["function"]["name"] for t in bodies[-1]["tools"]] == [
                t["function"]["name"] for t in sample.metadata["tools"]]
            verdict = judge.judge([Attempt.of(asked, response)])[0]
            assert verdict.unsafe is unsafe, (model, verdict)
            if unsafe:
                assert response.details["tool_calls"][0]["function"]["name"] == "send_email"
                assert response.text.startswith("CALL send_email(")
