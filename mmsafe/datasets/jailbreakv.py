from __future__ import annotations

from pathlib import Path

from mmsafe.datasets._csv import read_rows
from mmsafe.datasets.base import DatasetError
from mmsafe.datasets._files import image_at, parse_bool
from mmsafe.datasets.base import Dataset, datasets
from mmsafe.types import Sample

CSV_NAME = "JailBreakV_28K.csv"


@datasets.register("jailbreakv")
class JailbreakV28K(Dataset):
    """JailBreakV-28K (Luo et al., 2024): 28k jailbreak text + image pairs over 16 safety policies.

    ``path``: ``JailBreakV_28K.csv`` (or ``mini_JailBreakV_28K.csv``, or the folder holding it) as published at
    huggingface.co/datasets/JailbreakV-28K/JailBreakV-28k, columns id, jailbreak_query, redteam_query, format, policy,
    image_path, from, selected_mini, transfer_from_llm (column meanings from the dataset card). ``image_path`` is
    relative to the CSV's folder. The prompt is jailbreak_query (the attack), the category is policy; redteam_query
    (the plain harmful request, also the sample's ``goal``, what judges read) and the rest go to metadata.
    ``mini=True`` keeps the rows marked ``selected_mini`` (the 280-row mini set).
    """

    needs_args = "the path of the dataset's file or folder (NAME:PATH)"

    name = "jailbreakv"

    def __init__(self, path: str, mini: bool = False) -> None:
        super().__init__()
        self.path = Path(path).expanduser()
        self.mini = mini

    def _csv(self) -> Path:
        if not self.path.is_dir():
            return self.path
        for candidate in (self.path / CSV_NAME, self.path / "JailBreakV_28K" / CSV_NAME):
            if candidate.is_file():
                return candidate
        raise DatasetError(f"{self.path}: no {CSV_NAME} in the folder or its JailBreakV_28K/ subfolder")

    def load(self) -> list[Sample]:
        path = self._csv()
        out = []
        seen: set[str] = set()
        for line, row in read_rows(path, ["id", "jailbreak_query", "policy"], self.problems):
            where = f"{path}:{line}"
            mini = parse_bool(row.get("selected_mini", ""))
            if mini is None:
                self.problems.append(f"{where}: selected_mini is {row['selected_mini']!r}, not True/False; row skipped")
                continue
            if self.mini and not mini:
                continue
            if row["id"] in seen:
                self.problems.append(f"{where}: duplicate id {row['id']!r}; row skipped")
                continue
            seen.add(row["id"])
            images = (image_at(path.parent, row["image_path"], where, self.problems),) if row.get("image_path") else ()
            out.append(
                Sample(
                    id=row["id"],
                    prompt=row["jailbreak_query"],
                    images=images,
                    category=row["policy"],
                    source="jailbreakv",
                    benign=False,
                    metadata={
                        "redteam_query": row.get("redteam_query", ""),
                        "goal": row.get("redteam_query", ""),
                        "format": row.get("format", ""),
                        "from": row.get("from", ""),
                        "selected_mini": mini,
                        "transfer_from_llm": parse_bool(row.get("transfer_from_llm", "")),
                    },
                )
            )
        return out
