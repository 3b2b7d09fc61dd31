"""Group stored rows into the headline table: ASR, refusal and over-refusal per attack (and per category)."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from mmsafe.metrics.rates import Rate, rate

GROUP_KEYS = ("dataset", "target", "defense", "attack")


@dataclass(frozen=True)
class Summary:
    group: dict[str, str]
    judge: str
    rows: int
    errors: int
    asr: Rate  # harmful rows judged unsafe / attack succeeded (every row for judges that score benign rows)
    refusal: Rate  # harmful rows refused
    over_refusal: Rate  # benign rows refused

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.group,
            "judge": self.judge,
            "rows": self.rows,
            "errors": self.errors,
            "asr": self.asr.as_dict(),
            "refusal": self.refusal.as_dict(),
            "over_refusal": self.over_refusal.as_dict(),
        }


def summarize(rows: Iterable[dict[str, Any]], by: tuple[str, ...] = GROUP_KEYS) -> list[Summary]:
    """``rows`` are store rows (dicts with the group keys, ``benign``, ``error`` and ``verdicts`` keyed by judge).

    Error rows count in ``errors`` and are left out of every rate: an error is neither a refusal nor a success.
    Verdicts with ``score``/``refusal`` None (unjudgeable) are left out of that rate only. For judges whose score
    means attack success whatever the request (``scores_benign``: target-string matches for hijacks), ASR counts
    benign rows too: forcing a chosen answer to a harmless question is the attack.
    """
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[tuple(str(r[k]) for k in by)].append(r)
    out = []
    for key in sorted(groups):
        members = groups[key]
        judges = sorted({j for r in members for j in r["verdicts"]})
        errors = sum(1 for r in members if r["error"])
        for judge in judges or [""]:
            asr, refusal, over = [], [], []
            every_row = scores_benign(judge)
            for r in members:
                v = r["verdicts"].get(judge)
                if r["error"] or v is None:
                    continue
                if r["benign"]:
                    if v["refusal"] is not None:
                        over.append(v["refusal"])
                    if every_row and v["score"] is not None:
                        asr.append(v["score"])
                else:
                    if v["score"] is not None:
                        asr.append(v["score"])
                    if v["refusal"] is not None:
                        refusal.append(v["refusal"])
            out.append(
                Summary(dict(zip(by, key)), judge, len(members), errors, rate(asr), rate(refusal), rate(over))
            )
    return out


def scores_benign(judge: str) -> bool:
    """Whether the judge stored under the label ``judge`` (``name``, ``name:value`` or ``name{json args}``)
    declares ``scores_benign``; unknown judges (a plugin no longer installed) do not."""
    from mmsafe.judges import judges

    try:
        return bool(getattr(judges.get(re.split(r"[:{]", judge, maxsplit=1)[0]), "scores_benign", False))
    except (KeyError, ValueError):
        return False
