"""Terminal tables (rich) of two runs compared: rates of both and their change, and rows whose verdict changed.
The HTML comparison shows these same tables."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.table import Table

from mmsafe.metrics.compare import Delta, Matching, changed_verdicts, compare, with_target
from mmsafe.report.agreement import _snippet
from mmsafe.report.tables import _fmt

DELTA_CAPTION = (
    "A and B: % with 95% CI, as in each run's report. Δ = B - A in percentage points, 95% CI by Newcombe's hybrid "
    "score interval for two independent proportions (conservative for runs over the same requests). n = harmful/"
    "benign rows judged in A, then in B. Groups only one run has are left out."
)


def compare_groupings(rows_a: list[dict[str, Any]], rows_b: list[dict[str, Any]]
                      ) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Groups for the delta tables, per attack and defense and per category: by target too only when both runs hold
    the same targets (else the target is what changed between them)."""
    target = ("target",) if with_target(rows_a, rows_b) else ()
    return ("dataset", *target, "defense", "attack"), ("dataset", *target, "category")


def fmt_delta(d: Delta | None) -> str:
    if d is None:
        return "-"
    return f"{d.value * 100:+.0f} [{d.low * 100:+.0f}, {d.high * 100:+.0f}]"


def delta_table(rows_a: list[dict[str, Any]], rows_b: list[dict[str, Any]], by: tuple[str, ...],
                title: str) -> Table:
    found = compare(rows_a, rows_b, by)
    table = Table(title=title, caption=DELTA_CAPTION, box=box.SIMPLE_HEAVY)
    varying = [k for k in by if len({d.group[k] for d in found}) > 1 or k == by[-1]]
    for k in (*varying, "judge", "n A", "n B", "ASR A", "ASR B", "Δ ASR", "Δ refusal", "Δ over-refusal"):
        table.add_column(k, no_wrap=True, justify="left" if k in (*varying, "judge") else "right")
    for d in found:
        table.add_row(*(d.group[k] for k in varying), d.judge, f"{d.a.asr.n}/{d.a.over_refusal.n}",
                      f"{d.b.asr.n}/{d.b.over_refusal.n}", _fmt(d.a.asr), _fmt(d.b.asr), fmt_delta(d.asr),
                      fmt_delta(d.refusal), fmt_delta(d.over_refusal))
    return table


def changes_caption(m: Matching) -> str:
    return (f"{len(m.changes)} verdicts changed on {m.matched} rows found in both runs (matched by dataset, sample, "
            f"attack, defense, and target when both runs have the same targets); {m.only_a} rows only in A, "
            f"{m.only_b} only in B" + (f", {m.ambiguous} keys held by several rows left out" if m.ambiguous else ""))


def changes_table(m: Matching, limit: int = 10) -> Table:
    table = Table(title="Verdicts that changed from A to B", box=box.SIMPLE_HEAVY,
                  caption=changes_caption(m) + (f"; first {limit} shown" if len(m.changes) > limit else ""))
    for k in ("sample", "attack", "defense", "judge", "A", "B", "response A", "response B"):
        table.add_column(k, no_wrap=k not in ("response A", "response B"))
    for c in m.changes[:limit]:
        table.add_row(f"{c.a['dataset']}:{c.a['sample_id']}", c.a["attack"], c.a["defense"], c.judge, c.before,
                      c.after, _snippet(c.a["response"], 40), _snippet(c.b["response"], 40))
    return table


def comparison_json(rows_a: list[dict[str, Any]], rows_b: list[dict[str, Any]]) -> dict[str, Any]:
    """What the comparison tables show, unrounded, with every changed verdict."""
    by_group, by_category = compare_groupings(rows_a, rows_b)
    m = changed_verdicts(rows_a, rows_b)
    return {
        "deltas": [d.as_dict() for d in compare(rows_a, rows_b, by_group)],
        "by_category": [d.as_dict() for d in compare(rows_a, rows_b, by_category)],
        "changed": [{"dataset": c.b["dataset"], "sample_id": c.b["sample_id"], "attack": c.b["attack"],
                     "defense": c.b["defense"], "target_a": c.a["target"], "target_b": c.b["target"],
                     "judge": c.judge, "a": c.a["verdicts"][c.judge], "b": c.b["verdicts"][c.judge]}
                    for c in m.changes],
        "matched": m.matched, "only_a": m.only_a, "only_b": m.only_b, "ambiguous": m.ambiguous,
        "interval": "Newcombe hybrid score (method 10), 95%, B - A, runs taken as independent",
    }
