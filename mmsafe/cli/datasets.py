"""``mmsafe datasets``: list the dataset loaders, check a benchmark copy on disk, download one from the Hub."""

from __future__ import annotations

import inspect
import json
from collections import Counter
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from mmsafe.cli.output import fail
from mmsafe.images import check_images

app = typer.Typer(
    help="Benchmarks in their published formats: list the loaders, inspect a copy on disk, download one.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _consoles() -> tuple[Console, Console]:
    # Made per command, not at import, so the terminal width (COLUMNS) is read when the command runs.
    return Console(), Console(stderr=True)


def takes_path(cls: type) -> bool:
    """Whether a loader's first parameter is a path, i.e. it is used as ``NAME:PATH``."""
    params = [p for p in inspect.signature(cls.__init__).parameters.values() if p.name != "self"]
    return bool(params) and params[0].name == "path"


@app.command("list")
def list_datasets() -> None:
    """List the registered dataset loaders: how to name them, whether they read a path, whether mmsafe can
    download them."""
    from mmsafe.datasets import HUB, datasets

    out, _ = _consoles()
    table = Table("name", "use as", "download", "what it reads")
    for name in datasets.names():
        usage = f"{name}:PATH" if takes_path(datasets.get(name)) else name
        table.add_row(name, usage, HUB[name].repo_id if name in HUB else "", datasets.describe(name))
    out.print(table)


def _parse_args(items: list[str]) -> dict[str, Any]:
    args: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--arg {item!r}: expected KEY=VALUE")
        try:
            args[key.strip()] = json.loads(value)  # true, 3, null, ["a"] ...
        except ValueError:
            args[key.strip()] = value
    return args


def _short(text: str, n: int = 90) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


@app.command("inspect")
def inspect_dataset(
    target: Annotated[str, typer.Argument(help="NAME, NAME:PATH, or a PATH whose loader is told from its name and shape.")],
    arg: Annotated[Optional[list[str]], typer.Option("--arg", "-A", help="Loader argument KEY=VALUE (repeatable), e.g. -A variant=TYPO; values are read as JSON when they parse.")] = None,
    rows: Annotated[int, typer.Option("--rows", "-n", min=0, help="Samples to show.")] = 5,
    max_problems: Annotated[int, typer.Option("--problems", min=0, help="Problems to print (all are counted).")] = 20,
    strict: Annotated[bool, typer.Option("--strict", help="Exit with status 1 when the loader reports problems or images are missing.")] = False,
) -> None:
    """Load a dataset and show what a scan would get: counts per category and harmful/benign, the first rows, images
    readable, unreadable (corrupt or oversize: their headers are checked) and missing, and every problem found
    (file:row: reason)."""
    from mmsafe.datasets import datasets, resolve

    out, err = _consoles()
    try:
        spec = resolve(target)
        if spec.name not in datasets.names():
            raise ValueError(f"{target}: neither a dataset name ({', '.join(datasets.names())}) nor an existing path")
        name, args = spec.name, spec.args | _parse_args(arg or [])
    except ValueError as e:
        fail(str(e))
    if "_" not in args and takes_path(datasets.get(name)):
        fail(f"{name} reads a file or folder: give it as {name}:PATH")
    try:
        ds = datasets.build({"name": name, "args": args})
        samples = ds.load()
    except (ValueError, OSError) as e:  # DatasetError and ComponentError are ValueErrors
        fail(str(e))

    label = ds.spec.label  # type: ignore[attr-defined]
    harmful = sum(not s.benign for s in samples)
    out.print(f"[bold]{escape(label)}[/bold]: {len(samples)} samples, {harmful} harmful, {len(samples) - harmful} "
              f"benign (loader {name})", soft_wrap=True)

    per_cat: Counter[tuple[str, bool]] = Counter((s.category, s.benign) for s in samples)
    cats = Table("category", "harmful", "benign", "total")
    for cat in sorted({c for c, _ in per_cat}):
        h, b = per_cat[(cat, False)], per_cat[(cat, True)]
        cats.add_row(escape(cat or "(none)"), str(h), str(b), str(h + b))
    out.print(cats)

    readable, missing, bad = check_images(ref for s in samples for ref in s.images)
    problems = ds.problems + bad
    text_only = sum(not s.images for s in samples)
    out.print(f"images: {readable} readable, {len(bad)} unreadable, {missing} missing (distinct files); "
              f"{text_only} text-only samples")

    if rows and samples:
        first = Table("id", "category", "benign", "images", "prompt", title=f"first {min(rows, len(samples))} samples")
        for s in samples[:rows]:
            first.add_row(escape(s.id), escape(s.category), "yes" if s.benign else "no", str(len(s.images)),
                          escape(_short(s.prompt)))
        out.print(first)

    if problems:
        err.print(f"[yellow]{len(problems)} problem(s)[/yellow]:")
        for p in problems[:max_problems]:
            err.print(f"  {escape(p)}", soft_wrap=True, highlight=False)
        if len(problems) > max_problems:
            err.print(f"  ... and {len(problems) - max_problems} more (--problems N shows more)")
    else:
        out.print("no problems")
    if strict and (problems or missing):
        raise typer.Exit(1)


@app.command()
def download(
    name: Annotated[str, typer.Argument(help="A dataset name with a Hub download (see: mmsafe datasets list).")],
    dest: Annotated[Optional[Path], typer.Option("--dest", help="Folder to download into \\[default: mmsafe-data/NAME].")] = None,
    include: Annotated[Optional[list[str]], typer.Option("--include", help="Only repo files matching this glob (repeatable), e.g. --include 'test*'.")] = None,
) -> None:
    """Download a benchmark from the Hugging Face Hub as its authors publish it. Offline it fails at once and says
    how to use a local copy instead (--dataset NAME:PATH)."""
    from mmsafe.datasets import DatasetError, HubUnavailable
    from mmsafe.datasets import download as hub_download

    out, _ = _consoles()
    dest = dest or Path("mmsafe-data") / name
    try:
        entry = hub_download(name, dest, include or None)
    except (DatasetError, HubUnavailable) as e:
        fail(str(e))
    out.print(f"downloaded {name} to {dest}\nuse it as: --dataset {name}:{entry}\n"
              f"check it:  mmsafe datasets inspect {name}:{entry}", soft_wrap=True, highlight=False)
