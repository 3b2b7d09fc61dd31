"""Fault injection for ``mmsafe serve-model``: a share of requests fail the way real servers fail, so clients'
retries and error rows can be tested against a real HTTP server.

Deterministic: whether an attempt fails, and how, is a hash of the seed, the request body and how many times this
server has seen that body. The same scan against a fresh server meets the same faults, and a retry (a later
attempt) draws again, so it can succeed.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field

KINDS = ("500", "429", "stall", "drop")


@dataclass
class Faults:
    """``rate``: the share of attempts that fail; ``kinds``: which failures, drawn evenly: ``500`` (an internal
    error), ``429`` (rate limited, with ``Retry-After: retry_after_s``), ``stall`` (the answer comes after
    ``stall_s``, past a client's timeout), ``drop`` (the connection closes mid-response)."""

    rate: float = 0.0
    kinds: tuple[str, ...] = KINDS
    seed: int = 0
    retry_after_s: float = 1.0
    stall_s: float = 30.0
    # Each attempt at a body, by its hash: (when, the fault it met or None). The attempt counter, and how tests
    # check a client's backoff.
    arrivals: defaultdict[str, list[tuple[float, str | None]]] = field(default_factory=lambda: defaultdict(list))
    injected: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"fault rate must be between 0 and 1, got {self.rate}")
        unknown = set(self.kinds) - set(KINDS)
        if unknown or not self.kinds:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}; known: {', '.join(KINDS)}")

    def draw(self, body: bytes) -> str | None:
        """The fault for this attempt at ``body``, or None to answer it. Called from the server's event loop only."""
        key = hashlib.sha256(body).hexdigest()
        h = hashlib.sha256(f"{self.seed}:{key}:{len(self.arrivals[key])}".encode()).digest()
        kind = self.kinds[h[8] % len(self.kinds)] if int.from_bytes(h[:8], "big") / 2**64 < self.rate else None
        self.arrivals[key].append((time.monotonic(), kind))
        if kind is not None:
            self.injected[kind] += 1
        return kind
