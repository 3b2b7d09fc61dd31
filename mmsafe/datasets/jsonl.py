from __future__ import annotations

import json
from pathlib import Path

from mmsafe.datasets.base import DatasetError, require_file
from mmsafe.datasets.base import Dataset, datasets
from mmsafe.types import ImageRef, Sample


@datasets.register("jsonl")
class JsonlDataset(Dataset):
    """Your own samples, one JSON object per line: prompt, optional image (or images), id, category, benign,
    system (a system prompt for that request); other fields are kept as the sample's metadata (where scenario
    judges read their goals, e.g. ``tool_goal``).

    Image paths are relative to the JSONL file. A line that is not valid JSON or has no prompt is reported with its
    line number and skipped; a missing image file is reported and the sample kept, so the row records the error.
    """

    needs_args = "the path of the dataset's file or folder (NAME:PATH)"

    name = "jsonl"

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = Path(path).expanduser()

    def load(self) -> list[Sample]:
        require_file(self.path)
        out = []
        seen: set[str] = set()
        with self.path.open(encoding="utf-8") as f:
            for line_no, line in enumerate(f, 1):
                if not line.strip():
                    continue
                where = f"{self.path}:{line_no}"
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    self.problems.append(f"{where}: not valid JSON ({e.msg}); line skipped")
                    continue
                if not isinstance(obj, dict) or not str(obj.get("prompt") or "").strip():
                    self.problems.append(f"{where}: needs an object with a non-empty 'prompt'; line skipped")
                    continue
                sid = str(obj.get("id", line_no))
                if sid in seen:
                    self.problems.append(f"{where}: duplicate id {sid!r}; line skipped")
                    continue
                seen.add(sid)
                paths = obj.get("images") or ([obj["image"]] if obj.get("image") else [])
                images = []
                for p in paths:
                    full = (self.path.parent / p) if not Path(p).is_absolute() else Path(p)
                    if not full.is_file():
                        self.problems.append(f"{where}: image {p!r} not found")
                    images.append(ImageRef(path=full))
                known = {"id", "prompt", "image", "images", "category", "benign", "system"}
                out.append(
                    Sample(
                        id=sid,
                        prompt=str(obj["prompt"]),
                        images=tuple(images),
                        category=str(obj.get("category", "")),
                        source="jsonl",
                        benign=bool(obj.get("benign", False)),
                        system=str(obj["system"]) if obj.get("system") else None,
                        metadata={k: v for k, v in obj.items() if k not in known},
                    )
                )
        return out
