"""mmsafe export to JSON lines, CSV and Parquet, with the images sent copied next to the export, from a store written
through the real Store API."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from mmsafe.cli.main import app
from mmsafe.runner.store import Store
from mmsafe.types import ImageRef, Response, Row, Sample, Verdict


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, list[dict]]:
    base = tmp_path_factory.mktemp("export")
    dataset_image = base / "data" / "photo.JPG"
    dataset_image.parent.mkdir()
    Image.new("RGB", (40, 30), (10, 200, 30)).save(dataset_image, format="JPEG")
    gone = base / "data" / "moved.png"
    Image.new("RGB", (8, 8), (1, 2, 3)).save(gone)
    rows = []
    for i, (attack, images) in enumerate((
        ("none", (ImageRef(path=dataset_image),)),
        ("figstep", (ImageRef.from_pil(Image.new("RGB", (20, 20), (200, 0, 0))),)),
        ("none", ()),
        ("none", (ImageRef(path=gone),)),
    )):
        s = Sample(id=f"s{i}", prompt=f"q{i}, with \"quotes\" and a\nnewline", category="c", benign=i == 2)
        row = Row("mini", s, attack, "none", "t", attacked=s.with_(images=images),
                  response=Response(text=f"answer {i}", latency_s=0.5 + i, prompt_tokens=10 + i, completion_tokens=i,
                                    details={"defenses": [{"defense": "jpeg", "action": "pass"}]}))
        row.verdicts = [Verdict("keywords", "1", i % 2 == 0, i % 2 == 1, float(i % 2 == 0), "x" if i else "y")]
        if i != 1:  # a judge that scored only some rows: empty cells elsewhere
            row.verdicts.append(Verdict("classifier", "2", None, True, None, "unscored", error="timeout"))
        rows.append(row)
    store = Store(base / "run")
    store.write(rows)
    stored = list(store.rows())
    store.close()
    gone.unlink()
    return base, stored


def _export(args: list[str]):
    res = CliRunner().invoke(app, ["export", *args])
    assert res.exit_code == 0, res.output
    return res


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_jsonl_with_images_next_to_it(run, tmp_path):
    base, rows = run
    out = tmp_path / "export" / "rows.jsonl"
    out.parent.mkdir()
    res = _export([str(base / "run"), "--format", "jsonl", "-o", str(out), "--images", str(out.parent / "images")])
    assert "moved.png" in res.output and "keeps its stored path" in res.output  # named, and the export goes on
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["sample_id"] for r in records] == [r["sample_id"] for r in rows]
    copied = [im for r in records for im in r["images"] if not im["path"].endswith("moved.png")]
    assert len(copied) == 2
    for im in copied:
        assert not Path(im["path"]).is_absolute() and im["path"].startswith("images/")
        assert _sha(out.parent / im["path"]) == im["sha256"]
    assert records[0]["images"][0]["path"].endswith(".jpg")  # suffix kept (lower-cased)
    assert records[3]["images"][0]["path"] == str((base / "data" / "moved.png").resolve())
    assert records[0]["verdicts"]["keywords"]["unsafe"] is True and records[0]["defenses"][0]["action"] == "pass"


def test_csv_is_flat_with_a_column_per_judge_field(run, tmp_path):
    base, rows = run
    out = tmp_path / "rows.csv"
    _export([str(base / "run"), "-f", "csv", "-o", str(out)])
    with out.open(newline="", encoding="utf-8") as f:
        table = list(csv.DictReader(f))
    assert len(table) == len(rows)
    for r, rec in zip(rows, table):
        assert rec["prompt"] == r["prompt"]  # quotes and newlines survive
        assert json.loads(rec["images"]) == [im["path"] for im in r["images"]]
        assert rec["keywords.label"] == r["verdicts"]["keywords"]["label"]
        assert rec["keywords.unsafe"] == str(r["verdicts"]["keywords"]["unsafe"])
        assert rec["latency_s"] == str(r["latency_s"])
    assert table[1]["classifier.label"] == "" and table[0]["classifier.error"] == "timeout"


def test_parquet_keeps_types(run, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    base, rows = run
    out = tmp_path / "rows.parquet"
    _export([str(base / "run"), "-f", "parquet", "-o", str(out), "--images", str(tmp_path / "img")])
    table = pq.read_table(out)
    assert table.num_rows == len(rows)
    types = {f.name: f.type for f in table.schema}
    assert types["benign"] == pa.bool_() and types["latency_s"] == pa.float64() and types["prompt_tokens"] == pa.int64()
    assert types["images"] == pa.list_(pa.string()) and types["keywords.unsafe"] == pa.bool_()
    data = table.to_pylist()
    assert [d["benign"] for d in data] == [r["benign"] for r in rows]
    assert [d["keywords.score"] for d in data] == [r["verdicts"]["keywords"]["score"] for r in rows]
    assert data[1]["classifier.unsafe"] is None and data[0]["classifier.refusal"] is True
    assert all((tmp_path / p).is_file() for d in data[:3] for p in d["images"])


def test_bad_requests_say_what_to_do(run, tmp_path):
    base, _ = run
    res = CliRunner().invoke(app, ["export", str(base / "run"), "-f", "parquet"])
    assert res.exit_code == 2 and "--output" in res.output
    res = CliRunner().invoke(app, ["export", str(base / "run"), "-f", "xml"])
    assert res.exit_code == 2 and "jsonl, csv, parquet" in res.output
    res = CliRunner().invoke(app, ["export", str(tmp_path / "nothing"), "-f", "csv"])
    assert res.exit_code == 2 and "no results.sqlite" in res.output
