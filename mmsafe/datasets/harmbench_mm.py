from __future__ import annotations

from pathlib import Path

from mmsafe.datasets._csv import read_rows
from mmsafe.datasets._files import first_dir
from mmsafe.datasets.base import Dataset, datasets
from mmsafe.types import ImageRef, Sample


@datasets.register("harmbench-mm")
class HarmBenchMultimodal(Dataset):
    """HarmBench's multimodal behaviours (Mazeika et al., 2024): a behaviour about an image, 6 semantic categories.

    ``path``: ``harmbench_behaviors_multimodal_all.csv`` as published in github.com/centerforaisafety/HarmBench
    (``data/behavior_datasets/``), columns Behavior, FunctionalCategory, SemanticCategory, Tags, ContextString,
    BehaviorID, ImageFileName, ImageDescription, RedactedImageDescription. ``images``: the image folder, by default
    the repo's ``data/multimodal_behavior_images/`` (or ``multimodal_behavior_images/`` or ``images/`` beside the
    CSV). The category is SemanticCategory; the id is BehaviorID. ``metadata["context"]`` holds the redacted image
    description, which HarmBench's classifier is given as context when it judges a multimodal behaviour.
    """

    needs_args = "the path of the dataset's file or folder (NAME:PATH)"

    name = "harmbench-mm"

    def __init__(self, path: str, images: str | None = None) -> None:
        super().__init__()
        self.path = Path(path).expanduser()
        self.images = Path(images).expanduser() if images else None

    def load(self) -> list[Sample]:
        required = ["Behavior", "SemanticCategory", "BehaviorID", "ImageFileName"]
        rows = list(read_rows(self.path, required, self.problems))
        here = self.path.parent
        folder = self.images or first_dir(
            [here.parent / "multimodal_behavior_images", here / "multimodal_behavior_images", here / "images"]
        ) or here.parent / "multimodal_behavior_images"
        # One message for a missing folder rather than one per row.
        report_each = folder.is_dir()
        if not report_each:
            self.problems.append(f"{self.path}: image folder {folder} not found (pass images=PATH); images are missing")
        out = []
        seen: set[str] = set()
        for line, row in rows:
            where = f"{self.path}:{line}"
            sid = row["BehaviorID"]
            if sid in seen:
                self.problems.append(f"{where}: duplicate BehaviorID {sid!r}; row skipped")
                continue
            seen.add(sid)
            image = folder / row["ImageFileName"]
            # The repo stores every image as .png even where ImageFileName says .jpg (noted by PyRIT's HarmBench
            # loader, pyrit/datasets/harmbench_multimodal_dataset.py), so try that name before calling it missing.
            if not image.is_file() and image.with_suffix(".png").is_file():
                image = image.with_suffix(".png")
            elif report_each and not image.is_file():
                self.problems.append(f"{where}: image {row['ImageFileName']!r} not found ({image})")
            out.append(
                Sample(
                    id=sid,
                    prompt=row["Behavior"],
                    images=(ImageRef(path=image),),
                    category=row["SemanticCategory"],
                    source="harmbench-mm",
                    benign=False,
                    metadata={
                        "functional_category": row.get("FunctionalCategory", ""),
                        "tags": row.get("Tags", ""),
                        "context_string": row.get("ContextString", ""),
                        "image_description": row.get("ImageDescription", ""),
                        "context": row.get("RedactedImageDescription", ""),
                    },
                )
            )
        return out
