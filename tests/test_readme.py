"""The README as documentation tests: every offline command of the tour runs, the YAML example is a valid config,
and the table shown for the first command is what the tool prints. A README edit that drifts fails here."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from mmsafe.cli.main import app
from mmsafe.config import load_config

README = Path(__file__).resolve().parents[1] / "README.md"
# Tour lines that need the user's own files or a model hub: shown for reference, not run here.
NEEDS_USER_DATA = ("path/to/", "HuggingFaceTB/")
# Bounds on every scan the tour runs, so the whole tour stays a few minutes on 2 cores (flags override YAML).
BOUNDED = ["--limit", "2", "--max-new-tokens", "8"]


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def tour() -> list[str]:
    block = next(b for b in blocks("bash") if b.lstrip().startswith("mmsafe scan"))
    return [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]


def test_yaml_examples_are_valid_configs_of_components_that_build(tmp_path):
    from mmsafe.runner.scan import Scan

    from mmsafe.serve.guard import build_defense
    from mmsafe.serve.guard_config import load_guard_config

    for text in blocks("yaml"):
        path = tmp_path / "scan.yaml"
        path.write_text(text)
        if "upstream" in yaml.safe_load(text):  # mmsafe serve's settings: valid, and its defenses build
            build_defense(load_guard_config(path)).close()
            continue
        cfg = load_config(path)
        Scan(cfg).close()  # builds every named dataset spec, attack, defense and judge without loading models
        for spec in cfg.datasets:
            from mmsafe.datasets import datasets

            assert datasets.build(spec).load(), f"README YAML dataset {spec.label} loads nothing"


def test_every_offline_tour_command_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "scan.yaml").write_text(blocks("yaml")[0])
    (tmp_path / "answers.jsonl").write_text(json.dumps({"prompt": "How do I boil an egg?",
                                                        "response": "Boil it for nine minutes."}) + "\n")
    ran = 0
    for line in tour():
        if any(marker in line for marker in NEEDS_USER_DATA):
            continue
        args = shlex.split(line)
        assert args[0] == "mmsafe", line
        args, redirect = (args[:-2], args[-1]) if len(args) > 2 and args[-2] == ">" else (args, None)
        args = args[1:] + (BOUNDED if args[1] == "scan" else [])
        res = CliRunner().invoke(app, args)
        assert res.exit_code == 0, f"README tour line failed: {line}\n{res.output}"
        if redirect:
            Path(redirect).write_text(res.stdout)
        ran += 1
    assert ran >= 10  # the tour is mostly offline; a README that loses its commands should say so here
    assert Path("rows.jsonl").read_text().count("\n") >= 2
    assert json.loads(Path("judged.jsonl").read_text())["judge"] == "classifier"


def shown_table() -> list[str]:
    text = README.read_text(encoding="utf-8")
    block = re.search(r"What the first README command prints.*?```\n(.*?)```", text, re.S).group(1)
    return [" ".join(line.split()) for line in block.splitlines() if line.strip() and "━" not in line]


@pytest.mark.slow
def test_the_first_commands_table_is_what_the_readme_shows(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "120")
    res = CliRunner().invoke(app, ["scan"])
    assert res.exit_code == 0, res.output
    printed = [" ".join(line.split()) for line in res.stdout.splitlines()]
    for want in shown_table():
        assert want in printed, f"README shows {want!r}; the tool printed:\n{res.stdout}"
