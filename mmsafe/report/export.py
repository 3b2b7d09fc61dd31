"""Machine-readable export of a run: one JSON object per row."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

FORMATS = ("jsonl",)


def export_records(rows: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for r in rows:
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
            "images": r["images"],
            "response": r["response"],
            "verdicts": r["verdicts"],
            "error": r["error"],
            "defenses": (r["details"] or {}).get("defenses", []),  # each defense's decision: action, reason, seconds
            "latency_s": r["latency_s"],
            "prompt_tokens": r["prompt_tokens"],
            "completion_tokens": r["completion_tokens"],
        }


def write_jsonl(rows: Iterable[dict[str, Any]], out: TextIO) -> int:
    n = 0
    for rec in export_records(rows):
        out.write(json.dumps(rec, ensure_ascii=False) + "\n")
        n += 1
    return n
