"""Where a scan's chunks run. The scan plans the chunks and writes every finished one to its store; an executor
only runs them, each through ``Worker.run``, and hands back each ``Done`` as it finishes (in any order).

``local`` (the default) runs them in this process with the scan's own components; ``ray`` (``ray_executor``) sends
each chunk to a Ray cluster as one task.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol

from mmsafe.runner.work import Chunk, Done, Worker

if TYPE_CHECKING:
    from mmsafe.config import ScanConfig


class Executor(Protocol):
    def run(self, chunks: list[Chunk], worker: Worker) -> Iterator[Done]:
        """Every chunk's ``Done``; ``worker`` holds the scan's components and the ``Recipe`` they were built from."""
        ...


class LocalExecutor:
    """Chunks one after another in this process, in plan order (one target's rows, then the next's)."""

    def run(self, chunks: list[Chunk], worker: Worker) -> Iterator[Done]:
        for chunk in chunks:
            yield worker.run(chunk)


def executor_for(config: ScanConfig) -> Executor:
    if config.executor == "ray":
        from mmsafe.runner.ray_executor import RayExecutor

        return RayExecutor(config.ray_address)
    return LocalExecutor()
