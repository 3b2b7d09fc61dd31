from __future__ import annotations

from pathlib import Path
from typing import Any

from mmsafe.datasets.base import DatasetError
from mmsafe.datasets._files import image_at, read_json
from mmsafe.datasets.base import Dataset, datasets
from mmsafe.types import Sample

SPLITS = ("all", "harmful", "benign")
# Instruction key -> VLGuard's own name for the evaluation subset it belongs to (VLGuard_eval.py --dataset).
SUBSET = {"safe_instruction": "safe_safes", "unsafe_instruction": "safe_unsafes", "instruction": "unsafes"}


@datasets.register("vlguard")
class VLGuard(Dataset):
    """VLGuard (Zong et al., 2024): images, each with a safe and an unsafe instruction or one harmful instruction.

    ``path``: ``test.json`` or ``train.json`` as published in github.com/ys-zong/VLGuard (``data/``) and
    huggingface.co/datasets/ys-zong/VLGuard: a list of ``{"id", "image", "safe", "instr-resp": [...]}``. A safe
    image has a ``safe_instruction`` (benign: the model should answer) and an ``unsafe_instruction`` (harmful); an
    unsafe image has one ``instruction`` (harmful) plus ``harmful_category`` / ``harmful_subcategory``. One sample
    per (image, instruction); ``metadata["subset"]`` is VLGuard's evaluation subset (safe_safes, safe_unsafes,
    unsafes) and ``metadata["response"]`` its reference answer. Category: harmful_category for unsafe images, else
    "safe" or "unsafe". ``images``: the image root the ``image`` paths are relative to, by default the folder named
    like the JSON beside it (``test/`` from ``test.zip``). ``split``: all, harmful or benign.
    """

    needs_args = "the path of the dataset's file or folder (NAME:PATH)"

    name = "vlguard"

    def __init__(self, path: str, images: str | None = None, split: str = "all") -> None:
        super().__init__()
        if split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}, not {split!r}")
        self.path = Path(path).expanduser()
        self.images = Path(images).expanduser() if images else None
        self.split = split

    def _image_root(self, items: list[Any]) -> Path | None:
        if self.images is not None:
            return self.images if self.images.is_dir() else None
        here = self.path.parent
        # test.zip unpacks beside test.json; VLGuard_eval.py's default image root is data/VLGuard/test.
        candidates = [c for c in (here / self.path.stem, here / "VLGuard" / self.path.stem, here) if c.is_dir()]
        first = next((i["image"] for i in items if isinstance(i, dict) and isinstance(i.get("image"), str)), None)
        if first is not None:
            for c in candidates:
                if (c / first).is_file():
                    return c
        return candidates[0] if candidates and candidates[0] != here else None

    def load(self) -> list[Sample]:
        items = read_json(self.path)
        if not isinstance(items, list):
            raise DatasetError(f"{self.path}: expected a list of images, got {type(items).__name__}")
        root = self._image_root(items)
        report = root is not None  # one message for a missing folder rather than one per image
        if root is None:
            root = self.images or self.path.parent / self.path.stem
            zipped = self.path.with_suffix(".zip")
            hint = f"unzip {zipped.name} beside it" if zipped.is_file() else "pass images=PATH"
            self.problems.append(f"{self.path}: image folder {root} not found ({hint}); images are missing")
        out = []
        seen: set[str] = set()
        for n, item in enumerate(items):
            out.extend(self._samples(n, item, root, report, seen))
        return out

    def _samples(self, n: int, item: Any, root: Path, report: bool, seen: set[str]) -> list[Sample]:
        where = f"{self.path}: item {n}"
        if not isinstance(item, dict):
            self.problems.append(f"{where}: expected an object, got {type(item).__name__}; skipped")
            return []
        where = f"{where} (id {item.get('id')!r})"
        missing = [k for k in ("id", "image", "safe", "instr-resp") if k not in item]
        if missing:
            self.problems.append(f"{where}: missing {', '.join(repr(k) for k in missing)}; skipped")
            return []
        if not isinstance(item["safe"], bool) or not isinstance(item["instr-resp"], list):
            self.problems.append(f"{where}: 'safe' must be true/false and 'instr-resp' a list; skipped")
            return []
        if str(item["id"]) in seen:
            self.problems.append(f"{where}: duplicate id; skipped")
            return []
        seen.add(str(item["id"]))
        image = image_at(root, str(item["image"]), where, self.problems, report)
        out = []
        for j, pair in enumerate(item["instr-resp"]):
            key = next((k for k in SUBSET if isinstance(pair, dict) and k in pair), None)
            if key is None:
                self.problems.append(f"{where}: instr-resp {j} has no safe_instruction, unsafe_instruction or "
                                     "instruction; skipped")
                continue
            if (key == "instruction") == item["safe"]:
                # Safe images carry safe_/unsafe_instruction, unsafe images a plain instruction; a mix is ambiguous.
                self.problems.append(f"{where}: {key!r} on an image with safe={str(item['safe']).lower()}; skipped")
                continue
            if not str(pair[key]).strip():
                self.problems.append(f"{where}: instr-resp {j}: empty {key!r}; skipped")
                continue
            benign = key == "safe_instruction"
            if self.split == "harmful" and benign or self.split == "benign" and not benign:
                continue
            if key == "instruction":
                category = str(item.get("harmful_category") or "unsafe")
            else:
                category = "safe" if benign else "unsafe"
            out.append(
                Sample(
                    id=f"{item['id']}/{j}",
                    prompt=str(pair[key]),
                    images=(image,),
                    category=category,
                    source="vlguard",
                    benign=benign,
                    metadata={
                        "subset": SUBSET[key],
                        "harmful_subcategory": item.get("harmful_subcategory", ""),
                        "response": pair.get("response", ""),
                    },
                )
            )
        return out
