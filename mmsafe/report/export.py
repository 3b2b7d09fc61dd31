"""Machine-readable export of a run: JSON lines (nested, one object per row), CSV or Parquet (flat: one column per
judge field), with the images sent optionally copied next to the export."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
from collections.abc import Callable, Iterable, Iterator
from hashlib import sha256
from pathlib import Path
from typing import Any, TextIO

from mmsafe.images import IMAGE_SUFFIXES
from mmsafe.metrics.agreement import judge_names

FORMATS = ("jsonl", "csv", "parquet")
# Each judge's verdict becomes these columns, named "<judge>.<field>", in the flat formats.
VERDICT_FIELDS = ("label", "unsafe", "refusal", "score", "version", "explanation", "error")
FLAT_TYPES = {  # column -> Parquet type name (pyarrow); CSV writes the same columns as text
    "sample_id": "string", "dataset": "string", "category": "string", "benign": "bool", "target": "string",
    "attack": "string", "defense": "string", "request": "string", "prompt": "string", "images": "list",
    "image_sha256": "list", "response": "string", "error": "string", "defenses": "string", "latency_s": "float64",
    "prompt_tokens": "int64", "completion_tokens": "int64",
}
VERDICT_TYPES = {"label": "string", "unsafe": "bool", "refusal": "bool", "score": "float64", "version": "string",
                 "explanation": "string", "error": "string"}


def export_records(rows: Iterable[dict[str, Any]], image_paths: dict[str, str] | None = None
                   ) -> Iterator[dict[str, Any]]:
    """One nested record per row; ``image_paths`` maps a stored image path to where it was exported."""
    for r in rows:
        images = [im | {"path": (image_paths or {}).get(im["path"], im["path"])} for im in r["images"]]
        yield {
            "sample_id": r["sample_id"],
            "dataset": r["dataset"],
            "category": r["category"],
            "benign": r["benign"],
            "target": r["target"],
            "attack": r["attack"],
            "defense": r["defense"],
            "request": r["request"],
            "prompt": r["prompt"],
            "images": images,
            "response": r["response"],
            "verdicts": r["verdicts"],
            "error": r["error"],
            "defenses": (r["details"] or {}).get("defenses", []),  # each defense's decision: action, reason, seconds
            "latency_s": r["latency_s"],
            "prompt_tokens": r["prompt_tokens"],
            "completion_tokens": r["completion_tokens"],
        }


def flat_records(rows: list[dict[str, Any]], image_paths: dict[str, str] | None = None
                 ) -> tuple[list[str], Iterator[dict[str, Any]]]:
    """The columns, and one flat record per row: the nested defense decisions as JSON text, image paths and hashes
    as lists, and ``<judge>.<field>`` for every judge of the run (empty where a row has no verdict from it)."""
    judges = judge_names(rows)
    columns = [*FLAT_TYPES, *(f"{j}.{f}" for j in judges for f in VERDICT_FIELDS)]

    def records() -> Iterator[dict[str, Any]]:
        for rec in export_records(rows, image_paths):
            verdicts = rec.pop("verdicts")
            flat = rec | {"images": [im["path"] for im in rec["images"]],
                          "image_sha256": [im["sha256"] for im in rec["images"]],
                          "defenses": json.dumps(rec["defenses"], ensure_ascii=False, default=str)}
            for j in judges:
                v = verdicts.get(j) or {}
                flat.update({f"{j}.{f}": v.get(f) for f in VERDICT_FIELDS})
            yield flat

    return columns, records()


def write_jsonl(rows: Iterable[dict[str, Any]], out: TextIO, image_paths: dict[str, str] | None = None) -> int:
    n = 0
    for rec in export_records(rows, image_paths):
        out.write(json.dumps(rec, ensure_ascii=False) + "\n")
        n += 1
    return n


def write_csv(rows: list[dict[str, Any]], out: TextIO, image_paths: dict[str, str] | None = None) -> int:
    """Lists (image paths, hashes) are written as JSON text; an empty cell is a missing value."""
    columns, records = flat_records(rows, image_paths)
    writer = csv.DictWriter(out, fieldnames=columns)
    writer.writeheader()
    n = 0
    for rec in records:
        writer.writerow({k: json.dumps(v) if isinstance(v, list) else v for k, v in rec.items()})
        n += 1
    return n


def write_parquet(rows: list[dict[str, Any]], path: Path, image_paths: dict[str, str] | None = None) -> int:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as e:
        raise ImportError("Parquet export needs pyarrow: pip install 'mmsafe[parquet]'") from e
    columns, records = flat_records(rows, image_paths)
    kinds = {"string": pa.string(), "bool": pa.bool_(), "float64": pa.float64(), "int64": pa.int64(),
             "list": pa.list_(pa.string())}
    schema = pa.schema([(c, kinds[FLAT_TYPES.get(c) or VERDICT_TYPES[c.rsplit(".", 1)[1]]]) for c in columns])
    table = pa.Table.from_pylist(list(records), schema=schema)
    pq.write_table(table, path)
    return table.num_rows


def export_images(rows: Iterable[dict[str, Any]], run_dir: Path, dest: Path, relative_to: Path | None = None,
                  on_problem: Callable[[str], None] = lambda msg: None) -> dict[str, str]:
    """Copy every image the rows sent into ``dest`` (one file per content hash, keeping its suffix) and return each
    stored path's new path, relative to ``relative_to`` (the export file's folder) when given. An image that cannot be
    read is reported and keeps its stored path."""
    dest.mkdir(parents=True, exist_ok=True)
    out: dict[str, str] = {}
    for r in rows:
        for im in r["images"]:
            stored = im["path"]
            if stored in out:
                continue
            source = run_dir / stored  # dataset images are stored by absolute path, attack images under the run
            # Named by what the store computed, never by stored text: a shared store's path must not pick the file.
            sha = im["sha256"] if re.fullmatch(r"[0-9a-f]{64}", im["sha256"] or "") else \
                sha256(stored.encode()).hexdigest()
            suffix = Path(stored).suffix.lower()
            name = sha + (suffix if suffix in IMAGE_SUFFIXES else ".img")
            try:
                if not (dest / name).is_file():
                    shutil.copyfile(source, dest / name)
            except OSError as e:
                on_problem(f"{source}: image not exported ({e.strerror or e}); the export keeps its stored path")
                continue
            target = dest / name
            out[stored] = os.path.relpath(target, relative_to) if relative_to is not None else str(target)
    return out
