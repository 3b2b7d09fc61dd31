"""What every registered component (dataset, attack, defense, target, judge) shares: a lifecycle, and the
declarations the contract test reads.

Building a component never loads a model: ``mmsafe list``, configuring a scan and the contract test stay fast.
Models are loaded in ``load()`` (or on first use) through ``mmsafe.models.MODEL_CACHE``, and ``close()`` gives them back,
so a model several components name is loaded once and dropped when the last of them closes.
"""

from __future__ import annotations

from typing import Any


class Component:
    # Why the component cannot be built from its defaults alone, e.g. "a path to the dataset"; None when it can.
    needs_args: str | None = None

    def close(self) -> None:
        """Release what the component holds (model leases, built sub-components); safe to call twice."""

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Loadable(Component):
    """A component that may hold models: ``load()`` takes them (idempotent), ``close()`` gives them back."""

    def load(self) -> None:
        """Load models or open connections ahead of first use; components that need none do nothing."""

    def __enter__(self) -> Any:
        self.load()
        return self
