from __future__ import annotations

from pathlib import Path

from mmsafe.component import Component
from mmsafe.registry import Registry
from mmsafe.types import Sample


class DatasetError(ValueError):
    """The dataset as a whole cannot be read (missing file, missing column)."""


def require_file(path: Path) -> None:
    """Raise ``DatasetError`` unless ``path`` is a file; a folder is named as one, with what to try instead."""
    if path.is_dir():
        raise DatasetError(f"{path}: is a folder, and this loader reads one file; name the file inside it, or pass "
                           f"the bare folder (mmsafe scan -d {path}) to have its format detected")
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")


class Dataset(Component):
    """A source of samples. ``load`` returns the samples it could read; problems go to ``self.problems``.

    A problem is one line naming the file and row (``safebench.csv:17: empty 'instruction'``) so a user can fix the
    data while the rest of the run goes on.
    """

    name: str = "dataset"

    def __init__(self) -> None:
        self.problems: list[str] = []

    def load(self) -> list[Sample]:
        raise NotImplementedError

    def default_judges(self) -> list[str]:
        """Judge specs that decide success on this dataset's samples (a scenario's canary or tool-call check); a
        scan with no judges named uses keywords plus these, as it does with an attack's."""
        return []


datasets: Registry[Dataset] = Registry("dataset", "mmsafe.datasets")
