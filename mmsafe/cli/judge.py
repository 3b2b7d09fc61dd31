"""``mmsafe judge``: run any judge on your own (prompt, response) pairs, or measure a judge against labelled data.

Every judge decides ``refusal`` and ``unsafe`` itself (the keyword judge's unsafe = not refused, its definition);
these commands compare those decisions with the labels.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from mmsafe.cli.output import fail, warn
from mmsafe.types import Attempt, ImageRef, Response, Sample, Verdict

app = typer.Typer(
    help="Judge (prompt, response) pairs from a JSONL file, or score a judge against labelled data "
         "(accuracy, precision, recall, F1, Cohen's kappa with bootstrap 95% CIs).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console(markup=False)  # stdout carries user text (answers, file names, YAML): never markup
err = Console(stderr=True)

TASKS = ("refusal", "unsafe")
BATCH = 64
JudgeOpt = Annotated[str, typer.Option("--judge", "-j", help="A judge spec: keywords, keywords:gcg, classifier, ...")]


@dataclass
class Item:
    line: int
    record: dict[str, Any]
    sample: Sample
    response: Response
    labels: dict[str, bool] = field(default_factory=dict)


def read_items(path: Path, need_labels: bool = False) -> Iterator[Item | str]:
    """Each line of ``path`` as an ``Item``, or as a problem message ``FILE:LINE: reason`` for a bad line.

    Lines need string ``prompt`` and ``response``; ``image`` (optional) is a path, relative to the file's folder.
    With ``need_labels``, a line also needs a boolean ``refusal`` and/or ``unsafe``."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: cannot read ({e})") from e
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            yield f"{path}:{n}: not valid JSON ({e.msg})"
            continue
        if not isinstance(rec, dict):
            yield f"{path}:{n}: expected a JSON object, got {type(rec).__name__}"
            continue
        bad = [k for k in ("prompt", "response") if not isinstance(rec.get(k), str)]
        if bad:
            yield f"{path}:{n}: field {bad[0]!r} is missing or not a string"
            continue
        image = rec.get("image")
        if image is not None and not isinstance(image, str):
            yield f"{path}:{n}: field 'image' must be a path string"
            continue
        labels = {t: rec[t] for t in TASKS if t in rec}
        wrong = [t for t, v in labels.items() if not isinstance(v, bool)]
        if wrong:
            yield f"{path}:{n}: field {wrong[0]!r} must be true or false, got {labels[wrong[0]]!r}"
            continue
        if need_labels and not labels:
            yield f"{path}:{n}: no label: give 'refusal' and/or 'unsafe' as true/false"
            continue
        label = [k for k in ("benign", "harmful_request") if k in rec and not isinstance(rec[k], bool)]
        if label:
            yield f"{path}:{n}: field {label[0]!r} must be true or false, got {rec[label[0]]!r}"
            continue
        # the request's label, as datasets give it; none means harmful, the datasets' default too
        benign = rec["benign"] if "benign" in rec else not rec.get("harmful_request", True)
        images = (ImageRef(path=path.parent / image),) if image else ()
        sample = Sample(id=str(rec.get("id", n)), prompt=rec["prompt"], images=images, benign=benign)
        yield Item(n, rec, sample, Response(text=rec["response"]), labels)


def decisions(v: Verdict) -> dict[str, bool | None]:
    """``{"refusal", "unsafe"}``: the verdict's own decisions; None where the judge could not decide."""
    return {"refusal": v.refusal, "unsafe": v.unsafe}


def _build(spec: str) -> Any:
    from mmsafe.judges import judges
    from mmsafe.registry import ComponentError, UnknownComponent

    try:
        return judges.build(spec)
    except (UnknownComponent, ComponentError, ImportError) as e:
        fail(str(e))


def _judge_all(judge: Any, items: list[Item]) -> list[Verdict]:
    out: list[Verdict] = []
    for i in range(0, len(items), BATCH):
        chunk = items[i: i + BATCH]
        out += judge.judge([Attempt.of(it.sample, it.response) for it in chunk])
    return out


def _load(path: Path, need_labels: bool) -> list[Item]:
    items: list[Item] = []
    try:
        for it in read_items(path, need_labels):
            if isinstance(it, str):
                warn(f"{it}; line skipped")
            else:
                items.append(it)
    except ValueError as e:
        fail(str(e))
    return items


@app.command("run")
def run(
    judge: JudgeOpt,
    input: Annotated[Path, typer.Option("--input", "-i", help="JSONL with 'prompt', 'response' and optional 'image' and 'benign' (true for a harmless request; without it the request counts as harmful, as in datasets) per line.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="JSONL to write: each input line plus judge, label, refusal, unsafe, score.")],
) -> None:
    """Judge every line of a JSONL file and write it back with the verdict. Bad lines are reported and skipped."""
    j = _build(judge)
    items = _load(input, need_labels=False)
    verdicts = _judge_all(j, items)
    with output.open("w", encoding="utf-8") as f:
        for it, v in zip(items, verdicts):
            rec = dict(it.record, judge=v.judge, judge_version=v.version, label=v.label, score=v.score,
                       details=v.details, error=v.error, **decisions(v))
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    err.print(f"{len(items)} lines judged by {j.name} -> {output}", highlight=False)


def _report_table(task: str, judge: str, rep: dict[str, Any], skipped: int) -> Table:
    c = rep["confusion"]
    table = Table("statistic", "value", "95% CI", title=f"{task}: {judge} vs labels (n={rep['n']})",
                  caption=f"confusion: tp {c['tp']}  fp {c['fp']}  fn {c['fn']}  tn {c['tn']}"
                          + (f"  ({skipped} rows unscored by the judge, left out)" if skipped else ""))
    for name in ("accuracy", "precision", "recall", "f1", "kappa"):
        s = rep[name]
        table.add_row(name, f"{s.value:.3f}", f"[{s.low:.3f}, {s.high:.3f}]")
    return table


@app.command("eval")
def eval_(
    judge: JudgeOpt,
    labels: Annotated[Optional[Path], typer.Option("--labels", "-l", help="JSONL with 'prompt', 'response' and boolean 'refusal' and/or 'unsafe'. \\[default: mmsafe's packaged labels, test split]")] = None,
    split: Annotated[Optional[str], typer.Option("--split", help="Only rows whose 'split' field has this value. \\[default: test for the packaged labels, all rows otherwise]")] = None,
    by: Annotated[Optional[str], typer.Option("--by", help="Also report each value of this field separately, e.g. source or kind.")] = None,
    where: Annotated[Optional[list[str]], typer.Option("--where", help="Only rows whose FIELD has VALUE (FIELD=VALUE), or not (FIELD!=VALUE); repeatable; true/false/numbers as JSON.")] = None,
    save_errors: Annotated[Optional[Path], typer.Option("--save-errors", help="Write the judge's unsafe-decision confusion counts on these rows to this JSON file, for mmsafe report --judge-errors (ASR corrected for judge error). Measure on harmful requests only (e.g. --where benign=false), the rows ASR counts.")] = None,
    source: Annotated[Optional[str], typer.Option("--source", help="Only rows whose 'source' field starts with this, e.g. xstest or xstest:gpt4.")] = None,
) -> None:
    """Score a judge against labelled responses: per task (refusal, unsafe), accuracy, precision, recall, F1 and
    Cohen's kappa with bootstrap 95% CIs, and the confusion matrix."""
    from mmsafe.judges.classifier import LABELS
    from mmsafe.metrics.classification import binary_report
    from mmsafe.metrics.corrected import JudgeErrors, save_judge_errors

    if labels is None:
        labels, split = LABELS, split or "test"
    items = _load(labels, need_labels=True)
    if split is not None:
        items = [it for it in items if it.record.get("split") == split]
    for cond in where or []:
        key, sep, raw = cond.partition("=")
        negate = key.endswith("!")
        key = key.removesuffix("!")
        if not sep or not key:
            fail(f"--where {cond!r}: expected FIELD=VALUE or FIELD!=VALUE")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        items = [it for it in items if (it.record.get(key) == value) != negate]
    if source is not None:
        items = [it for it in items if str(it.record.get("source", "")).startswith(source)]
    if not items:
        fail(f"{labels}: no labelled rows" + (f" in split {split!r}" if split else "")
             + (f" from source {source!r}" if source else ""))
    j = _build(judge)
    verdicts = _judge_all(j, items)
    console.print(f"{j.name} (version {j.version}) on {labels}" + (f", split {split}" if split else "")
                  + (f", source {source}*" if source else "") + f": {len(items)} rows", highlight=False)
    groups: dict[str, list[int]] = {"": list(range(len(items)))}
    if by is not None:
        for i, it in enumerate(items):
            groups.setdefault(f"{by}={it.record.get(by)}", []).append(i)
    for task in TASKS:
        for group, idx in groups.items():
            pairs = [(items[i].labels[task], decisions(verdicts[i])[task]) for i in idx if task in items[i].labels]
            if not pairs:
                continue
            scored = [(t, p) for t, p in pairs if p is not None]
            if not scored:
                warn(f"{task}{' ' + group if group else ''}: the judge scored none of the {len(pairs)} labelled rows")
                continue
            rep = binary_report([t for t, _ in scored], [p for _, p in scored])
            console.print(_report_table(task + (f" ({group})" if group else ""), j.name, rep, len(pairs) - len(scored)))
            if task == "unsafe" and not group and save_errors is not None:
                c = rep["confusion"]
                what = f"{labels.name}" + "".join(f", {w}" for w in ([f"split={split}"] if split else []) + (where or []))
                save_judge_errors(save_errors, [JudgeErrors(j.name, j.version, c["tp"], c["fn"], c["tn"], c["fp"],
                                                            what)])
                err.print(f"unsafe-decision error counts of {j.name} saved to {save_errors}", highlight=False)
