"""CSV reading shared by loaders: clear messages naming the file, row and column."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

from mmsafe.datasets.base import DatasetError, require_file


def read_rows(path: Path, required: list[str], problems: list[str]) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield ``(line_number, row)`` for rows with every required field non-empty; report the others in
    ``problems`` as ``file:line: reason`` and skip them."""
    require_file(path)
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        missing = [c for c in required if c not in header]
        if missing:
            raise DatasetError(
                f"{path}: missing column(s) {', '.join(missing)}; the header has: {', '.join(header) or '(empty file)'}"
            )
        for row in reader:
            line = reader.line_num
            if None in row:  # more fields than the header
                problems.append(f"{path}:{line}: {len(header) + len(row[None])} fields, header has {len(header)}")
                continue
            empty = [c for c in required if not (row.get(c) or "").strip()]
            if empty:
                problems.append(f"{path}:{line}: empty {', '.join(repr(c) for c in empty)}; row skipped")
                continue
            yield line, {k: (v or "").strip() for k, v in row.items()}
