"""The guard proxy's audit log: one SQLite row per request (who, which model, every defense decision, blocked or
rewritten, latency, the upstream's status), images as SHA-256 hashes unless the images themselves are asked for.

Rows are queued and written by one background thread in batches, so a request never waits on the disk; ``flush``
waits for what was queued (tests); ``close`` writes the rest. WAL journal: a reader (``sqlite3 audit.sqlite``)
never blocks the writer.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

COLUMNS = ("id", "time", "client", "model", "stream", "status", "outcome", "blocked", "rewritten", "decisions",
           "latency_s", "defense_s", "upstream_status", "upstream_s", "prompt_sha256", "images", "sent_images",
           "error")
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS requests (
  id TEXT PRIMARY KEY, time REAL, client TEXT, model TEXT, stream INTEGER, status INTEGER, outcome TEXT,
  blocked INTEGER, rewritten INTEGER, decisions TEXT, latency_s REAL, defense_s REAL, upstream_status INTEGER,
  upstream_s REAL, prompt_sha256 TEXT, images TEXT, sent_images TEXT, error TEXT
);
CREATE INDEX IF NOT EXISTS requests_time ON requests(time);
CREATE TABLE IF NOT EXISTS images (sha256 TEXT PRIMARY KEY, data BLOB);
"""
JSON_COLUMNS = ("decisions", "images", "sent_images")
log = logging.getLogger("mmsafe.guard")


class AuditLog:
    """``record(entry, images)`` queues one request's row (``entry``: the ``COLUMNS`` it has; ``images``: bytes by
    hash, stored only when the log was opened with ``keep_images``)."""

    def __init__(self, path: str | Path, keep_images: bool = False, every_s: float = 0.05) -> None:
        self.path, self.keep_images, self.every_s = Path(path), keep_images, every_s
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with sqlite3.connect(self.path) as db:  # created here, so a bad path fails at startup, not in the thread
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)
        db.close()
        # A deque the writer drains every ``every_s``, not a queue.Queue: waking the writer on every row would
        # cost the serving thread a thread switch per request.
        self.pending: deque[tuple[tuple[Any, ...], dict[str, bytes] | None]] = deque()
        self.queued = self.written = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._write, name="mmsafe-audit", daemon=True)
        self.thread.start()

    def record(self, entry: dict[str, Any], images: dict[str, bytes] | None = None) -> None:
        row = tuple(json.dumps(entry.get(c), default=str) if c in JSON_COLUMNS else entry.get(c) for c in COLUMNS)
        self.pending.append((row, images if self.keep_images else None))
        self.queued += 1

    def flush(self) -> None:
        """Wait until every row recorded so far is written."""
        target = self.queued
        while self.written < target and self.thread.is_alive():
            time.sleep(self.every_s / 5)

    def close(self) -> None:
        self.stopping.set()
        self.thread.join()

    def _write(self) -> None:
        db = sqlite3.connect(self.path)
        db.execute("PRAGMA synchronous=NORMAL")
        insert = f"INSERT OR REPLACE INTO requests ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
        try:
            while True:
                stop = self.stopping.wait(self.every_s)
                rows = [self.pending.popleft() for _ in range(len(self.pending))]
                if rows:
                    try:
                        with db:  # one transaction for all that came in meanwhile
                            db.executemany(insert, [row for row, _ in rows])
                            db.executemany("INSERT OR IGNORE INTO images (sha256, data) VALUES (?, ?)",
                                           [kv for _, images in rows for kv in (images or {}).items()])
                    except sqlite3.Error as e:  # a full disk must not stop the proxy; say what was lost
                        log.error("audit log %s: %d rows not written: %s", self.path, len(rows), e)
                    self.written += len(rows)
                if stop and not self.pending:
                    return
        finally:
            db.close()


def read_audit(path: str | Path) -> list[dict[str, Any]]:
    """Every row of an audit log, oldest first, its JSON columns decoded."""
    db = sqlite3.connect(Path(path))
    db.row_factory = sqlite3.Row
    try:
        rows = [dict(r) for r in db.execute("SELECT * FROM requests ORDER BY time")]
    finally:
        db.close()
    for r in rows:
        for c in JSON_COLUMNS:
            r[c] = json.loads(r[c]) if r[c] is not None else None
    return rows
