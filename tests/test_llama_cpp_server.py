"""The ``openai`` target against a server mmsafe did not write: llama-cpp-python's OpenAI-compatible server with the
packaged SmolLM2 GGUF, on 127.0.0.1. It is a text-only upstream: text rows must be answered, and image rows (an
HTTP 500 from its chat template) stored as errors, never as answers.

llama-cpp-python builds from source (about 8 minutes on 2 cores), so it is not part of the CI install; the test runs
with a Python that has it: MMSAFE_LLAMA_PYTHON, or this one. Build it with
``CMAKE_ARGS="-DGGML_NATIVE=OFF" pip install --no-cache-dir 'llama-cpp-python[server]'`` (the native build's AMX
path crashes on some CPUs)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

from mmsafe.config import load_config
from mmsafe.models import embedded_gguf
from mmsafe.runner.scan import Scan
from mmsafe.runner.store import Store
from mmsafe.serve.server import free_port, wait_until_up


def _llama_python() -> str:
    python = os.environ.get("MMSAFE_LLAMA_PYTHON")
    if python:
        return python
    if importlib.util.find_spec("llama_cpp") is not None:
        return sys.executable
    pytest.skip("llama-cpp-python is not installed: build it with CMAKE_ARGS=\"-DGGML_NATIVE=OFF\" pip install "
                "--no-cache-dir 'llama-cpp-python[server]' (about 8 min), here or in another environment named by "
                "MMSAFE_LLAMA_PYTHON")


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    python = _llama_python()
    port = free_port()
    log = tmp_path_factory.mktemp("llama") / "server.log"
    with log.open("w") as out:  # a file: the server logs hundreds of kB, which would fill a pipe and block it
        proc = subprocess.Popen([python, "-m", "llama_cpp.server", "--model", str(embedded_gguf()), "--host",
                                 "127.0.0.1", "--port", str(port), "--n_ctx", "2048"], stdout=out,
                                stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        try:
            wait_until_up(f"{url}/models", proc, timeout_s=300)
        except RuntimeError as e:
            raise RuntimeError(f"{e}; its log ends:\n{log.read_text()[-3000:]}") from None
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def test_text_rows_are_answered_and_image_rows_stored_as_errors(llama_server, tmp_path):
    cfg = load_config(target={"name": "openai", "args": {"base_url": llama_server, "max_new_tokens": 24,
                                                          "max_retries": 0}},
                      limit=2, attacks="none,figstep", out=tmp_path / "run")
    result = Scan(cfg).run()
    store = Store.open_existing(cfg.out)
    rows = list(store.rows())
    store.close()
    assert result.generated == 4 and len(rows) == 4
    for r in rows:
        if r["attack"] == "none":
            assert r["error"] is None and r["response"].strip() and r["completion_tokens"] > 0, r
            assert r["details"]["model"].endswith(".gguf")  # the server's only model, found through /v1/models
        else:
            assert not r["response"] and r["error"].startswith("HTTP 500"), r
            assert "1 image(s), which a text-only server fails on this way" in r["error"]
    print(*(f"{r['attack']}: {r['response'] or r['error']}" for r in rows), sep="\n")
