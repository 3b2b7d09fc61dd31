"""Terminal tables (rich) of how a run's judges agree, and of the rows where they do not."""

from __future__ import annotations

import math
from typing import Any

from rich import box
from rich.table import Table

from mmsafe.metrics.agreement import Agreement, agreement, disagreements, judge_names

AGREEMENT_CAPTION = (
    "Over rows both judges decided (n). agree = same decision, % with bootstrap 95% CI; kappa = Cohen's kappa "
    "(agreement beyond chance; '-' when undefined because both judges gave one constant answer). unsafe: harmful rows "
    "only, unless both judges score benign rows too."
)


def _pct(a: Agreement) -> str:
    s = a.agreement
    return f"{s.value * 100:.0f} [{s.low * 100:.0f}-{s.high * 100:.0f}]"


def _kappa(a: Agreement) -> str:
    s = a.kappa
    if math.isnan(s.value):
        return "-"
    lo, hi = ("?" if math.isnan(x) else f"{x:.2f}" for x in (s.low, s.high))
    return f"{s.value:.2f} [{lo}, {hi}]"


def agreement_table(rows: list[dict[str, Any]], title: str = "Judge agreement") -> Table:
    """Two lines per pair of judges: agreement on the unsafe decision and on refusal. Pairs that decided no row in
    common (two scenario judges, each on its own scenario's rows) are left out."""
    table = Table(title=title, caption=AGREEMENT_CAPTION, box=box.SIMPLE_HEAVY)
    table.add_column("judges", no_wrap=True)
    table.add_column("on", no_wrap=True)
    table.add_column("n", justify="right", no_wrap=True)
    table.add_column("agree %", justify="right", no_wrap=True)
    table.add_column("kappa", justify="right", no_wrap=True)
    for p in agreement(rows):
        if p.unsafe is None and p.refusal is None:
            continue
        for i, (on, a) in enumerate((("unsafe", p.unsafe), ("refusal", p.refusal))):
            cells = ["0", "-", "-"] if a is None else [str(a.n), _pct(a), _kappa(a)]
            table.add_row(f"{p.judge_a} / {p.judge_b}" if i == 0 else "", on, *cells, end_section=i == 1)
    return table


def _snippet(text: str | None, n: int = 60) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= n else text[: n - 1] + "…"


def disagreements_table(rows: list[dict[str, Any]], limit: int = 10, title: str = "Where judges disagree") -> Table:
    """The first ``limit`` rows the judges split on, with each judge's label and the start of the answer."""
    found = disagreements(rows)
    judges = judge_names(rows)
    shown = found[:limit]
    caption = f"{len(found)} of {sum(1 for r in rows if not r['error'])} rows split the judges"
    if len(found) > len(shown):
        caption += f"; first {len(shown)} shown (all of them: mmsafe export, then filter on verdicts)"
    table = Table(title=title, caption=caption, box=box.SIMPLE_HEAVY)
    table.add_column("sample", no_wrap=True)
    table.add_column("attack", no_wrap=True)
    table.add_column("defense", no_wrap=True)
    table.add_column("on", no_wrap=True)
    for j in judges:
        table.add_column(j, no_wrap=True)
    table.add_column("response")
    for d in shown:
        r = d.row
        labels = [d.verdicts[j]["label"] if j in d.verdicts else "-" for j in judges]
        table.add_row(f"{r['dataset']}:{r['sample_id']}", r["attack"], r["defense"], "+".join(d.on), *labels,
                      _snippet(r["response"]))
    return table
