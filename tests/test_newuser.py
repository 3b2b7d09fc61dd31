"""What a new user trips over: error rows that never retry, empty run folders after a failed start, raw Python
errors for a misspelt argument or name."""

from __future__ import annotations

import json

import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import READER_ARGS
from mmsafe.attacks import attacks
from mmsafe.cli.main import app
from mmsafe.config import load_config
from mmsafe.judges import judges
from mmsafe.registry import ComponentError, UnknownComponent
from mmsafe.runner.scan import Scan
from mmsafe.runner.store import Store


def _config(out, data, **kw):
    return load_config(target={"name": "reader", "args": READER_ARGS}, out=out, datasets=f"jsonl:{data}",
                       attacks="none", **kw)


def _errors(out) -> dict[str, str | None]:
    store = Store.open_existing(out)
    try:
        return {r["sample_id"]: r["error"] for r in store.rows()}
    finally:
        store.close()


def test_rows_stored_as_errors_are_retried_once_the_input_is_fixed(tmp_path, reader):
    (tmp_path / "pic.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 50)
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"id": "img", "prompt": "What colour is this?", "image": "pic.png", "benign": True})
                    + "\n" + json.dumps({"id": "txt", "prompt": "Say hello.", "benign": True}) + "\n")
    out = tmp_path / "run"
    first = Scan(_config(out, data), target=reader).run()
    assert first.errors == 1 and "pic.png" in _errors(out)["img"]

    Image.new("RGB", (32, 32), "white").save(tmp_path / "pic.png")  # fixed in place
    kept = Scan(_config(out, data, retry_errors=False), target=reader).run()
    assert kept.generated == 0 and _errors(out)["img"] is not None

    retried = Scan(_config(out, data), target=reader).run()
    assert (retried.generated, retried.skipped, retried.errors) == (1, 1, 0)
    assert _errors(out) == {"img": None, "txt": None}


def test_a_scan_that_fails_before_its_first_row_leaves_no_folder(tmp_path):
    out = tmp_path / "never"
    cfg = load_config(out=out, datasets=f"jsonl:{tmp_path / 'missing.jsonl'}", attacks="none")
    with pytest.raises(Exception):
        Scan(cfg).run()
    assert not out.exists()
    res = CliRunner().invoke(app, ["scan", "-d", f"jsonl:{tmp_path / 'missing.jsonl'}", "-o", str(out)])
    assert res.exit_code != 0 and not out.exists()


def test_report_on_an_empty_run_folder_says_how_to_start(tmp_path):
    Store(tmp_path / "empty").close()
    res = CliRunner().invoke(app, ["report", str(tmp_path / "empty")])
    assert res.exit_code == 2
    text = " ".join(res.output.split())  # rich wraps at the terminal width
    assert "no rows yet" in text and "mmsafe scan --out" in text


def test_unknown_names_suggest_the_closest_and_bad_arguments_list_the_accepted():
    with pytest.raises(UnknownComponent, match="did you mean figstep\\?"):
        attacks.build("figstpe")
    with pytest.raises(ComponentError, match="judge 'keywords' has no argument 'lst'; it accepts: list, phrases"):
        judges.build({"name": "keywords", "args": {"lst": "gcg"}})
    with pytest.raises(ComponentError, match="attack 'figstep' has no argument 'stepz'; it accepts: steps"):
        attacks.build({"name": "figstep+prefix-injection", "args": {"figstep": {"stepz": 3}}})


def test_progress_lines_when_output_is_not_a_terminal(tmp_path, monkeypatch):
    from mmsafe.cli import main

    monkeypatch.setattr(main._ScanProgress, "PLAIN_EVERY_S", 0.0)
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"id": str(i), "prompt": f"Name a colour ({i})."}) + "\n" for i in range(3)))
    res = CliRunner().invoke(app, ["scan", "-d", f"jsonl:{data}", "-a", "none", "-o", str(tmp_path / "run"),
                                   "--max-new-tokens", "4", "--batch-size", "1"])
    assert res.exit_code == 0, res.output
    assert "scan: 1/3 rows" in res.output and "scan: 3/3 rows" in res.output and "rows/s, ETA" in res.output


def _bad_image_set(tmp_path):
    """Three benign rows: a corrupt image whose name has brackets, a good one, a prompt with markup-like text."""
    (tmp_path / "corrupt [x].png").write_bytes(b"not an image at all")
    Image.new("RGB", (32, 32), "white").save(tmp_path / "ok.png")
    rows = [{"id": "a", "prompt": "What is shown?", "image": "corrupt [x].png", "category": "[b]cat[/b]"},
            {"id": "b", "prompt": "What is [bold]this[/bold]?", "image": "ok.png", "category": "[b]cat[/b]"},
            {"id": "c", "prompt": "And this?", "image": "corrupt [x].png", "category": "[b]cat[/b]"}]
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(dict(r, benign=True)) + "\n" for r in rows))
    return data


def test_inspect_opens_images_and_names_a_folder_given_to_a_file_loader(tmp_path):
    data = _bad_image_set(tmp_path)
    res = CliRunner().invoke(app, ["datasets", "inspect", f"jsonl:{data}"])
    text = " ".join(res.output.split())
    assert "1 readable, 1 unreadable, 0 missing" in text
    assert "corrupt [x].png: not a readable image (unknown format or corrupt header)" in text
    assert "What is [bold]this[/bold]?" in text and "<_io" not in text
    res = CliRunner().invoke(app, ["datasets", "inspect", "--strict", f"jsonl:{data}"])
    assert res.exit_code == 1
    res = CliRunner().invoke(app, ["datasets", "inspect", f"jsonl:{tmp_path}"])
    assert res.exit_code != 0 and "is a folder, and this loader reads one file" in " ".join(res.output.split())


def test_a_bad_image_is_warned_once_and_user_text_prints_whole(tmp_path, reader):
    data = _bad_image_set(tmp_path)
    printed: list[str] = []
    cfg = load_config(out=tmp_path / "run", datasets=f"jsonl:{data}", attacks="none,prefix-injection")
    result = Scan(cfg, target=reader, on_problem=printed.append).run()
    assert sum("corrupt [x].png" in p for p in result.problems) == 4  # 2 samples x 2 attacks, all kept
    assert sum("corrupt [x].png" in p for p in printed) == 1
    res = CliRunner().invoke(app, ["report", str(tmp_path / "run")])
    assert res.exit_code == 0 and "[b]cat[/b]" in res.output  # a category name is not rich markup


def test_a_yaml_error_keeps_its_brackets(tmp_path):
    bad = tmp_path / "run [1].yaml"
    bad.write_text("datasets: [mini\nattacks: none\n")
    res = CliRunner().invoke(app, ["scan", "-c", str(bad)])
    text = " ".join(res.output.split())
    assert res.exit_code != 0 and "run [1].yaml: not valid YAML" in text and "datasets: [mini" in text
