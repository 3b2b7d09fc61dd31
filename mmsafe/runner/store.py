"""Results in SQLite: one row per (dataset, sample, attack, defense, target), verdicts keyed by judge.

WAL journal and one transaction per batch: a process killed at any moment (SIGKILL included) loses only the batch
in flight, and the database stays readable by ``mmsafe report`` while a scan writes to it.
"""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mmsafe.types import NOT_APPLICABLE, Attempt, ImageRef, Response, Row, Sample, Verdict

DB_NAME = "results.sqlite"

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rows (
    id INTEGER PRIMARY KEY,
    dataset TEXT NOT NULL,
    sample_id TEXT NOT NULL,
    attack TEXT NOT NULL,
    defense TEXT NOT NULL,
    target TEXT NOT NULL,
    category TEXT NOT NULL,
    benign INTEGER NOT NULL,
    request TEXT NOT NULL,          -- the dataset's prompt, before the attack
    prompt TEXT,                    -- the text actually sent
    images TEXT NOT NULL,           -- JSON list of {"sha256", "path"} actually sent
    response TEXT,
    error TEXT,
    latency_s REAL,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    details TEXT NOT NULL,          -- JSON: target-specific (OCR text read, batch size, defense decisions)
    metadata TEXT NOT NULL,         -- JSON: the sample's loader fields (e.g. a benign set's "answer")
    sent_metadata TEXT NOT NULL DEFAULT '{}',  -- JSON: the sent sample's fields (key phrase, perturbation norms)
    created_at TEXT NOT NULL,
    UNIQUE (dataset, sample_id, attack, defense, target)
);
CREATE TABLE IF NOT EXISTS verdicts (
    row_id INTEGER NOT NULL REFERENCES rows(id) ON DELETE CASCADE,
    judge TEXT NOT NULL,
    version TEXT NOT NULL,
    label TEXT NOT NULL,
    score REAL,                     -- the judge's raw number, for reading; rates count unsafe/refusal
    refusal INTEGER,
    explanation TEXT NOT NULL,
    unsafe INTEGER,                 -- the judge's decision: attack succeeded; NULL = no decision
    scores_benign INTEGER NOT NULL DEFAULT 0,
    details TEXT NOT NULL DEFAULT '{}',
    error TEXT,                     -- the judge failed on this row
    PRIMARY KEY (row_id, judge)
);
"""

SCHEMA_VERSION = 2

# Run folders written before verdicts carried their own decision (schema 1) gain the new columns; their
# ``unsafe`` is read from the old label and score the way the report used to read them.
MIGRATE_1_TO_2 = """
ALTER TABLE rows ADD COLUMN sent_metadata TEXT NOT NULL DEFAULT '{}';
ALTER TABLE verdicts ADD COLUMN unsafe INTEGER;
ALTER TABLE verdicts ADD COLUMN scores_benign INTEGER NOT NULL DEFAULT 0;
ALTER TABLE verdicts ADD COLUMN details TEXT NOT NULL DEFAULT '{}';
ALTER TABLE verdicts ADD COLUMN error TEXT;
UPDATE verdicts SET unsafe = CASE WHEN score IS NULL THEN NULL WHEN label = 'unsafe' THEN 1
    WHEN label IN ('safe', 'refusal') THEN 0 ELSE score >= 0.5 END;
UPDATE verdicts SET scores_benign = 1 WHERE judge = 'contains' OR judge LIKE 'contains:%' OR judge LIKE 'contains{%';
"""


class Store:
    def __init__(self, run_dir: str | Path) -> None:
        self.dir = Path(run_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / DB_NAME
        self.db = sqlite3.connect(self.path)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")  # with WAL: durable across process crashes
        self.db.execute("PRAGMA foreign_keys=ON")
        self._migrate()
        self.db.executescript(SCHEMA)
        self.set_meta("schema", SCHEMA_VERSION)

    def _migrate(self) -> None:
        cols = {r[1] for r in self.db.execute("PRAGMA table_info(verdicts)")}
        if cols and "unsafe" not in cols:
            with self.db:
                for stmt in MIGRATE_1_TO_2.split(";"):
                    if stmt.strip():
                        self.db.execute(stmt)

    @classmethod
    def open_existing(cls, run_dir: str | Path) -> Store:
        if not (Path(run_dir) / DB_NAME).is_file():
            raise FileNotFoundError(f"{run_dir}: no {DB_NAME} here; is this a folder written by `mmsafe scan --out`?")
        return cls(run_dir)

    def close(self) -> None:
        self.db.close()

    # --- meta -------------------------------------------------------------------------------------------------
    def set_meta(self, key: str, value: Any) -> None:
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    def get_meta(self, key: str, default: Any = None) -> Any:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    # --- rows -------------------------------------------------------------------------------------------------
    def done_keys(self, with_errors: bool = False) -> set[tuple[str, str, str, str, str]]:
        """Keys of the stored rows a resumed scan skips: rows stored with an error are retried (they replace the
        old row) unless ``with_errors``."""
        cur = self.db.execute("SELECT dataset, sample_id, attack, defense, target FROM rows"
                              + ("" if with_errors else " WHERE error IS NULL"))
        return {tuple(r) for r in cur}  # type: ignore[misc]

    def save_image(self, ref: ImageRef) -> dict[str, str | None]:
        """Record an image sent: dataset files keep their path; images made in memory are written once (by hash)
        under ``images/`` in the run folder. An unreadable file is recorded with ``sha256`` None (its row holds
        the error)."""
        if ref.path is not None:
            try:
                sha: str | None = ref.sha256
            except OSError:
                sha = None
            return {"sha256": sha, "path": str(Path(ref.path).resolve())}
        sha = ref.sha256
        rel = Path("images") / sha[:2] / f"{sha}.png"
        dest = self.dir / rel
        if not dest.is_file():
            dest.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=dest.parent, suffix=".part")
            with os.fdopen(fd, "wb") as f:
                f.write(ref.read_bytes())
            os.replace(tmp, dest)
        return {"sha256": sha, "path": str(rel)}

    def write(self, rows: list[Row]) -> None:
        """Insert finished rows and their verdicts in one transaction."""
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        records = []
        for row in rows:
            sent = row.attacked
            images = [self.save_image(im) for im in sent.images] if sent is not None else []
            records.append((row, sent, images))
        with self.db:
            for row, sent, images in records:
                resp = row.response
                cur = self.db.execute(
                    "INSERT OR REPLACE INTO rows (dataset, sample_id, attack, defense, target, category, benign,"
                    " request, prompt, images, response, error, latency_s, prompt_tokens, completion_tokens,"
                    " details, metadata, sent_metadata, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        *row.key,
                        row.sample.category,
                        int(row.sample.benign),
                        row.sample.prompt,
                        sent.prompt if sent is not None else None,
                        json.dumps(images),
                        resp.text if resp is not None else None,
                        row.error or (resp.error if resp is not None else None),
                        resp.latency_s if resp is not None else None,
                        resp.prompt_tokens if resp is not None else None,
                        resp.completion_tokens if resp is not None else None,
                        json.dumps(resp.details if resp is not None else {}, default=str),
                        json.dumps(row.sample.metadata, default=str),
                        json.dumps(sent.metadata if sent is not None else {}, default=str),
                        now,
                    ),
                )
                self._write_verdicts(cur.lastrowid, row.verdicts)

    def _write_verdicts(self, row_id: int | None, verdicts: list[Verdict]) -> None:
        self.db.executemany(
            "INSERT OR REPLACE INTO verdicts (row_id, judge, version, label, score, refusal, explanation, unsafe,"
            " scores_benign, details, error) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            [
                (row_id, v.judge, v.version, v.label, v.score, _int(v.refusal), v.explanation, _int(v.unsafe),
                 int(v.scores_benign), json.dumps(v.details, default=str), v.error)
                for v in verdicts
            ],
        )

    def add_verdicts(self, items: list[tuple[int, list[Verdict]]]) -> None:
        """``(row_id, verdicts)`` pairs for rows judged after the fact (a judge added on resume)."""
        with self.db:
            for row_id, verdicts in items:
                self._write_verdicts(row_id, verdicts)

    def unjudged(self, judge: str, version: str) -> list[dict[str, Any]]:
        """Rows without an error that have no verdict from this version of ``judge`` yet, or one where it failed: a
        retrained judge re-judges the stored answers instead of mixing its verdicts with its predecessor's."""
        return [self._decode(r) | {"verdicts": {}} for r in self.db.execute(
            "SELECT * FROM rows WHERE error IS NULL AND id NOT IN (SELECT row_id FROM verdicts WHERE judge = ?"
            " AND version = ? AND error IS NULL) ORDER BY id", (judge, version))]

    def attempt(self, row: dict[str, Any]) -> Attempt:
        """What the judges saw of a stored row, rebuilt: the dataset's request, the sample sent (its images read
        from where they were stored) and the response; re-judging gives a judge the same inputs as the first pass."""
        request = Sample(id=row["sample_id"], prompt=row["request"], category=row["category"], source=row["dataset"],
                         benign=row["benign"], metadata=row["metadata"])
        images = tuple(ImageRef(path=self.dir / im["path"]) for im in row["images"])  # absolute paths stay as they are
        sent = request.with_(prompt=row["prompt"] if row["prompt"] is not None else row["request"], images=images,
                             metadata=row["sent_metadata"] or row["metadata"])
        return Attempt(request, sent, Response(text=row["response"] or "", details=row["details"]))

    def rows(self, **where: str) -> Iterator[dict[str, Any]]:
        """Every row as a dict, with ``verdicts`` keyed by judge name; optional equality filters on row columns."""
        cols = {"dataset", "sample_id", "attack", "defense", "target", "category"}
        bad = set(where) - cols
        if bad:
            raise ValueError(f"cannot filter on {', '.join(bad)}; filterable: {', '.join(sorted(cols))}")
        clause = " AND ".join(f"{k} = ?" for k in where)
        sql = "SELECT * FROM rows" + (f" WHERE {clause}" if clause else "") + " ORDER BY id"
        verdicts: dict[int, dict[str, dict[str, Any]]] = {}
        # n/a verdicts (a judge outside its scope) are left out: every metric then reads the row as unjudged by it
        for v in self.db.execute("SELECT * FROM verdicts WHERE label != ?", (NOT_APPLICABLE,)):
            verdicts.setdefault(v["row_id"], {})[v["judge"]] = {
                "version": v["version"],
                "label": v["label"],
                "unsafe": _bool(v["unsafe"]),
                "refusal": _bool(v["refusal"]),
                "score": v["score"],
                "scores_benign": bool(v["scores_benign"]),
                "details": json.loads(v["details"]),
                "explanation": v["explanation"],
                "error": v["error"],
            }
        for r in self.db.execute(sql, tuple(where.values())):
            yield self._decode(r) | {"verdicts": verdicts.get(r["id"], {})}

    @staticmethod
    def _decode(r: sqlite3.Row) -> dict[str, Any]:
        d = dict(r)
        d["benign"] = bool(d["benign"])
        for k in ("images", "details", "metadata", "sent_metadata"):
            d[k] = json.loads(d[k])
        return d


def _int(b: bool | None) -> int | None:
    return None if b is None else int(b)


def _bool(i: int | None) -> bool | None:
    return None if i is None else bool(i)
