"""Batched calls that survive one bad row: the one copy of the batch-then-row-by-row retry."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def each_or_alone(items: Sequence[T], run: Callable[[list[T]], list[R]]) -> list[R | Exception]:
    """``run`` over all ``items`` in one call; if that call fails, over each item alone, and an item that still
    fails yields its exception in its place. One bad sample (an odd image, a prompt over the context) must not cost
    its batch-mates their answers."""
    try:
        return list(run(list(items)))
    except Exception as e:  # noqa: BLE001 - which row broke the batch is found by running them one by one
        if len(items) == 1:  # a lone item has been run alone already: no second call
            return [e]
        out: list[R | Exception] = []
        for item in items:
            try:
                out.extend(run([item]))
            except Exception as err:  # noqa: BLE001
                out.append(err)
        return out


def in_batches(items: Sequence[T], size: int, run: Callable[[list[T]], list[R]]) -> list[R | Exception]:
    """``each_or_alone`` over consecutive batches of ``size`` items."""
    size = max(1, size)
    return [out for start in range(0, len(items), size) for out in each_or_alone(items[start:start + size], run)]
