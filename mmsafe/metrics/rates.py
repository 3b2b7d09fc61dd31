"""A rate with its percentile-bootstrap 95% confidence interval.

Why bootstrap and not a closed form: the same code covers every statistic we report (rates now, agreement and
differences later). One exception: when every observation of a rate is 0 (or every one is 1) the percentile
bootstrap collapses to a zero-width interval, as if 40/40 proved a rate of exactly 100%; such rates get the Wilson
score interval instead (Wilson 1927), e.g. [91.2%, 100%] for 40/40. With n < 30 read any interval as rough.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

N_BOOT = 2000
SEED = 0


def bootstrap_ci(
    values: Sequence[float] | np.ndarray, n_boot: int = N_BOOT, confidence: float = 0.95, seed: int = SEED
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (seeded: the same data give the same interval)."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)
    tail = (1 - confidence) / 2 * 100
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return (float(lo), float(hi))


@dataclass(frozen=True)
class Rate:
    value: float
    low: float
    high: float
    n: int

    def __str__(self) -> str:
        if self.n == 0:
            return "-"
        return f"{self.value:.1%} [{self.low:.1%}, {self.high:.1%}]"

    def as_dict(self) -> dict[str, float | int]:
        return {"value": self.value, "low": self.low, "high": self.high, "n": self.n}


def rate(values: Sequence[float | bool] | np.ndarray, seed: int = SEED) -> Rate:
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return Rate(float("nan"), float("nan"), float("nan"), 0)
    if np.all(x == x[0]) and x[0] in (0.0, 1.0):
        lo, hi = wilson(int(x.sum()), int(x.size))
    else:
        lo, hi = bootstrap_ci(x, seed=seed)
    return Rate(float(x.mean()), lo, hi, int(x.size))


def wilson(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval of a proportion (95% with the default ``z``)."""
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (float(max(0.0, centre - half)), float(min(1.0, centre + half)))
