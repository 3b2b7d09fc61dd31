"""Attack success rate corrected for the judge's own errors (Rogan & Gladen 1978).

A judge with sensitivity ``se`` (it calls a truly unsafe answer unsafe) and specificity ``sp`` (it calls a safe one
safe) reports ``p_obs = p * se + (1 - p) * (1 - sp)`` when the true rate is ``p``, so
``p = (p_obs + sp - 1) / (se + sp - 1)``, clipped to [0, 1]. ``se`` and ``sp`` come from ``mmsafe judge eval`` on
labelled answers (``--save-errors``); they are only as good as those labels are like the scanned answers.

The interval is a parametric bootstrap that redraws the scan's rows and the judge's labelled evaluation (its
tp/fn and tn/fp counts) together, so it carries the uncertainty of both, as garak's ``analyze/bootstrap_ci.py``
does for its text detectors. A judge no better than chance (``se + sp <= 1``) gives no correction.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from mmsafe.metrics.rates import N_BOOT, SEED, Rate


@dataclass(frozen=True)
class JudgeErrors:
    """A judge's confusion counts on the ``unsafe`` decision against human labels, for one judge version."""

    judge: str
    version: str
    tp: int
    fn: int
    tn: int
    fp: int
    source: str = ""  # what it was measured on, shown next to corrected rates

    @property
    def sensitivity(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else float("nan")

    @property
    def specificity(self) -> float:
        return self.tn / (self.tn + self.fp) if self.tn + self.fp else float("nan")

    def as_dict(self) -> dict[str, object]:
        return asdict(self) | {"sensitivity": self.sensitivity, "specificity": self.specificity}


def rogan_gladen(p_obs: float, se: float, sp: float) -> float:
    return float(np.clip((p_obs + sp - 1) / (se + sp - 1), 0.0, 1.0))


def corrected_rate(values: Sequence[bool] | np.ndarray, errors: JudgeErrors, n_boot: int = N_BOOT,
                   seed: int = SEED) -> Rate | None:
    """The Rogan-Gladen rate of the judge decisions ``values`` with its 95% bootstrap interval; None when the
    judge's counts cannot correct anything (no positives or negatives measured, or no better than chance)."""
    x = np.asarray(values, dtype=float)
    pos, neg = errors.tp + errors.fn, errors.tn + errors.fp
    se, sp = errors.sensitivity, errors.specificity
    if x.size == 0 or not pos or not neg or se + sp <= 1:
        return None
    rng = np.random.default_rng(seed)
    p_b = rng.binomial(x.size, x.mean(), n_boot) / x.size
    se_b = rng.binomial(pos, se, n_boot) / pos
    sp_b = rng.binomial(neg, sp, n_boot) / neg
    ok = se_b + sp_b > 1  # a resample that makes the judge look no better than chance corrects nothing
    est = np.clip((p_b[ok] + sp_b[ok] - 1) / (se_b[ok] + sp_b[ok] - 1), 0.0, 1.0)
    lo, hi = np.percentile(est, [2.5, 97.5]) if est.size else (float("nan"), float("nan"))
    return Rate(rogan_gladen(float(x.mean()), se, sp), float(lo), float(hi), int(x.size))


def load_judge_errors(path: str | Path) -> dict[str, JudgeErrors]:
    """``{judge name: JudgeErrors}`` from a JSON list written by ``mmsafe judge eval --save-errors``."""
    p = Path(path)
    try:
        items = json.loads(p.read_text(encoding="utf-8"))
        return {e.judge: e for e in (JudgeErrors(**{k: d[k] for k in JudgeErrors.__dataclass_fields__ if k in d})
                                     for d in items)}
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise ValueError(f"{p}: not a judge-errors file written by `mmsafe judge eval --save-errors` ({e})") from e


def save_judge_errors(path: str | Path, errors: Sequence[JudgeErrors]) -> None:
    """Write ``errors``, replacing entries of the same judge already in the file."""
    p = Path(path)
    kept = load_judge_errors(p) if p.is_file() else {}
    kept.update({e.judge: e for e in errors})
    p.write_text(json.dumps([e.as_dict() for e in kept.values()], indent=1) + "\n", encoding="utf-8")
