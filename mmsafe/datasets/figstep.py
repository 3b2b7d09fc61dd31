from __future__ import annotations

from pathlib import Path

from mmsafe.datasets._csv import read_rows
from mmsafe.datasets._files import image_at
from mmsafe.datasets.base import Dataset, datasets
from mmsafe.types import Sample


@datasets.register("figstep")
class FigStepSafeBench(Dataset):
    """FigStep's SafeBench CSV (safebench.csv or SafeBench-Tiny.csv): question, instruction, 10 categories.

    Columns as published: dataset, category_id, task_id, category_name, question, instruction. Sample ids follow
    FigStep's image names (``ForbidQI_<category_id>_<task_id>``). All rows are harmful requests.

    With FigStep's published images (``images`` = a folder, or ``true`` for the folder named like the CSV beside it,
    as FigStep ships ``SafeBench-Tiny.csv`` with ``SafeBench-Tiny/``), each sample is the published attack itself:
    the image ``query_<dataset>_<category_id>_<task_id>_6.png`` ("6" is FigStep's query type) with FigStep's text
    prompt, the original question kept in ``metadata["question"]`` and as the sample's ``goal`` (what judges read).
    Off by default: the plain requests are what the attacks (``figstep``, ``figstep-pro``, ...) start from.
    """

    needs_args = "the path of the dataset's file or folder (NAME:PATH)"

    name = "figstep"

    def __init__(self, path: str, images: str | bool = False) -> None:
        super().__init__()
        self.path = Path(path).expanduser()
        if images is False:
            self.images: Path | None = None
        elif images is True:
            self.images = self.path.with_suffix("")
            if not self.images.is_dir():
                raise ValueError(f"images=true but there is no folder {self.images} beside {self.path}")
        else:
            self.images = Path(str(images)).expanduser()
            if not self.images.is_dir():
                raise ValueError(f"images: {self.images} is not a folder")

    def load(self) -> list[Sample]:
        from mmsafe.attacks.figstep import PROMPT

        required = ["dataset", "category_id", "task_id", "category_name", "question", "instruction"]
        out = []
        seen: set[str] = set()
        for line, row in read_rows(self.path, required, self.problems):
            sid = f"{row['dataset']}_{row['category_id']}_{row['task_id']}"
            if sid in seen:
                self.problems.append(f"{self.path}:{line}: duplicate id {sid}; row skipped")
                continue
            seen.add(sid)
            sample = Sample(
                id=sid,
                prompt=row["question"],
                category=row["category_name"],
                source="figstep",
                benign=False,
                metadata={"instruction": row["instruction"], "category_id": row["category_id"]},
            )
            if self.images is not None:
                image = image_at(self.images, f"query_{sid}_6.png", f"{self.path}:{line}", self.problems)
                sample = sample.with_(
                    prompt=PROMPT, images=(image,),
                    metadata={**sample.metadata, "question": row["question"], "goal": row["question"]},
                )
            out.append(sample)
        return out
