from __future__ import annotations

from pathlib import Path

from mmsafe.datasets.base import DatasetError
from mmsafe.datasets._files import read_json
from mmsafe.images import IMAGE_SUFFIXES
from mmsafe.datasets.base import Dataset, datasets
from mmsafe.types import ImageRef, Sample

PROMPTS = "prompts.txt"
ANSWERS = "answers.json"


@datasets.register("folder")
class Folder(Dataset):
    """A folder of images, each sent with the same prompt(s): ``prompt`` or the lines of ``prompts.txt``.

    Images are found in the folder and its subfolders; the first subfolder's name is the category (files at the
    top take ``category``). With several prompts every image is sent with each (ids ``<file>#<n>``).
    ``answers.json`` beside the images, ``{"<file name or relative path>": "<answer>" or ["<accepted>", ...]}``,
    goes to ``metadata["answer"]`` for utility scoring. ``benign=True`` marks the set as requests a model should
    answer (utility and over-refusal count only benign rows).
    """

    needs_args = "the path of the dataset's file or folder (NAME:PATH)"

    name = "folder"

    def __init__(self, path: str, prompt: str | None = None, category: str = "", benign: bool = False) -> None:
        super().__init__()
        self.path = Path(path).expanduser()
        self.prompt = prompt
        self.category = category
        self.benign = benign

    def _prompts(self) -> list[str]:
        if self.prompt:
            return [self.prompt]
        file = self.path / PROMPTS
        if not file.is_file():
            raise DatasetError(f"{self.path}: no prompt; pass one (args: {{prompt: ...}}) or write them, one a line, "
                               f"in {file}")
        prompts = [ln.strip() for ln in file.read_text(encoding="utf-8-sig").splitlines() if ln.strip()]
        if not prompts:
            raise DatasetError(f"{file}: no prompts (one per line)")
        return prompts

    def _answers(self, names: set[str]) -> dict[str, str | list[str]]:
        file = self.path / ANSWERS
        if not file.is_file():
            return {}
        try:
            answers = read_json(file)
        except DatasetError as e:
            self.problems.append(f"{e}; answers not used")
            return {}
        if not isinstance(answers, dict):
            self.problems.append(f"{file}: expected an object {{file name: answer}}; answers not used")
            return {}
        for key in sorted(set(answers) - names):
            self.problems.append(f"{file}: answer for {key!r}, which is not an image in {self.path}")
        # A list is several accepted answers (see mmsafe/metrics/utility.py).
        return {str(k): [str(x) for x in v] if isinstance(v, list) else str(v) for k, v in answers.items()}

    def load(self) -> list[Sample]:
        if not self.path.is_dir():
            raise DatasetError(f"{self.path}: no such folder")
        prompts = self._prompts()
        files = sorted(
            p for p in self.path.rglob("*")
            if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
            and not any(part.startswith(".") for part in p.relative_to(self.path).parts)  # .ipynb_checkpoints etc.
        )
        if not files:
            raise DatasetError(f"{self.path}: no images ({', '.join(IMAGE_SUFFIXES)})")
        rel = {p: p.relative_to(self.path).as_posix() for p in files}
        answers = self._answers(set(rel.values()) | {p.name for p in files})
        out = []
        for p in files:
            parts = rel[p].split("/")
            category = parts[0] if len(parts) > 1 else self.category
            answer = answers.get(rel[p], answers.get(p.name))
            for n, prompt in enumerate(prompts, 1):
                out.append(
                    Sample(
                        id=rel[p] if len(prompts) == 1 else f"{rel[p]}#{n}",
                        prompt=prompt,
                        images=(ImageRef(path=p),),
                        category=category,
                        source="folder",
                        benign=self.benign,
                        metadata={} if answer is None else {"answer": answer},
                    )
                )
        return out
