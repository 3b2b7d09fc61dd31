from __future__ import annotations

from mmsafe.component import Component
from mmsafe.registry import Registry
from mmsafe.types import Sample


class DatasetError(ValueError):
    """The dataset as a whole cannot be read (missing file, missing column)."""


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


datasets: Registry[Dataset] = Registry("dataset", "mmsafe.datasets")
