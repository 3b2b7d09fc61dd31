"""XSTest (Röttger et al., NAACL 2024), the over-refusal benchmark: 250 safe prompts that only sound unsafe and 200
unsafe contrast prompts. Prompts CC-BY-4.0; repository paul-rottger/exaggerated-safety, file ``xstest_prompts.csv``
(columns id, prompt, type, label, focus, note)."""

from __future__ import annotations

from pathlib import Path

from mmsafe.datasets._csv import read_rows
from mmsafe.datasets.base import Dataset, DatasetError, datasets
from mmsafe.types import Sample

FILE = "xstest_prompts.csv"
SPLITS = ("all", "safe", "unsafe")


@datasets.register("xstest")
class XSTest(Dataset):
    """XSTest's prompts (file or its folder): 250 safe look-alikes (benign) and 200 unsafe contrasts; category = type.

    ``benign`` comes from the ``label`` column (safe/unsafe), ``category`` from ``type`` (``homonyms``,
    ``contrast_homonyms``, ...). ``split``: ``safe`` (the over-refusal set), ``unsafe``, or ``all``. The prompts are
    text; the typographic attacks (``figstep``, ``mmsb-query-relevant``, ``visual-prompt-injection``) carry them
    into an image like any other request.
    """

    name = "xstest"
    needs_args = "the path of the dataset's file or folder (NAME:PATH)"

    def __init__(self, path: str, split: str = "all") -> None:
        super().__init__()
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; known: {', '.join(SPLITS)}")
        p = Path(path).expanduser()
        self.path = p / FILE if p.is_dir() else p
        self.split = split

    def load(self) -> list[Sample]:
        out = []
        for line, row in read_rows(self.path, ["id", "prompt", "type", "label"], self.problems):
            label = row["label"].lower()
            if label not in ("safe", "unsafe"):
                self.problems.append(f"{self.path}:{line}: label {row['label']!r} is neither safe nor unsafe; "
                                     "row skipped")
                continue
            if self.split != "all" and label != self.split:
                continue
            out.append(Sample(id=f"xstest-{row['id']}", prompt=row["prompt"], category=row["type"], source="xstest",
                              benign=label == "safe",
                              metadata={k: row[k] for k in ("focus", "note") if row.get(k)}))
        if not out and not self.problems:
            raise DatasetError(f"{self.path}: no prompts" + (f" with label {self.split}" if self.split != "all" else ""))
        return out
