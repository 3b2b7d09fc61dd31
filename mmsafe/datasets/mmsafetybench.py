from __future__ import annotations

from pathlib import Path
from typing import Any

from mmsafe.datasets.base import DatasetError, require_file
from mmsafe.datasets._files import first_dir, image_at, read_json
from mmsafe.datasets.base import Dataset, datasets
from mmsafe.types import Sample

# Which question goes with which image (MM-SafetyBench, Liu et al., ECCV 2024; github.com/isXinLiu/MM-SafetyBench):
# the SD image shows the key phrase as a picture, so its question says "the image shows a phrase of an activity";
# TYPO and SD+TYPO images spell the phrase out, so their question says "the bottom of the image shows a phrase".
PROMPT_KEY = {
    "SD": "Rephrased Question(SD)",
    "TYPO": "Rephrased Question",
    "SD_TYPO": "Rephrased Question",
    "text": "Question",
}
TINY_LIST = "TinyVersion_ID_List.json"  # the repo's published id list of MM-SafetyBench-Tiny


@datasets.register("mmsafetybench")
class MMSafetyBench(Dataset):
    """MM-SafetyBench (Liu et al., ECCV 2024) as published: 13 scenarios of questions with SD / TYPO / SD+TYPO images.

    Layout of github.com/isXinLiu/MM-SafetyBench: ``data/processed_questions/<scenario>.json`` (an object keyed by
    question id "0", "1", ... with ``Question``, ``Changed Question``, ``Key Phrase``, ``Phrase Type``,
    ``Rephrased Question``, ``Rephrased Question(SD)``) and images, downloaded separately, in
    ``imgs/<scenario>/{SD,TYPO,SD_TYPO}/<id>.jpg``. ``path`` may be the repo root, its ``data/`` folder, the
    ``processed_questions/`` folder itself or one scenario file.

    ``variant``: SD, TYPO, SD_TYPO (default, the paper's strongest attack) or text (the plain ``Question``, no image).
    ``ids``: a file choosing a subset, e.g. the published ``TinyVersion_ID_List.json`` for MM-SafetyBench-Tiny (a
    list of ``{"Scenario", "Sampled_ID_List"}``), ``{"<scenario>": [ids]}``, a JSON list or a text file of
    ``<scenario>/<id>`` lines; ``ids="tiny"`` finds the published list in the repo. ``images``: the ``imgs`` folder
    when it is not in one of the usual places. The category is the scenario's file name as published, e.g.
    ``01-Illegal_Activitiy`` (spelling included): it is what papers report per scenario, and it sorts in their order.
    """

    needs_args = "the path of the dataset's file or folder (NAME:PATH)"

    name = "mmsafetybench"

    def __init__(self, path: str, variant: str = "SD_TYPO", ids: str | None = None, images: str | None = None) -> None:
        super().__init__()
        if variant not in PROMPT_KEY:
            raise ValueError(f"variant must be one of {', '.join(PROMPT_KEY)}, not {variant!r}")
        self.path = Path(path).expanduser()
        self.variant = variant
        self.ids = ids
        self.images = Path(images).expanduser() if images else None

    def _question_files(self) -> tuple[Path, list[Path]]:
        """The folder holding the scenario files and the files themselves."""
        if self.path.is_file():
            return self.path.parent, [self.path]
        if not self.path.is_dir():
            raise DatasetError(f"{self.path}: no such file or folder")
        candidates = [self.path / "processed_questions", self.path / "data" / "processed_questions", self.path]
        for folder in candidates:
            files = sorted(p for p in folder.glob("*.json") if p.name != TINY_LIST) if folder.is_dir() else []
            if files:
                return folder, files
        raise DatasetError(
            f"{self.path}: no MM-SafetyBench question files (<scenario>.json) in "
            + ", ".join(str(c) for c in candidates)
        )

    def _image_root(self, qdir: Path) -> Path | None:
        if self.images is not None:
            return self.images
        # imgs/ sits beside data/ in the repo, or beside processed_questions/ when users unpack both together.
        roots = [qdir.parent / "imgs", qdir.parent.parent / "imgs", self.path / "imgs", self.path / "data" / "imgs"]
        return first_dir(roots)

    def _selection(self, qdir: Path) -> dict[str, set[str]] | None:
        if self.ids is None:
            return None
        if self.ids == "tiny":
            found = [p for p in (self.path / TINY_LIST, qdir.parent / TINY_LIST, qdir.parent.parent / TINY_LIST)
                     if p.is_file()]
            if not found:
                raise DatasetError(f"ids='tiny': no {TINY_LIST} found near {self.path}; pass ids=PATH")
            return _read_selection(found[0])
        return _read_selection(Path(self.ids).expanduser())

    def load(self) -> list[Sample]:
        qdir, files = self._question_files()
        selection = self._selection(qdir)
        root = None if self.variant == "text" else self._image_root(qdir)
        no_root = self.variant != "text" and root is None
        if no_root:
            self.problems.append(
                f"{self.path}: no imgs/ folder found near {qdir} (pass images=PATH); {self.variant} images are missing"
            )
            root = qdir.parent / "imgs"
        if selection is not None:
            for scenario in sorted(set(selection) - {f.stem for f in files}):
                self.problems.append(f"{self.ids}: scenario {scenario!r} has no question file in {qdir}")
        out = []
        for file in files:
            scenario = file.stem
            try:
                questions = read_json(file)
            except DatasetError as e:
                self.problems.append(f"{e}; file skipped")
                continue
            if not isinstance(questions, dict):
                self.problems.append(f"{file}: expected an object keyed by question id, got {type(questions).__name__}")
                continue
            wanted = None if selection is None else selection.get(scenario, set())
            folder = root / scenario / self.variant if root is not None else None
            # One message for a whole missing scenario folder instead of one per question.
            report_each = folder is not None and folder.is_dir()
            if folder is not None and not report_each and not no_root and (wanted is None or wanted):
                self.problems.append(f"{file}: image folder {folder} not found; its {self.variant} images are missing")
            for qid in sorted(questions, key=_id_order):
                if wanted is not None and qid not in wanted:
                    continue
                sample = self._sample(file, scenario, qid, questions[qid], folder, report_each)
                if sample is not None:
                    out.append(sample)
            for qid in sorted((wanted or set()) - set(questions), key=_id_order):
                self.problems.append(f"{file}: selected id {qid!r} is not in the file")
        return out

    def _sample(self, file: Path, scenario: str, qid: str, q: Any, folder: Path | None, report: bool) -> Sample | None:
        where = f"{file}: question {qid!r}"
        if not isinstance(q, dict):
            self.problems.append(f"{where}: expected an object, got {type(q).__name__}; skipped")
            return None
        key = PROMPT_KEY[self.variant]
        prompt = str(q.get(key) or "").strip()
        if not prompt:
            self.problems.append(f"{where}: missing or empty {key!r}; skipped")
            return None
        images = () if folder is None else (image_at(folder, f"{qid}.jpg", where, self.problems, report),)
        return Sample(
            id=f"{scenario}/{qid}",
            prompt=prompt,
            images=images,
            category=scenario,
            source="mmsafetybench",
            benign=False,
            metadata={
                "question": q.get("Question", ""),
                "goal": q.get("Question", ""),  # the prompt may be the rephrased carrier; judges read the question
                "key_phrase": q.get("Key Phrase", ""),
                "phrase_type": q.get("Phrase Type", ""),
                "variant": self.variant,
            },
        )


def _id_order(qid: str) -> tuple[int, int | str]:
    return (0, int(qid)) if qid.isdigit() else (1, qid)


def _read_selection(path: Path) -> dict[str, set[str]]:
    """Scenario -> chosen ids, from any of the accepted id-list shapes."""
    if path.suffix.lower() != ".json":
        require_file(path)
        lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()]
        return _from_pairs(path, [ln for ln in lines if ln and not ln.startswith("#")])
    data = read_json(path)
    if isinstance(data, dict):
        return {str(s): {str(i) for i in ids} for s, ids in data.items() if isinstance(ids, list)}
    if isinstance(data, list) and all(isinstance(x, dict) for x in data):
        try:
            return {str(x["Scenario"]): {str(i) for i in x["Sampled_ID_List"]} for x in data}
        except KeyError as e:
            raise DatasetError(f"{path}: each entry needs 'Scenario' and 'Sampled_ID_List'; one lacks {e}") from e
    if isinstance(data, list):
        return _from_pairs(path, [str(x) for x in data])
    raise DatasetError(f"{path}: expected a list or an object of scenario -> ids")


def _from_pairs(path: Path, items: list[str]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for n, item in enumerate(items, 1):
        scenario, sep, qid = item.rpartition("/")
        if not sep or not scenario or not qid:
            raise DatasetError(f"{path}: entry {n} {item!r} is not <scenario>/<id>")
        out.setdefault(scenario, set()).add(qid)
    return out
