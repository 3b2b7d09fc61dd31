"""Tell a dataset's loader from a bare path (a file or folder given without ``NAME:``), by names and shapes: what
``mmsafe datasets inspect PATH`` and ``mmsafe scan -d PATH`` both do."""

from __future__ import annotations

import csv
import json
import re
import zipfile
from pathlib import Path

from mmsafe.images import IMAGE_SUFFIXES
from mmsafe.registry import ComponentSpec

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


def resolve(value: str | dict | ComponentSpec) -> ComponentSpec:
    """A dataset spec with a bare path replaced by ``LOADER:PATH`` (``ValueError`` when the path's format is not
    recognised). Registered names, and anything that is neither a name nor an existing path, come back as they
    are, so an unknown name is reported by the registry with the list of known ones."""
    from mmsafe.datasets.base import datasets

    spec = ComponentSpec.parse(value)
    if spec.name in datasets.names() or set(spec.args) - {"_"}:
        return spec
    path = Path(spec.label).expanduser()  # "C:" or "runs:x" in a path were split off as an argument: rejoin
    if not path.exists():
        return spec
    name, path = detect(path)
    return ComponentSpec(name=name, args={"_": str(path)})
