"""The ``vllm`` target where vLLM is not installed (it cannot share this environment: see the module's docstring):
building it works and loads nothing; using it fails with a message that says what to do, and a scan stops on it
without storing a row."""

from __future__ import annotations

import importlib.util

import pytest
from typer.testing import CliRunner

from mmsafe.cli.main import app
from mmsafe.targets import targets

pytestmark = pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")


def test_using_vllm_without_it_says_how_to_install_or_serve_it(tmp_path):
    target = targets.build("vllm:Qwen/Qwen2-VL-2B-Instruct")
    with pytest.raises(ImportError) as e:
        target.load()
    message = str(e.value)
    assert "vLLM is not installed" in message and "pip install vllm" in message
    assert "vllm serve Qwen/Qwen2-VL-2B-Instruct" in message and "-t openai:http://127.0.0.1:8000/v1" in message

    res = CliRunner().invoke(app, ["scan", "-t", "vllm:Qwen/Qwen2-VL-2B-Instruct", "--limit", "1", "-a", "none",
                                   "-o", str(tmp_path / "run")], env={"COLUMNS": "300"})
    assert res.exit_code == 2 and "vLLM is not installed" in res.output
    assert not (tmp_path / "run").exists()
