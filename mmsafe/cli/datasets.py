"""``mmsafe datasets``: list the dataset loaders, check a benchmark copy on disk, download one from the Hub."""

from __future__ import annotations

import csv
import inspect
import json
import re
import zipfile
from collections import Counter
from pathlib import Path
from typing import Annotated, Any, NoReturn, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

app = typer.Typer(
    help="Benchmarks in their published formats: list the loaders, inspect a copy on disk, download one.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _consoles() -> tuple[Console, Console]:
    # Made per command, not at import, so the terminal width (COLUMNS) is read when the command runs.
    return Console(), Console(stderr=True)


def _fail(msg: str) -> NoReturn:
    Console(stderr=True).print(f"[red]error:[/red] {escape(msg)}", soft_wrap=True)
    raise typer.Exit(2)


def takes_path(cls: type) -> bool:
    """Whether a loader's first parameter is a path, i.e. it is used as ``NAME:PATH``."""
    params = [p for p in inspect.signature(cls.__init__).parameters.values() if p.name != "self"]
    return bool(params) and params[0].name == "path"


@app.command("list")
def list_datasets() -> None:
    """List the registered dataset loaders: how to name them, whether they read a path, whether mmsafe can
    download them."""
    from mmsafe.datasets import datasets
    from mmsafe.datasets._hub import HUB

    out, _ = _consoles()
    table = Table("name", "use as", "download", "what it reads")
    for name in datasets.names():
        usage = f"{name}:PATH" if takes_path(datasets.get(name)) else name
        table.add_row(name, usage, HUB[name].repo_id if name in HUB else "", datasets.describe(name))
    out.print(table)


# --- telling a loader from a path ---------------------------------------------------------------------------------

_SPLITS = re.compile(r"(?:^|/)image_\d+_splits/")


def _csv_header(path: Path) -> set[str]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            return {c.strip() for c in next(csv.reader(f), [])}
    except (OSError, UnicodeDecodeError, csv.Error):
        return set()


def _json_kind(path: Path) -> str | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    if isinstance(data, list) and data and isinstance(data[0], dict) and "instr-resp" in data[0]:
        return "vlguard"
    if isinstance(data, dict) and data:
        first = next(iter(data.values()))
        if isinstance(first, dict) and ("Question" in first or "Rephrased Question" in first):
            return "mmsafetybench"
    return None


def _file_kind(path: Path) -> str | None:
    """The loader for one data file, from its suffix and content."""
    suffix = path.suffix.lower()
    if suffix == ".zip":
        try:
            with zipfile.ZipFile(path) as z:
                return "figstep-pro" if any(_SPLITS.search(n) for n in z.namelist()) else None
        except (zipfile.BadZipFile, OSError):
            return None
    if suffix == ".jsonl":
        return "jsonl"
    if suffix == ".json":
        return _json_kind(path)
    if suffix == ".csv":
        header = _csv_header(path)
        for name, columns in (
            ("figstep", {"category_id", "task_id", "question", "instruction"}),
            ("harmbench-mm", {"BehaviorID", "ImageFileName"}),
            ("jailbreakv", {"jailbreak_query", "policy"}),
            ("table", {"prompt"}),
        ):
            if columns <= header:
                return name
    return None


def detect(path: Path) -> tuple[str, Path]:
    """The loader for a bare path, and the path to give it, from names and shapes; ``ValueError`` if none fits.

    A folder is a benchmark layout (MM-SafetyBench, FigStep-Pro sub-figures, JailBreakV-28K), else the one data
    file inside it a loader reads (several: the error lists them), else a folder of images."""
    from mmsafe.datasets._files import IMAGE_SUFFIXES

    if not path.is_dir():
        kind = _file_kind(path)
        if kind is None:
            raise ValueError(f"{path}: cannot tell which loader reads it; name one as NAME:PATH "
                             "(see: mmsafe datasets list)")
        return kind, path
    if any((path / d).is_dir() for d in ("processed_questions", "data/processed_questions")) or any(
        _json_kind(p) == "mmsafetybench" for p in sorted(path.glob("*.json"))[:3]
    ):
        return "mmsafetybench", path
    if any(path.glob("image_*_splits")):
        return "figstep-pro", path
    if (path / "JailBreakV_28K.csv").is_file() or (path / "JailBreakV_28K" / "JailBreakV_28K.csv").is_file():
        return "jailbreakv", path
    found = [(kind, p) for p in sorted(path.iterdir()) if p.is_file() and (kind := _file_kind(p))]
    if len(found) == 1:
        return found[0]
    if found:
        raise ValueError(f"{path} holds several datasets; pick one: " + ", ".join(f"{k}:{p}" for k, p in found))
    if any(p.suffix.lower() in IMAGE_SUFFIXES for p in path.rglob("*")):
        return "folder", path
    raise ValueError(f"{path}: no dataset found in the folder; name a loader as NAME:PATH (see: mmsafe datasets list)")


def resolve(target: str) -> tuple[str, dict[str, Any]]:
    """``NAME``, ``NAME:PATH`` or ``PATH`` -> (loader name, args)."""
    from mmsafe.datasets import datasets

    name, sep, rest = target.partition(":")
    if name in datasets.names():
        return name, ({"_": rest} if sep else {})
    path = Path(target).expanduser()
    if not path.exists():
        raise ValueError(f"{target}: neither a dataset name ({', '.join(datasets.names())}) nor an existing path")
    name, path = detect(path)
    return name, {"_": str(path)}


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
    found and missing, and every problem the loader reported (file:row: reason)."""
    from mmsafe.datasets import datasets

    out, err = _consoles()
    try:
        name, args = resolve(target)
        args |= _parse_args(arg or [])
    except ValueError as e:
        _fail(str(e))
    if "_" not in args and takes_path(datasets.get(name)):
        _fail(f"{name} reads a file or folder: give it as {name}:PATH")
    try:
        ds = datasets.build({"name": name, "args": args})
        samples = ds.load()
    except (ValueError, OSError) as e:  # DatasetError and ComponentError are ValueErrors
        _fail(str(e))

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

    found = missing = 0
    for ref in {ref for s in samples for ref in s.images}:
        if ref.path is None or ref.path.is_file():
            found += 1
        else:
            missing += 1
    text_only = sum(not s.images for s in samples)
    out.print(f"images: {found} found, {missing} missing (distinct files); {text_only} text-only samples")

    if rows and samples:
        first = Table("id", "category", "benign", "images", "prompt", title=f"first {min(rows, len(samples))} samples")
        for s in samples[:rows]:
            first.add_row(escape(s.id), escape(s.category), "yes" if s.benign else "no", str(len(s.images)),
                          escape(_short(s.prompt)))
        out.print(first)

    if ds.problems:
        err.print(f"[yellow]{len(ds.problems)} problem(s)[/yellow]:")
        for p in ds.problems[:max_problems]:
            err.print(f"  {escape(p)}", soft_wrap=True, highlight=False)
        if len(ds.problems) > max_problems:
            err.print(f"  ... and {len(ds.problems) - max_problems} more (--problems N shows more)")
    else:
        out.print("no problems")
    if strict and (ds.problems or missing):
        raise typer.Exit(1)


@app.command()
def download(
    name: Annotated[str, typer.Argument(help="A dataset name with a Hub download (see: mmsafe datasets list).")],
    dest: Annotated[Optional[Path], typer.Option("--dest", help="Folder to download into \\[default: mmsafe-data/NAME].")] = None,
    include: Annotated[Optional[list[str]], typer.Option("--include", help="Only repo files matching this glob (repeatable), e.g. --include 'test*'.")] = None,
) -> None:
    """Download a benchmark from the Hugging Face Hub as its authors publish it. Offline it fails at once and says
    how to use a local copy instead (--dataset NAME:PATH)."""
    from mmsafe.datasets._csv import DatasetError
    from mmsafe.datasets._hub import HubUnavailable
    from mmsafe.datasets._hub import download as hub_download

    out, _ = _consoles()
    dest = dest or Path("mmsafe-data") / name
    try:
        entry = hub_download(name, dest, include or None)
    except (DatasetError, HubUnavailable) as e:
        _fail(str(e))
    out.print(f"downloaded {name} to {dest}\nuse it as: --dataset {name}:{entry}\n"
              f"check it:  mmsafe datasets inspect {name}:{entry}", soft_wrap=True, highlight=False)
