"""File helpers shared by loaders: JSON with clear errors, image paths that report what is missing."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mmsafe.datasets.base import DatasetError, require_file
from mmsafe.types import ImageRef

_TRUE = {"1", "true", "yes", "y", "t"}
_FALSE = {"0", "false", "no", "n", "f", ""}


def read_json(path: Path) -> Any:
    """Parse a whole JSON file, or raise ``DatasetError`` naming the file, line and column."""
    require_file(path)
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as e:
        raise DatasetError(f"{path}:{e.lineno}: not valid JSON ({e.msg} at column {e.colno})") from e
    except UnicodeDecodeError as e:
        raise DatasetError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from e


def image_at(folder: Path, rel: str, where: str, problems: list[str], report: bool = True) -> ImageRef:
    """``folder / rel`` as an ``ImageRef``; a missing file is reported (``where: image ... not found``) but kept, so
    the row records the error at scan time instead of silently losing the sample."""
    full = Path(rel).expanduser()
    if not full.is_absolute():
        full = folder / full
    if report and not full.is_file():
        problems.append(f"{where}: image {rel!r} not found ({full})")
    return ImageRef(path=full)


def first_dir(candidates: Iterable[Path]) -> Path | None:
    return next((c for c in candidates if c.is_dir()), None)


def parse_bool(value: Any) -> bool | None:
    """``True``/``False`` from the spellings CSV and JSON files use (1/0, true/false, yes/no); None if unclear."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    return None
