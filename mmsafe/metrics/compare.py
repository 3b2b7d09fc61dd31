"""Two runs compared: how each rate moved (run B minus run A, with a 95% CI) and which rows' verdicts changed.

The interval of a difference is Newcombe's hybrid score interval (Newcombe 1998, "Interval estimation for the
difference between independent proportions", method 10), built from the two Wilson intervals the rates already
use: it keeps its coverage at 0% and 100%, where a bootstrap of the difference collapses to a point. It treats the
two runs as independent samples; two runs over the same requests are paired, so for them it is conservative (wider
than a paired interval), and the table of changed rows shows the pairing itself.

Rows are matched by (dataset, sample, attack, defense), plus the target when both runs hold the same targets (two
runs of one model set); otherwise the target is what changed (two model versions) and it is left out of the match.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from mmsafe.metrics.rates import Rate, wilson
from mmsafe.metrics.summary import Summary, summarize

MATCH_KEYS = ("dataset", "sample_id", "attack", "defense")


@dataclass(frozen=True)
class Delta:
    """``b - a`` of two proportions with Newcombe's 95% interval."""

    value: float
    low: float
    high: float

    def as_dict(self) -> dict[str, float]:
        return {"value": self.value, "low": self.low, "high": self.high}


def newcombe(a: Rate, b: Rate) -> Delta | None:
    """Rate ``b`` minus rate ``a`` (each a share of 0/1 decisions); None when either has no rows."""
    if not a.n or not b.n:
        return None
    ka, kb = round(a.value * a.n), round(b.value * b.n)
    pa, pb = ka / a.n, kb / b.n
    la, ua = wilson(ka, a.n)
    lb, ub = wilson(kb, b.n)
    d = pb - pa
    return Delta(d, d - math.sqrt((pb - lb) ** 2 + (ua - pa) ** 2), d + math.sqrt((ub - pb) ** 2 + (pa - la) ** 2))


def with_target(rows_a: list[dict[str, Any]], rows_b: list[dict[str, Any]]) -> bool:
    """Whether the target is part of the match: only when both runs hold the same targets."""
    return {r["target"] for r in rows_a} == {r["target"] for r in rows_b}


@dataclass(frozen=True)
class RunDelta:
    group: dict[str, str]
    judge: str
    a: Summary
    b: Summary
    asr: Delta | None
    refusal: Delta | None
    over_refusal: Delta | None

    def as_dict(self) -> dict[str, Any]:
        return {**self.group, "judge": self.judge, "a": self.a.as_dict(), "b": self.b.as_dict(),
                **{k: d.as_dict() if d else None for k, d in
                   (("asr", self.asr), ("refusal", self.refusal), ("over_refusal", self.over_refusal))}}


def compare(rows_a: list[dict[str, Any]], rows_b: list[dict[str, Any]], by: tuple[str, ...]) -> list[RunDelta]:
    """ASR, refusal and over-refusal of both runs per group of ``by`` and judge (groups both runs have), with the
    change from A to B. The rates are ``summarize``'s, the ones the single-run report shows."""
    sa = {(tuple(s.group.values()), s.judge): s for s in summarize(rows_a, by)}
    sb = {(tuple(s.group.values()), s.judge): s for s in summarize(rows_b, by)}
    return [RunDelta(sa[k].group, k[1], sa[k], sb[k], newcombe(sa[k].asr, sb[k].asr),
                     newcombe(sa[k].refusal, sb[k].refusal), newcombe(sa[k].over_refusal, sb[k].over_refusal))
            for k in sorted(sa.keys() & sb.keys())]


@dataclass(frozen=True)
class Change:
    """One judge's verdict on one matched row, different in run B."""

    a: dict[str, Any]  # the row in run A
    b: dict[str, Any]
    judge: str
    before: str  # the judge's label in A
    after: str


@dataclass(frozen=True)
class Matching:
    changes: list[Change]
    matched: int  # row pairs found in both runs
    only_a: int
    only_b: int
    ambiguous: int  # keys held by several rows of one run (several targets, target left out of the match)


def _decision(v: dict[str, Any]) -> tuple[bool | None, bool | None]:
    return (v["unsafe"], v["refusal"])


def changed_verdicts(rows_a: Iterable[dict[str, Any]], rows_b: Iterable[dict[str, Any]]) -> Matching:
    """Matched rows on which a judge present in both runs decided differently (unsafe or refusal). Rows with an error
    in either run have no verdicts to compare and are left out."""
    rows_a, rows_b = list(rows_a), list(rows_b)
    keys = MATCH_KEYS + (("target",) if with_target(rows_a, rows_b) else ())

    def index(rows: list[dict[str, Any]]) -> tuple[dict[tuple, dict], set[tuple]]:
        counts = Counter(tuple(r[k] for k in keys) for r in rows)
        return {tuple(r[k] for k in keys): r for r in rows}, {k for k, n in counts.items() if n > 1}

    ia, dup_a = index(rows_a)
    ib, dup_b = index(rows_b)
    ambiguous = dup_a | dup_b
    shared = sorted((ia.keys() & ib.keys()) - ambiguous)
    changes = []
    for k in shared:
        a, b = ia[k], ib[k]
        if a["error"] or b["error"]:
            continue
        for judge in sorted(a["verdicts"].keys() & b["verdicts"].keys()):
            va, vb = a["verdicts"][judge], b["verdicts"][judge]
            if _decision(va) != _decision(vb):
                changes.append(Change(a, b, judge, va["label"], vb["label"]))
    return Matching(changes, len(shared), len(ia.keys() - ib.keys() - ambiguous),
                    len(ib.keys() - ia.keys() - ambiguous), len(ambiguous))
