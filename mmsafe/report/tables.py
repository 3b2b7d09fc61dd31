"""Terminal tables (rich) of a run's metrics."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from rich import box
from rich.table import Table

from mmsafe.metrics import Rate, summarize
from mmsafe.metrics.corrected import JudgeErrors
from mmsafe.metrics.summary import GROUP_KEYS, adaptive

CAPTION = (
    "% with 95% CI (percentile bootstrap; Wilson score where all rows agree). n = harmful/benign rows judged. ASR "
    "and refusal over harmful rows (ASR over every row for target-string judges such as contains), over-refusal "
    "over benign rows. Error rows are left out of every rate."
)
SCENARIO_CAPTION = (
    " Scenario datasets: the ASR of their own judge is the scenario's success rate (canary leaked, attacker's tool "
    "called, injection followed, false claim asserted: over every row; privacy: private questions answered)."
)
ADAPTIVE_CAPTION = (
    " adaptive: the images were optimised through that purifier (its transform in the forward pass, fresh randomness "
    "each step, identity gradient: BPDA + EOT), the rows on which a purifier's effect counts."
)
CORRECTED_CAPTION = (
    " ASR corr.: corrected for the judge's measured errors (Rogan-Gladen), the interval carrying the uncertainty of "
    "both the scan and the judge's evaluation; {}."
)


def summary_table(rows: list[dict[str, Any]], by: tuple[str, ...] = GROUP_KEYS, title: str = "Results",
                  judge_errors: dict[str, JudgeErrors] | None = None) -> Table:
    summaries = summarize(rows, by, judge_errors)
    corrected = any(s.asr_corrected for s in summaries)
    caption = CAPTION + (CORRECTED_CAPTION.format(
        ", ".join(f"{e.judge} v{e.version}: sensitivity {e.sensitivity:.2f}, specificity {e.specificity:.2f}"
                  f" ({e.source or 'labelled answers'})" for e in (judge_errors or {}).values()
                  if any(s.judge == e.judge and s.asr_corrected for s in summaries))) if corrected else "")
    if any((r.get("metadata") or {}).get("scenario") for r in rows):
        caption += SCENARIO_CAPTION
    marked = any(s.adaptive for s in summaries)
    if marked:
        caption += ADAPTIVE_CAPTION
    table = Table(title=title, caption=caption, box=box.SIMPLE_HEAVY)
    # Columns that never vary across the run add nothing: show only the ones that do, plus the last grouping key.
    varying = [k for k in by if len({str(r[k]) for r in rows}) > 1 or k == by[-1]]
    # Names never wrap; on a narrow terminal the rate cells wrap between the value and its interval instead.
    for k in varying:
        table.add_column(k, no_wrap=True, min_width=max(len(k), *(len(str(r[k])) for r in rows)))
    if marked:
        table.add_column("adaptive", no_wrap=True)
    if len({j for r in rows for j in r["verdicts"]}) > 1:
        table.add_column("judge", no_wrap=True, min_width=max(len(j) for r in rows for j in r["verdicts"]))
    multi_judge = len(table.columns) > len(varying) + marked
    table.add_column("n", justify="right", no_wrap=True, header_style="bold")  # harmful/benign rows judged
    any_errors = any(r["error"] for r in rows)
    if any_errors:
        table.add_column("errors", justify="right", no_wrap=True)
    for name in ("ASR", *(["ASR corr."] if corrected else []), "refusal", "over-refusal"):
        table.add_column(name, justify="right", min_width=len(name) if name != "ASR" else 9)
    for s in summaries:
        table.add_row(
            *[s.group[k] for k in varying],
            *([s.adaptive or "-"] if marked else []),
            *([s.judge] if multi_judge else []),
            f"{s.asr.n}/{s.over_refusal.n}",
            *([str(s.errors)] if any_errors else []),
            _fmt(s.asr), *([_fmt(s.asr_corrected) if s.asr_corrected else "-"] if corrected else []),
            _fmt(s.refusal), _fmt(s.over_refusal),
        )
    return table


def _fmt(r: Rate) -> str:
    if not r.n:
        return "-"
    # Whole percents keep the table inside 80 columns; exact values are in `mmsafe export` and the store.
    return f"{r.value * 100:.0f} [{r.low * 100:.0f}-{r.high * 100:.0f}]"


def targets_table(rows: list[dict[str, Any]]) -> Table | None:
    """ASR and over-refusal of every target side by side, per dataset, defense and attack; None for a run of one
    target."""
    names = sorted({r["target"] for r in rows})
    if len(names) < 2:
        return None
    by = ("dataset", "defense", "attack")
    cells: dict[tuple[tuple[str, ...], str], dict[str, Any]] = {}
    for s in summarize(rows, ("target", *by)):
        cells.setdefault((tuple(s.group[k] for k in by), s.judge), {})[s.group["target"]] = s
    varying = [k for k in by if len({str(r[k]) for r in rows}) > 1 or k == by[-1]]
    multi_judge = len({judge for _, judge in cells}) > 1
    table = Table(title="Targets side by side", box=box.SIMPLE_HEAVY,
                  caption="% with 95% CI, as in the first table; '-': no such rows for that target.")
    for k in [*varying, *(["judge"] if multi_judge else [])]:
        table.add_column(k, no_wrap=True)
    for name in names:
        table.add_column(f"{name}\nASR", justify="right")
        table.add_column(f"{name}\nover-refusal", justify="right")
    for (group, judge), per_target in cells.items():
        shown = [v for k, v in zip(by, group) if k in varying]
        table.add_row(*shown, *([judge] if multi_judge else []),
                      *(cell for name in names for cell in (
                          (_fmt(per_target[name].asr), _fmt(per_target[name].over_refusal)) if name in per_target
                          else ("-", "-"))))
    return table


def utility_table(rows: list[dict[str, Any]]) -> Table | None:
    """Benign rows with a reference answer (``metadata["answer"]``): exact match, token F1, containment."""
    from mmsafe.metrics.utility import utility

    found = utility(rows, by=("dataset", "target", "defense", "attack"))
    if not found:
        return None
    table = Table(title="Utility on benign rows with reference answers", box=box.SIMPLE_HEAVY,
                  caption="% with bootstrap 95% CI; token F1 as in SQuAD; contains = answer appears in the response")
    groups = ("dataset", *_targets(rows), "defense", "attack")
    for k in (*groups, "rows", "errors", "exact", "token F1", "contains"):
        table.add_column(k, justify="left" if k in groups else "right", no_wrap=k != "contains")
    for u in found:
        table.add_row(*(u.group[k] for k in groups), str(u.rows), str(u.errors),
                      _fmt(u.exact), _fmt(u.f1), _fmt(u.contains))
    return table


def defense_table(rows: list[dict[str, Any]]) -> Table | None:
    """DSR / RSR / over-refusal added for each defense against the ``none`` baseline on the same rows."""
    from mmsafe.metrics.defense import defense_summary

    groups = (*_targets(rows), "attack")
    found = defense_summary(rows, by=groups)
    if not found:
        return None
    table = Table(title="Defenses against the 'none' baseline (paired rows)", box=box.SIMPLE_HEAVY,
                  caption="DSR: attacks that worked without the defense and were stopped with it. RSR: harmful "
                  "requests answered without it and refused with it. over-refusal added: the same on benign rows. "
                  "s added: mean seconds per request over the baseline (negative when a block skips generation); "
                  "defense s: the defense's own decisions, its model calls included.")
    # which pairs' images were crafted through a purifier: the adaptive figures, marked as in the first table
    by_key: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_key[(str(r["defense"]), *(str(r[k]) for k in groups))].append(r)
    through = {key: adaptive(members) for key, members in by_key.items()}
    marked = any(through.values())
    names = ("defense", *groups, *(["adaptive"] if marked else []), "judge")
    for k in (*names, "pairs", "DSR", "RSR", "over-refusal added", "s added", "defense s"):
        table.add_column(k, justify="left" if k in names else "right", no_wrap=k in names)
    for d in found:
        key = (d.group["defense"], *(d.group[k] for k in groups))
        table.add_row(*(d.group[k] for k in ("defense", *groups)), *([through.get(key) or "-"] if marked else []),
                      d.judge, str(d.pairs),
                      _fmt(d.dsr), _fmt(d.rsr), _fmt(d.over_refusal_added),
                      _seconds(d.latency_added, "+.2f"), _seconds(d.defense_seconds, ".2f"))
    return table


def frontier_table(rows: list[dict[str, Any]]) -> Table | None:
    """Each defense's ASR and over-refusal over all attacks, and which are on the safety/over-refusal frontier."""
    from mmsafe.metrics.defense import tradeoffs

    found = tradeoffs(rows)
    if len({t.defense for t in found}) < 2:
        return None
    table = Table(title="Safety vs over-refusal per defense (all attacks)", box=box.SIMPLE_HEAVY,
                  caption="frontier: no other defense of the target has both a lower or equal ASR and a lower or "
                  "equal over-refusal (and one of them lower), by point estimate; where the intervals overlap the "
                  "order is not firm.")
    names = (*(["target"] if len({t.target for t in found}) > 1 else []), "defense", "judge")
    for k in (*names, "ASR", "over-refusal", "frontier"):
        table.add_column(k, justify="left" if k in names else "right", no_wrap=k in names)
    for t in sorted(found, key=lambda t: (t.target, t.judge, not t.frontier, t.asr.value, t.over_refusal.value)):
        table.add_row(*([t.target] if "target" in names else []), t.defense, t.judge, _fmt(t.asr),
                      _fmt(t.over_refusal), "yes" if t.frontier else "")
    return table


def _targets(rows: list[dict[str, Any]]) -> tuple[str, ...]:
    """``("target",)`` when the run has several targets: a grouping key and column only then."""
    return ("target",) if len({r["target"] for r in rows}) > 1 else ()


def _seconds(r: Rate, spec: str) -> str:
    return format(r.value, spec) if r.n else "-"


def cost_table(rows: list[dict[str, Any]]) -> Table:
    """Seconds and tokens per row (mean with CI) and in total, per target and defense."""
    from mmsafe.metrics.cost import cost_summary

    table = Table(title="Cost", box=box.SIMPLE_HEAVY)
    for k in ("target", "defense", "rows", "s/row", "prompt tok/row", "answer tok/row", "total s"):
        table.add_column(k, justify="left" if k in ("target", "defense") else "right", no_wrap=True)
    for c in cost_summary(rows, by=("target", "defense")):
        table.add_row(c.group["target"], c.group["defense"], str(c.rows),
                      f"{c.seconds.per_row.value:.2f}" if c.seconds.per_row.n else "-",
                      f"{c.prompt_tokens.per_row.value:.0f}" if c.prompt_tokens.per_row.n else "-",
                      f"{c.completion_tokens.per_row.value:.0f}" if c.completion_tokens.per_row.n else "-",
                      f"{c.seconds.total:.0f}")
    return table


def report_json(rows: list[dict[str, Any]], judge_errors: dict[str, JudgeErrors] | None = None) -> dict[str, Any]:
    """Every metric of the run as plain data (what the tables show, unrounded)."""
    from mmsafe.metrics.agreement import agreement
    from mmsafe.metrics.cost import cost_summary
    from mmsafe.metrics.defense import defense_summary, tradeoffs
    from mmsafe.metrics.utility import utility

    return {
        "targets": sorted({r["target"] for r in rows}),
        "summary": [s.as_dict() for s in summarize(rows, judge_errors=judge_errors)],
        "by_category": [s.as_dict() for s in summarize(rows, ("dataset", "target", "defense", "attack", "category"),
                                                       judge_errors)],
        "judge_errors": [e.as_dict() for e in (judge_errors or {}).values()],
        "utility": [u.as_dict() for u in utility(rows)],
        "defense": [d.as_dict() for d in defense_summary(rows)],
        "frontier": [t.as_dict() for t in tradeoffs(rows)],
        "cost": [c.as_dict() for c in cost_summary(rows)],
        "judge_agreement": [a.as_dict() for a in agreement(rows)],
    }
