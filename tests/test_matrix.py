"""Matrix runs: several targets in one run folder, one target's models at a time, resumed, compared side by side,
and the same rows on a local Ray instance as in this process."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mmsafe.cli.main import app
from mmsafe.config import ConfigError, load_config
from mmsafe.models import MODEL_CACHE
from mmsafe.runner.executor import LocalExecutor
from mmsafe.runner.ray_executor import RayExecutor, import_ray
from mmsafe.runner.scan import Scan
from mmsafe.runner.store import Store
from test_lifecycle import Canned

ROOT = Path(__file__).resolve().parents[1]
# 2 targets x 2 attacks x 2 defenses x 2 mini samples = 16 rows; answers cut short to keep it fast.
MATRIX = """
targets:
  - {label: reader, name: reader, args: {max_new_tokens: 8, batch_size: 4}}
  - {label: tiny, name: tiny-llava, args: {max_new_tokens: 8, batch_size: 4}}
datasets: [mini]
attacks: [none, figstep]
defenses: [none, safety-prompt]
judges: [keywords]
"""
READER_MODEL = ("causal-lm", "smollm2", "float32", None)  # the MODEL_CACHE key of the reader's language model
RAY_TIMEOUT_S = 300


class Watching(LocalExecutor):
    """The local executor, noting after each chunk whose rows it computed and which models the cache held."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict]] = []

    def run(self, chunks, worker):
        for done in super().run(chunks, worker):
            self.seen.append((done.rows[0].target, MODEL_CACHE.held()))
            yield done


def _rows(out: Path) -> dict[tuple, tuple]:
    """Every row's answer and verdict decisions, by row key."""
    store = Store.open_existing(out)
    rows = {(r["dataset"], r["sample_id"], r["attack"], r["defense"], r["target"]):
            (r["response"], r["error"], {j: (v["unsafe"], v["refusal"], v["label"]) for j, v in r["verdicts"].items()})
            for r in store.rows()}
    store.close()
    return rows


@pytest.fixture(scope="module")
def matrix(tmp_path_factory):
    """The matrix run locally in two steps: one sample per dataset first (a run cut short), then two. On one torch
    thread, as in a Ray task of one CPU: on cores shared with other jobs, two threads ran it 5-7x slower."""
    import torch

    folder = tmp_path_factory.mktemp("matrix")
    (folder / "run.yaml").write_text(MATRIX)
    before = MODEL_CACHE.held()
    steps = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for limit in (1, 2):
            watching = Watching()
            cfg = load_config(folder / "run.yaml", limit=limit, out=folder / "run")
            steps.append((Scan(cfg, executor=watching).run(), watching.seen))
    finally:
        torch.set_num_threads(threads)
    return {"dir": folder, "out": folder / "run", "steps": steps, "before": before, "after": MODEL_CACHE.held()}


@pytest.mark.slow
def test_matrix_resumes_and_holds_one_target_at_a_time(matrix):
    (first, _), (second, seen) = matrix["steps"]
    assert (first.total, first.generated) == (8, 8)
    assert (second.total, second.skipped, second.generated, second.errors) == (16, 8, 8, 0)  # only what was missing
    assert [t for t, _ in seen] == ["reader", "tiny"]  # one chunk of 4 new rows per target, target by target
    base = matrix["before"].get(READER_MODEL, 0)
    for target, held in seen:
        vlms = [k for k in held if k[0] == "vlm"]
        if target == "reader":
            assert held.get(READER_MODEL, 0) == base + 1 and not vlms, held
        else:  # the reader's model was given back before tiny-llava's was loaded
            assert held.get(READER_MODEL, 0) == base and len(vlms) == 1, held
    assert matrix["after"] == matrix["before"]  # the scan released every model it loaded
    rows = _rows(matrix["out"])
    assert len(rows) == 16 and {k[4] for k in rows} == {"reader", "tiny"}
    assert all(resp and err is None and "keywords" in v for resp, err, v in rows.values())


@pytest.mark.slow
def test_report_compares_targets(matrix):
    runner = CliRunner()
    got = json.loads(runner.invoke(app, ["report", str(matrix["out"]), "--format", "json"]).output)
    assert got["targets"] == ["reader", "tiny"]
    assert {(s["target"], s["defense"], s["attack"]) for s in got["summary"]} == {
        (t, d, a) for t in ("reader", "tiny") for d in ("none", "safety-prompt") for a in ("none", "figstep")}
    assert {d["target"] for d in got["defense"]} == {"reader", "tiny"}
    table = runner.invoke(app, ["report", str(matrix["out"]), "--no-by-category"])
    assert table.exit_code == 0, table.output
    side = table.output.split("Targets side by side")[1].split("Defenses against")[0]
    assert "reader" in side and "tiny" in side and side.count("figstep") == 2  # one line per defense x attack
    defense = table.output.split("Defenses against")[1].split("Cost")[0]
    assert "target" in defense and "tiny" in defense


@pytest.fixture
def local_ray():
    """A local Ray instance, small, shut down after the test; the test fails past ``RAY_TIMEOUT_S``."""
    try:
        ray = import_ray()
    except ImportError as e:
        if os.environ.get("CI"):
            pytest.fail(str(e))
        pytest.skip(str(e))

    def too_long(*_):
        raise TimeoutError(f"the Ray scan took over {RAY_TIMEOUT_S} s")

    ray.init(num_cpus=2, object_store_memory=100 * 1024**2, include_dashboard=False, log_to_driver=False)
    previous = signal.signal(signal.SIGALRM, too_long)
    signal.alarm(RAY_TIMEOUT_S)
    try:
        yield ray
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        ray.shutdown()


@pytest.mark.slow
def test_the_matrix_on_ray_gives_the_same_rows(matrix, local_ray):
    out = matrix["dir"] / "ray"
    result = CliRunner().invoke(app, ["scan", "-c", str(matrix["dir"] / "run.yaml"), "-n", "2", "-o", str(out),
                                      "--executor", "ray"])
    assert result.exit_code == 0, result.output
    assert "16 rows generated" in result.output
    assert _rows(out) == _rows(matrix["out"])
    again = CliRunner().invoke(app, ["scan", "-c", str(matrix["dir"] / "run.yaml"), "-n", "2", "-o", str(out),
                                     "--executor", "ray"])
    assert "0 rows generated, 16 resumed" in again.output  # resume reads the store the driver wrote


def test_targets_from_yaml_flags_and_examples(tmp_path):
    cfg = load_config(targets="reader,tiny-llava")  # -t takes a comma list, like -a
    assert [t.key for t in cfg.targets] == ["reader", "tiny-llava"]
    one = load_config(target={"name": "reader", "args": {"batch_size": 2}})  # the single form, batch size not in key
    assert [t.key for t in one.targets] == ["reader"]
    with pytest.raises(ConfigError, match="reader named twice"):
        load_config(targets=["reader", {"name": "reader", "args": {"batch_size": 2}}])
    for example in sorted((ROOT / "examples").glob("*.yaml")):
        assert len(load_config(example).targets) >= 2, example


def test_a_label_keeps_naming_the_same_target(tmp_path):
    def scan(args):
        cfg = load_config(targets=[{"label": "mine", "name": "canned", "args": args}], attacks="none", limit=1,
                          out=tmp_path / "run")
        return Scan(cfg, target=Canned()).run()

    assert scan({"temperature": 0}).generated == 1
    assert scan({"temperature": 0, "batch_size": 8}).skipped == 1  # a runtime argument changes no answer
    with pytest.raises(ValueError, match="label 'mine' was canned.*not canned.*temperature.*1"):
        scan({"temperature": 1})


def test_ray_missing_or_given_a_target_object_says_so(tmp_path, monkeypatch):
    cfg = load_config(target="canned", attacks="none", limit=1, out=tmp_path / "run", executor="ray")
    with pytest.raises(ValueError, match="local executor"):
        Scan(cfg, target=Canned()).run()
    monkeypatch.setitem(sys.modules, "ray", None)  # as if it were not installed
    with pytest.raises(ImportError, match=r"pip install 'mmsafe\[ray\]'"):
        import_ray()
    assert isinstance(Scan(load_config(executor="ray", out=tmp_path / "r")).executor, RayExecutor)


def test_an_image_sent_again_is_read_once():
    """A matrix sends each attack image once per defense and per reader target: the OCR reads it once."""
    from mmsafe.attacks import attacks
    from mmsafe.datasets import datasets
    from mmsafe.images import load_image
    from mmsafe.ocr import OCR, clear_cache

    class Counting(OCR):
        calls = 0

        def _read(self, rgb):
            type(self).calls += 1
            return super()._read(rgb)

    first, second = datasets.build("mini").load()[:2]
    figstep = attacks.build("figstep")
    image, other = (load_image(figstep.apply(s).images[0]) for s in (first, second))
    clear_cache()  # other tests of the session may have read them
    texts = [Counting()(image), Counting()(image.copy()), Counting()(other)]
    assert Counting.calls == 2 and texts[0] == texts[1] != texts[2] and "1." in texts[0]

