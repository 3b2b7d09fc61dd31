"""How far the judges of a run agree with each other, and on which rows they do not.

For every pair of judges, over the rows both judged (error rows and unjudged verdicts left out): percent agreement
and Cohen's kappa with bootstrap 95% CIs, once on the unsafe decision and once on refusal (a harm judge's unsafe decision counts on
harmful rows only). Kappa
discounts the agreement two judges would reach by chance from their base rates: two judges that both call 95% of
rows unsafe agree 90% of the time by luck alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Any

from mmsafe.metrics.classification import Stat, binary_report


@dataclass(frozen=True)
class Agreement:
    n: int  # rows both judges decided
    agreement: Stat  # share of those rows with the same decision
    kappa: Stat  # nan when undefined (both judges constant and equal)

    def as_dict(self) -> dict[str, Any]:
        return {"n": self.n, "agreement": vars(self.agreement), "kappa": vars(self.kappa)}


@dataclass(frozen=True)
class PairAgreement:
    judge_a: str
    judge_b: str
    unsafe: Agreement | None  # None when no row has a score from both
    refusal: Agreement | None

    def as_dict(self) -> dict[str, Any]:
        return {"judge_a": self.judge_a, "judge_b": self.judge_b,
                "unsafe": self.unsafe.as_dict() if self.unsafe else None,
                "refusal": self.refusal.as_dict() if self.refusal else None}


def judge_names(rows: Iterable[dict[str, Any]]) -> list[str]:
    return sorted({j for r in rows for j in r["verdicts"]})


def decision(row: dict[str, Any], judge: str, on: str) -> bool | None:
    """A judge's decision on ``unsafe`` or ``refusal`` for a row; None when it has none. A harm judge's ``unsafe``
    on a benign row is no decision (it only means something on harmful requests)."""
    verdict = row["verdicts"].get(judge)
    if verdict is None:
        return None
    if on == "unsafe" and row["benign"] and not verdict["scores_benign"]:
        return None
    return verdict[on]


def _agreement(rows: list[dict[str, Any]], a: str, b: str, on: str) -> Agreement | None:
    da, db = [], []
    for r in rows:
        x, y = decision(r, a, on), decision(r, b, on)
        if x is not None and y is not None:
            da.append(x)
            db.append(y)
    if not da:
        return None
    rep = binary_report(da, db)
    return Agreement(len(da), rep["accuracy"], rep["kappa"])  # type: ignore[arg-type]


def agreement(rows: Iterable[dict[str, Any]], judges: Sequence[str] | None = None) -> list[PairAgreement]:
    """One entry per pair of judges (all judges of the rows unless ``judges`` names some), in name order."""
    rows = [r for r in rows if not r["error"]]
    names = list(judges) if judges is not None else judge_names(rows)
    return [PairAgreement(a, b, _agreement(rows, a, b, "unsafe"), _agreement(rows, a, b, "refusal"))
            for a, b in combinations(names, 2)]


@dataclass(frozen=True)
class Disagreement:
    row: dict[str, Any]
    on: tuple[str, ...]  # "unsafe" and/or "refusal": what the judges split on
    verdicts: dict[str, dict[str, Any]]  # judge -> stored verdict


def disagreements(rows: Iterable[dict[str, Any]], judges: Sequence[str] | None = None) -> list[Disagreement]:
    """Rows (without error) where the judges that decided split on unsafe or on refusal, in row order."""
    out = []
    for r in rows:
        if r["error"]:
            continue
        verdicts = {j: v for j, v in r["verdicts"].items() if judges is None or j in judges}
        split = tuple(
            on for on in ("unsafe", "refusal")
            if len({d for d in (decision(r, j, on) for j in verdicts) if d is not None}) > 1
        )
        if split:
            out.append(Disagreement(r, split, verdicts))
    return out
