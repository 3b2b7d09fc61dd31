"""Run a scan's chunks on Ray: one remote task per chunk, the driver writing each finished chunk to the store.

Each task builds a ``Worker`` from the scan's ``Recipe`` (specs only) and keeps it in its worker process, so a
process loads each model once and, like the local executor, holds one target's models at a time. Chunks are sent
in plan order (target by target) with a bounded number in flight, so each worker process moves through the targets
in order. The samples travel with the chunks; images given by path must be readable on the workers (a shared
filesystem), and mmsafe must be installed there. Ray is optional: ``pip install 'mmsafe[ray]'``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from itertools import islice
from typing import Any

from mmsafe.runner.work import Chunk, Done, Recipe, Worker

# A local instance started here: small, because the tasks' models live in the worker processes' own memory.
LOCAL_OBJECT_STORE = 200 * 1024**2
IN_FLIGHT_PER_CPU = 2  # keeps every worker busy while the driver writes, without queueing the whole plan

_cached: tuple[Recipe, Worker] | None = None  # per worker process: the components survive between tasks


def run_chunk(recipe: Recipe, chunk: Chunk) -> Done:
    """The remote task: ``chunk`` through this process's ``Worker`` for ``recipe`` (built on first use)."""
    global _cached
    if _cached is None or _cached[0] != recipe:
        if _cached is not None:
            _cached[1].close()
        _cached = (recipe, Worker(recipe))
    return _cached[1].run(chunk)


def import_ray() -> Any:
    try:
        import ray
    except ImportError as e:
        raise ImportError("the ray executor needs Ray: pip install 'mmsafe[ray]'") from e
    return ray


class RayExecutor:
    """``address``: ``ray://host:port`` (Ray Client), ``auto`` (the cluster this machine belongs to), or ``None``: a
    Ray already initialised in this process, else a local instance started here (one worker per CPU) and shut down
    when the scan ends. ``task_cpus``: CPUs each task reserves."""

    def __init__(self, address: str | None = None, task_cpus: float = 1) -> None:
        self.address = address
        self.task_cpus = task_cpus

    def _connect(self, ray: Any) -> bool:
        """Connect or start Ray; True when this call started it (and must shut it down)."""
        if ray.is_initialized():
            return False
        if self.address is None:
            ray.init(num_cpus=os.cpu_count(), object_store_memory=LOCAL_OBJECT_STORE, include_dashboard=False,
                     logging_level=logging.WARNING, log_to_driver=False)
        else:
            ray.init(address=self.address, logging_level=logging.WARNING, log_to_driver=False)
        return True

    def run(self, chunks: list[Chunk], worker: Worker) -> Iterator[Done]:
        if worker.given:
            raise ValueError("a target passed as an object runs in this process only: use the local executor")
        if not chunks:
            return
        ray = import_ray()
        started = self._connect(ray)
        try:
            task = ray.remote(num_cpus=self.task_cpus)(run_chunk)
            recipe = ray.put(worker.recipe)
            limit = max(1, IN_FLIGHT_PER_CPU * int(ray.cluster_resources().get("CPU", 1)))
            queue = iter(chunks)
            in_flight = [task.remote(recipe, c) for c in islice(queue, limit)]
            while in_flight:
                ready, in_flight = ray.wait(in_flight, num_returns=1)
                in_flight += [task.remote(recipe, c) for c in islice(queue, 1)]
                yield ray.get(ready[0])
        finally:
            if started:
                ray.shutdown()
