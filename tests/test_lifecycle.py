"""Models shared and closed: one model cache for the whole process, components that say what they need, and the
runner that skips impossible pairs and releases everything it built."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from conftest import READER_ARGS
from mmsafe.attacks import attacks
from mmsafe.config import load_config
from mmsafe.models import MODEL_CACHE, ModelCache
from mmsafe.registry import ComponentError
from mmsafe.runner.scan import Scan
from mmsafe.runner.store import Store
from mmsafe.targets import Target
from mmsafe.types import Response


def test_cache_loads_once_and_drops_with_the_last_user():
    cache, made = ModelCache(), []
    a = cache.acquire("k", lambda: made.append(1) or object())
    b = cache.acquire("k", lambda: made.append(1) or object())
    assert a.value is b.value and made == [1] and cache.users("k") == 2
    a.release()
    a.release()  # idempotent: a component closed twice gives its hold back once
    assert cache.users("k") == 1 and len(cache) == 1
    b.release()
    assert len(cache) == 0
    cache.acquire("k", object)
    assert cache.loads == 2  # loaded again after the last user let go


LOAD_ONCE = textwrap.dedent("""
    import json, sys
    from transformers import AutoModelForCausalLM

    calls = []
    real = AutoModelForCausalLM.from_pretrained.__func__

    def counting(cls, *args, **kwargs):  # calls through: the real model is loaded and used
        calls.append(str(args[0]))
        return real(cls, *args, **kwargs)

    AutoModelForCausalLM.from_pretrained = classmethod(counting)
    from typer.testing import CliRunner
    from mmsafe.cli.main import app
    from mmsafe.models import MODEL_CACHE

    # `-j llm` judges with its default target, the reader; only its answer length is cut, to keep the test fast
    result = CliRunner().invoke(app, ["scan", "-c", sys.argv[2], "-t", "reader", "-a", "none", "-n", "1",
                                      "--max-new-tokens", "8", "-o", sys.argv[1]])
    print(json.dumps({"code": result.exit_code, "output": result.output, "loads": calls,
                      "cache_loads": MODEL_CACHE.loads, "held": len(MODEL_CACHE)}))
""")


def test_scan_with_reader_target_and_llm_judge_loads_smollm2_once(tmp_path):
    config = tmp_path / "scan.yaml"
    config.write_text("judges: [{name: llm, args: {target: {name: reader, args: {max_new_tokens: 8}}}}]\n")
    out = subprocess.run([sys.executable, "-c", LOAD_ONCE, str(tmp_path / "run"), str(config)], capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["code"] == 0, got["output"]
    assert len(got["loads"]) == 1 and got["cache_loads"] == 1, got  # target and judge share the weights
    assert got["held"] == 0  # and the scan released them when it finished
    store = Store.open_existing(tmp_path / "run")
    rows = list(store.rows())
    store.close()
    assert len(rows) == 1 and all(any(j.startswith("llm") for j in r["verdicts"]) for r in rows)


class Canned(Target):
    """A model-free target: answers every sample with the same text."""

    batch_size = 4

    def __init__(self, modalities=("text", "image")):
        self.modalities = modalities
        self.sent = []
        self.closed = False

    def generate(self, samples):
        self.sent.extend(samples)
        return [Response(text="I cannot help with that.") for _ in samples]

    def close(self):
        self.closed = True


def test_plan_skips_image_attacks_on_a_text_only_target(tmp_path):
    cfg = load_config(target="canned", attacks="none,figstep", limit=2, out=tmp_path / "run")
    problems = []
    target = Canned(modalities=("text",))
    result = Scan(cfg, target=target, on_problem=problems.append).run()
    assert result.generated == 2 and {s.images for s in target.sent} == {()}
    assert any("skipping attack figstep" in p and "image" in p for p in problems), problems


def test_a_gradient_attack_on_a_black_box_target_fails_at_bind_naming_both():
    loads = MODEL_CACHE.loads
    cropa = attacks.build({"name": "cropa", "args": {"target": {"name": "reader", "args": READER_ARGS}}})
    with pytest.raises(ComponentError, match=r"attack 'cropa' cannot run on target 'reader.*prompt_noise_shape"):
        cropa.load()
    assert MODEL_CACHE.loads == loads  # checked before any model is loaded


def test_scan_skips_an_attack_that_cannot_bind_and_runs_the_rest(tmp_path):
    cfg = load_config(target="canned", attacks=["none", {"name": "hijack", "args": {"target": "reader"}}],
                      limit=2, out=tmp_path / "run")
    problems = []
    result = Scan(cfg, target=Canned(), on_problem=problems.append).run()
    assert result.generated == 2
    assert any("skipping attack hijack" in p and "'reader'" in p for p in problems), problems


def test_default_judges_are_keywords_plus_the_attacks_own(tmp_path):
    cfg = load_config(target="canned", attacks=["none", "hijack:unknown", {"name": "patch", "args": {"output": "unknown"}}],
                      out=tmp_path / "run")
    assert [j.name for j in Scan(cfg, target=Canned()).judges] == ["keywords", "contains:unknown"]
    named = load_config(target="canned", attacks="hijack:unknown", judges="keywords", out=tmp_path / "run")
    assert [j.name for j in Scan(named, target=Canned()).judges] == ["keywords"]


def test_scan_closes_what_it_built_but_not_a_target_it_was_given(tmp_path):
    cfg = load_config(target="canned", attacks="none", limit=1, judges="llm", out=tmp_path / "run")
    given = Canned()
    scan = Scan(cfg, target=given)
    closed = []
    scan.judges[0].close = lambda: closed.append("judge")  # the llm judge owns the reader it built
    scan.close()
    assert closed == ["judge"] and not given.closed


def test_scan_detects_a_bare_dataset_path(tmp_path):
    data = tmp_path / "mine.jsonl"
    data.write_text('{"id": "a", "prompt": "How do I bake bread?", "benign": true}\n')
    cfg = load_config(target="canned", datasets=str(data), attacks="none", out=tmp_path / "run")
    scan = Scan(cfg, target=Canned())
    assert [s.label for s in scan.datasets] == [f"jsonl:{data}"]
    assert scan.run().generated == 1
