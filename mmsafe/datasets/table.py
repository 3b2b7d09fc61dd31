from __future__ import annotations

from pathlib import Path

from mmsafe.datasets._csv import read_rows
from mmsafe.datasets._files import image_at, parse_bool
from mmsafe.datasets.base import Dataset, datasets
from mmsafe.types import Sample

KNOWN = {"id", "prompt", "image", "category", "benign"}


@datasets.register("table")
class Table(Dataset):
    """Your own samples as a CSV: a ``prompt`` column and optional image, id, category, benign, answer.

    ``image`` is a path relative to the CSV (empty: text only); ``benign`` is 1/0, true/false or yes/no (empty:
    harmful); ``id`` defaults to the line number. ``answer`` (the expected answer, for utility scoring) and any other
    column go to metadata. A row without a prompt, with an unreadable benign value or a duplicate id is reported and
    skipped; a missing image is reported and the sample kept, so the row records the error.
    """

    needs_args = "the path of the dataset's file or folder (NAME:PATH)"

    name = "table"

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = Path(path).expanduser()

    def load(self) -> list[Sample]:
        out = []
        seen: set[str] = set()
        for line, row in read_rows(self.path, ["prompt"], self.problems):
            where = f"{self.path}:{line}"
            benign = parse_bool(row.get("benign", ""))
            if benign is None:
                self.problems.append(
                    f"{where}: benign is {row['benign']!r}, not 1/0, true/false or yes/no; row skipped"
                )
                continue
            sid = row.get("id") or str(line)
            if sid in seen:
                self.problems.append(f"{where}: duplicate id {sid!r}; row skipped")
                continue
            seen.add(sid)
            image = row.get("image", "")
            out.append(
                Sample(
                    id=sid,
                    prompt=row["prompt"],
                    images=(image_at(self.path.parent, image, where, self.problems),) if image else (),
                    category=row.get("category", ""),
                    source="table",
                    benign=benign,
                    metadata={k: v for k, v in row.items() if k not in KNOWN and k},
                )
            )
        return out
