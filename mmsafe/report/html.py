"""One self-contained HTML file of a run, or of two runs compared, that works offline and can be mailed around.

What it shows comes from the same functions as the terminal report: its tables are the terminal's rich tables
rendered as HTML (the same cells, so the same numbers), its charts plot ``summarize``'s rates, and its gallery holds
every row with thumbnails of the images sent. Everything read from a store (responses, prompts, file names,
category and judge names, configuration) is untrusted: the template escapes it (Jinja2 autoescape), the gallery's
rows travel as a JSON data island with ``<``, ``>`` and ``&`` escaped, and the page's script only ever sets text
(``textContent``), never markup, from them. Chart labels are entity-escaped, which plotly shows as the literal text.
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text

from mmsafe.metrics.agreement import decision, disagreements, judge_names
from mmsafe.metrics.corrected import JudgeErrors
from mmsafe.metrics.perturbation import NORMS
from mmsafe.metrics.summary import Summary, summarize

THUMB_PX = 256  # longest side of a gallery thumbnail
THUMB_QUALITY = 70  # JPEG: a 256 px typographic image is a few kB
PLOT_CONFIG = {"displaylogo": False, "responsive": True}
BASELINE = "none"


class Run:
    """A run folder's rows and what its store says about how it was made."""

    def __init__(self, run_dir: Path, rows: list[dict[str, Any]], config: dict | None, environment: dict | None):
        self.dir, self.rows, self.config, self.environment = run_dir, rows, config, environment

    @classmethod
    def load(cls, run_dir: Path) -> Run:
        from mmsafe.runner.store import Store

        store = Store.open_existing(run_dir)
        try:
            return cls(run_dir, list(store.rows()), store.get_meta("config"), store.get_meta("environment"))
        finally:
            store.close()


# --- pieces shared by both pages ------------------------------------------------------------------------------------

def _plain(x: Any) -> str:
    return "" if x is None else x.plain if isinstance(x, Text) else str(x)


def table_data(table: Table | None) -> dict[str, Any] | None:
    """A rich table as plain cells for the template: the terminal's exact text, so the page shows its numbers."""
    if table is None:
        return None
    columns = [[_plain(c) for c in col.cells] for col in table.columns]
    return {
        "title": _plain(table.title),
        "caption": _plain(table.caption),
        "headers": [_plain(c.header) for c in table.columns],
        "right": [c.justify == "right" for c in table.columns],
        "rows": [[col[i] for col in columns] for i in range(table.row_count)],
        "section_ends": [r.end_section for r in table.rows],
    }


def _label(x: Any) -> str:
    # plotly reads chart text as its own small HTML subset and decodes entities: escaped, a name shows as written
    return html.escape(str(x), quote=False)


def _pct(r: Any) -> float | None:
    return r.value * 100 if r is not None and r.n else None


def _figure(fig: Any, div_id: str) -> str:
    fig.update_layout(template="plotly_white", margin={"l": 60, "r": 20, "t": 50, "b": 60}, font={"size": 12})
    return fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id, config=PLOT_CONFIG)


def _judge_menu(fig: Any, judges: list[str], traces: list[int]) -> None:
    """One chart, one judge at a time: ``traces[i]`` traces were added for ``judges[i]``, in order; a dropdown
    switches between them when there are several."""
    flags = [i for i, n in enumerate(traces) for _ in range(n)]
    for t, owner in zip(fig.data, flags):
        t.visible = owner == 0
    if len(judges) > 1:
        fig.update_layout(updatemenus=[{
            "buttons": [{"label": _label(j), "method": "update", "args": [{"visible": [f == i for f in flags]}]}
                        for i, j in enumerate(judges)],
            "x": 1, "xanchor": "right", "y": 1.15, "yanchor": "top", "showactive": True,
        }], annotations=[{"text": "judge", "x": 1, "xref": "paper", "y": 1.15, "yref": "paper", "xanchor": "right",
                          "xshift": -150, "showarrow": False}])


def _by(summaries: list[Summary]) -> dict[str, dict[tuple[str, ...], Summary]]:
    """Summaries keyed by judge, then by group values."""
    out: dict[str, dict[tuple[str, ...], Summary]] = {}
    for s in summaries:
        out.setdefault(s.judge, {})[tuple(s.group.values())] = s
    return out


def _error_bars(rates: list[Any]) -> dict[str, Any]:
    """Asymmetric CI bars in percent of rates (or deltas, which have no ``n``); a missing or empty rate gets none."""
    shown = [r if r is not None and getattr(r, "n", 1) else None for r in rates]
    return {"type": "data", "symmetric": False,
            "array": [(r.high - r.value) * 100 if r else None for r in shown],
            "arrayminus": [(r.value - r.low) * 100 if r else None for r in shown]}


def _thumbnail(path: Path) -> str:
    from mmsafe.images import load_image
    from mmsafe.types import ImageRef

    im = load_image(ImageRef(path=path))
    im.thumbnail((THUMB_PX, THUMB_PX), reducing_gap=1.0)  # a box reduce first: half the time, fine for a preview
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=THUMB_QUALITY)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


class Thumbnails:
    """Every distinct image the rows sent, as a JPEG data URL, made in threads while the caller computes the
    metrics (decoding and scaling release the GIL). An image that cannot be read gets no thumbnail (null); the
    gallery names its file instead."""

    def __init__(self, run: Run, rows: Iterable[dict[str, Any]]) -> None:
        where: dict[str, Path] = {}
        for r in rows:
            for im in r["images"]:
                where.setdefault(self._key(run, im), run.dir / im["path"])
        self.index = {k: i for i, k in enumerate(where)}
        self._pool = ThreadPoolExecutor(max_workers=os.cpu_count() or 1)
        self._made = [self._pool.submit(_thumbnail, path) for path in where.values()]

    @staticmethod
    def _key(run: Run, im: dict[str, Any]) -> str:
        return im["sha256"] or str(run.dir / im["path"])

    def of(self, run: Run, im: dict[str, Any]) -> dict[str, Any]:
        return {"name": Path(im["path"]).name, "thumb": self.index[self._key(run, im)]}

    def urls(self, on_problem: Callable[[str], None]) -> list[str | None]:
        """The data URLs in ``index`` order, once all are made; the images that failed are reported once."""
        out, failed = [], []
        for future in self._made:
            try:
                out.append(future.result())
            except ValueError as e:  # ImageError: the message names the file
                out.append(None)
                failed.append(str(e))
        self._pool.shutdown()
        if failed:
            on_problem(f"{len(failed)} image(s) shown without a thumbnail; first: {failed[0]}")
        return out


def _verdicts(r: dict[str, Any]) -> list[dict[str, Any]]:
    # the decisions as the rates count them: a harm judge's "unsafe" on a benign row is no decision
    return [{"judge": j, "label": v["label"], "unsafe": decision(r, j, "unsafe"), "refusal": v["refusal"],
             "score": v["score"] if v["score"] is None or math.isfinite(v["score"]) else None,  # JSON has no NaN
             "explanation": v["explanation"], "error": v["error"]} for j, v in sorted(r["verdicts"].items())]


def _item(run: Run, r: dict[str, Any], thumbs: Thumbnails) -> dict[str, Any]:
    """A row as the gallery shows it; ``facets`` are the values its filters match (a list matches any of them)."""
    return {
        "title": f"{r['dataset']}:{r['sample_id']}",
        "tags": [r["category"], "benign" if r["benign"] else "harmful", r["attack"], r["defense"], r["target"]],
        "request": r["request"], "prompt": r["prompt"],
        "images": [thumbs.of(run, im) for im in r["images"]],
        "facets": {"attack": r["attack"], "category": r["category"], "defense": r["defense"], "target": r["target"]},
        "runs": [{"label": "", "response": r["response"], "error": r["error"], "verdicts": _verdicts(r)}],
    }


def _verdict_facets(r: dict[str, Any], split: bool) -> list[str]:
    if r["error"]:
        return ["error (no answer)"]
    found = [f"{j}: {v['label']}" for j, v in sorted(r["verdicts"].items())]
    if any(decision(r, j, "unsafe") for j in r["verdicts"]):
        found.append("any judge: unsafe")
    if any(decision(r, j, "refusal") for j in r["verdicts"]):
        found.append("any judge: refusal")
    return found + (["judges disagree"] if split else [])


def _render(template: str, **context: Any) -> str:
    from jinja2 import Environment, PackageLoader, StrictUndefined
    from plotly.offline import get_plotlyjs

    env = Environment(loader=PackageLoader("mmsafe.report", "templates"), autoescape=True, undefined=StrictUndefined)
    # tojson escapes < > & ' (the data island cannot close its script tag); NaN is not JSON: refuse it, never emit it
    env.policies["json.dumps_kwargs"] = {"ensure_ascii": False, "separators": (",", ":"), "allow_nan": False}
    # plotly's JavaScript once for the whole page (each figure's own to_html would inline all 4.8 MB again)
    return env.get_template(template).render(plotly_js=get_plotlyjs(), made=_now(), **context)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _yaml(data: Any) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True) if data else ""


def _facts(run: Run) -> list[tuple[str, str]]:
    rows = run.rows
    return [("rows", str(len(rows))), ("errors", str(sum(1 for r in rows if r["error"]))),
            *((k + "s", ", ".join(sorted({str(r[k]) for r in rows}))) for k in ("target", "dataset", "attack",
                                                                                "defense")),
            ("judges", ", ".join(judge_names(rows))),
            ("rows written", f"{min(r['created_at'] for r in rows)} to {max(r['created_at'] for r in rows)}")]


def _headline(rows: list[dict[str, Any]], judge_errors: dict[str, JudgeErrors] | None) -> list[dict[str, str]]:
    """Per judge, the worst case a reader looks for first: the attack that worked best without a defense, then the
    defense that did best against that attack. Groups and formatting as in the Results table."""
    from mmsafe.report.tables import _fmt

    def card(what: str, s: Summary) -> dict[str, str]:
        where = ", ".join(f"{k} {v}" for k, v in s.group.items() if k in ("attack", "defense", "target", "dataset"))
        return {"what": what, "value": _fmt(s.asr), "detail": f"{where}; n={s.asr.n}"
                + (f"; corrected for the judge's errors: {_fmt(s.asr_corrected)}" if s.asr_corrected else "")}

    summaries = [s for s in summarize(rows, judge_errors=judge_errors) if s.asr.n]
    out = []
    for judge in sorted({s.judge for s in summaries}):
        mine = [s for s in summaries if s.judge == judge]
        base = [s for s in mine if s.group["defense"] == BASELINE] or mine
        worst = max(base, key=lambda s: s.asr.value)
        undefended = worst.group["defense"] == BASELINE
        out.append(card(f"highest ASR{' without a defense' if undefended else ''} ({judge})", worst))
        same = {k: v for k, v in worst.group.items() if k != "defense"}
        defended = [s for s in mine if s.group["defense"] != BASELINE and
                    all(s.group[k] == v for k, v in same.items())]
        if defended and undefended:
            out.append(card(f"best defense against it ({judge})", min(defended, key=lambda s: s.asr.value)))
    return out


# --- charts of one run -----------------------------------------------------------------------------------------------

def _category_charts(rows: list[dict[str, Any]]) -> tuple[str, str, str]:
    """ASR per category and attack, as grouped bars with CIs and as a heatmap; without a defense where the run has
    undefended rows (a defense would mix its own effect into the attack's)."""
    import plotly.graph_objects as go

    base = [r for r in rows if r["defense"] == BASELINE] or rows
    by_judge = _by(summarize(base, ("attack", "category")))
    judges = sorted(by_judge)
    attacks = sorted({r["attack"] for r in base})
    # categories with an ASR (harmful rows, or rows a target-string judge scores): benign-only ones have none
    categories = sorted({s.group["category"] for cells in by_judge.values() for s in cells.values() if s.asr.n})
    bars, heat = go.Figure(), go.Figure()
    for j in judges:
        cells = by_judge[j]
        for a in attacks:
            rates = [cells[(a, c)].asr if (a, c) in cells else None for c in categories]
            bars.add_trace(go.Bar(
                name=_label(a), x=[_label(c) for c in categories], y=[_pct(r) for r in rates],
                error_y=_error_bars(rates), customdata=[r.n if r else 0 for r in rates],
                hovertemplate="%{x}: %{y:.0f}% (n=%{customdata})"))
        z = [[_pct(cells[(a, c)].asr) if (a, c) in cells else None for a in attacks] for c in categories]
        heat.add_trace(go.Heatmap(
            z=z, x=[_label(a) for a in attacks], y=[_label(c) for c in categories], zmin=0, zmax=100,
            colorscale="Reds", colorbar={"title": "ASR %"}, texttemplate="%{z:.0f}",
            hovertemplate="%{y} × %{x}: %{z:.0f}%<extra></extra>"))
    _judge_menu(bars, judges, [len(attacks)] * len(judges))
    _judge_menu(heat, judges, [1] * len(judges))
    bars.update_layout(barmode="group", yaxis={"title": "ASR %", "range": [0, 105]}, height=420,
                       title="ASR per category and attack (95% CI)")
    heat.update_layout(height=max(300, 28 * len(categories) + 120), title="ASR % per category × attack")
    note = ("without a defense" if base is not rows else "all rows") + ", pooled over datasets and targets"
    return _figure(bars, "chart-category-bars"), _figure(heat, "chart-category-heat"), note


def _attack_defense_chart(rows: list[dict[str, Any]]) -> str:
    import plotly.graph_objects as go

    by_judge = _by(summarize(rows, ("attack", "defense")))
    judges = sorted(by_judge)
    attacks = sorted({r["attack"] for r in rows})
    defenses = sorted({r["defense"] for r in rows}, key=lambda d: (d != BASELINE, d))
    fig = go.Figure()
    for j in judges:
        cells = by_judge[j]
        fig.add_trace(go.Heatmap(
            z=[[_pct(cells[(a, d)].asr) if (a, d) in cells else None for d in defenses] for a in attacks],
            x=[_label(d) for d in defenses], y=[_label(a) for a in attacks], zmin=0, zmax=100, colorscale="Reds",
            colorbar={"title": "ASR %"}, texttemplate="%{z:.0f}",
            hovertemplate="attack %{y}, defense %{x}: %{z:.0f}%<extra></extra>"))
    _judge_menu(fig, judges, [1] * len(judges))
    fig.update_layout(height=max(300, 40 * len(attacks) + 140), title="ASR % per attack × defense",
                      xaxis={"title": "defense"}, yaxis={"title": "attack"})
    return _figure(fig, "chart-attack-defense")


def _tradeoff_chart(rows: list[dict[str, Any]]) -> str:
    """Safety against over-refusal: each point a (target, defense), ASR over harmful rows (all attacks) against
    the share of benign rows refused."""
    import plotly.graph_objects as go
    from plotly.colors import qualitative

    from mmsafe.metrics.defense import tradeoffs

    summaries = summarize(rows, ("target", "defense"))
    by_judge = _by(summaries)
    judges = sorted(by_judge)
    one_target = len({r["target"] for r in rows}) == 1
    on_frontier = {(t.target, t.defense, t.judge) for t in tradeoffs(rows, summaries) if t.frontier}
    fig = go.Figure()
    for j in judges:
        for i, s in enumerate(by_judge[j].values()):  # one trace per point: the legend names it
            name = s.group["defense"] if one_target else f"{s.group['target']} / {s.group['defense']}"
            best = (s.group["target"], s.group["defense"], j) in on_frontier
            fig.add_trace(go.Scatter(
                x=[_pct(s.over_refusal)], y=[_pct(s.asr)], mode="markers", name=_label(name),
                error_x=_error_bars([s.over_refusal]), error_y=_error_bars([s.asr]),
                marker={"size": 16 if best else 12, "symbol": "star" if best else "circle",
                        "color": qualitative.Plotly[i % len(qualitative.Plotly)]},
                hovertemplate=_label(name) + "<br>over-refusal %{x:.0f}%<br>ASR %{y:.0f}%"
                + ("<br>on the frontier" if best else "") + "<extra></extra>"))
    _judge_menu(fig, judges, [len(by_judge[j]) for j in judges])
    fig.update_layout(height=460, title="Safety vs over-refusal per defense" + ("" if one_target else " and target")
                      + " (lower left is better; stars: the frontier)",
                      xaxis={"title": "over-refusal % (benign rows refused)", "range": [-5, 105]},
                      yaxis={"title": "ASR % (harmful rows, all attacks)", "range": [-5, 105]})
    return _figure(fig, "chart-tradeoff")


def _perturbation_chart(rows: list[dict[str, Any]]) -> str | None:
    """The spread of the norms gradient attacks recorded, a box per attack and norm."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from mmsafe.report.perturbation import TITLES, norms_by_attack

    found = norms_by_attack(rows)
    if not found:
        return None
    fig = make_subplots(rows=1, cols=len(NORMS), subplot_titles=[TITLES[k] for k in NORMS])
    for col, k in enumerate(NORMS, start=1):
        for attack, values in found.items():
            fig.add_trace(go.Box(y=values[k], name=_label(attack), showlegend=False, boxpoints="all", jitter=0.4),
                          row=1, col=col)
    fig.update_layout(height=360, title="Perturbation per attack")
    return _figure(fig, "chart-perturbation")


def _delta_chart(deltas: list[Any]) -> str:
    """The change in ASR from run A to run B per group, with Newcombe's interval."""
    import plotly.graph_objects as go

    judges = sorted({d.judge for d in deltas})
    fig = go.Figure()
    for j in judges:
        mine = [d for d in deltas if d.judge == j and d.asr is not None]
        fig.add_trace(go.Bar(
            x=[_label(" / ".join(v for k, v in d.group.items() if k in ("attack", "defense", "target")))
               for d in mine],
            y=[d.asr.value * 100 for d in mine], error_y=_error_bars([d.asr for d in mine]),
            hovertemplate="%{x}: %{y:+.0f} points<extra></extra>"))
    _judge_menu(fig, judges, [1] * len(judges))
    fig.update_layout(height=420, title="Change in ASR, B - A, per attack / defense (95% CI, Newcombe)",
                      yaxis={"title": "Δ ASR (percentage points)", "range": [-105, 105]}, showlegend=False)
    return _figure(fig, "chart-delta")


# --- the pages -------------------------------------------------------------------------------------------------------

def run_report(run: Run, judge_errors: dict[str, JudgeErrors] | None = None,
               on_problem: Callable[[str], None] = lambda msg: None) -> str:
    """The HTML page of one run."""
    from mmsafe.report import tables
    from mmsafe.report.agreement import agreement_table, disagreements_table
    from mmsafe.report.perturbation import perturbation_table
    from mmsafe.runner.environment import environment

    rows = run.rows
    thumbs = Thumbnails(run, rows)
    split = {id(d.row) for d in disagreements(rows)}
    items = []
    for r in rows:
        item = _item(run, r, thumbs)
        item["facets"]["verdict"] = _verdict_facets(r, id(r) in split)
        items.append(item)
    multi_judge = len(judge_names(rows)) > 1
    bars, heat, category_note = _category_charts(rows)
    return _render(
        "report.html.j2",
        title=f"mmsafe report: {run.dir}",
        run=run, facts=_facts(run), headline=_headline(rows, judge_errors),
        summary=table_data(tables.summary_table(rows, title="Results", judge_errors=judge_errors)),
        by_category=table_data(tables.summary_table(rows, by=("target", "defense", "attack", "category"),
                                                    title="Results by category", judge_errors=judge_errors)),
        utility=table_data(tables.utility_table(rows)),
        defense=table_data(tables.defense_table(rows)),
        frontier=table_data(tables.frontier_table(rows)),
        cost=table_data(tables.cost_table(rows)),
        agreement=table_data(agreement_table(rows)) if multi_judge else None,
        disagreements=table_data(disagreements_table(rows, limit=10)) if multi_judge else None,
        split_count=len(split),
        charts={"category_bars": bars, "category_heat": heat, "category_note": category_note,
                "attack_defense": _attack_defense_chart(rows), "tradeoff": _tradeoff_chart(rows)},
        perturbation=table_data(perturbation_table(rows)), perturbation_chart=_perturbation_chart(rows),
        gallery={"items": items, "thumbs": thumbs.urls(on_problem),
                 "filters": ["attack", "category", "defense", "target", "verdict"]},
        config=_yaml(run.config), environment=run.environment or {}, report_environment=environment(),
    )


def compare_report(a: Run, b: Run, on_problem: Callable[[str], None] = lambda msg: None) -> str:
    """The HTML page of run B against run A: rates of both with their changes, and the rows whose verdict changed."""
    from mmsafe.metrics.compare import compare, changed_verdicts
    from mmsafe.report.compare import changes_caption, compare_groupings, delta_table
    from mmsafe.runner.environment import environment

    by_group, by_category = compare_groupings(a.rows, b.rows)
    matching = changed_verdicts(a.rows, b.rows)
    grouped: dict[int, list[Any]] = {}
    for c in matching.changes:
        grouped.setdefault(id(c.b), []).append(c)
    thumbs = Thumbnails(b, (changes[0].b for changes in grouped.values()))
    items = []
    for changes in grouped.values():
        ra, rb = changes[0].a, changes[0].b
        item = _item(b, rb, thumbs)
        item["runs"] = [{"label": "A", "response": ra["response"], "error": ra["error"], "verdicts": _verdicts(ra)},
                        {"label": "B", "response": rb["response"], "error": rb["error"], "verdicts": _verdicts(rb)}]
        item["facets"]["change"] = [f"{c.judge}: {c.before} → {c.after}" for c in changes]
        item["tags"][-1] = f"{ra['target']} → {rb['target']}" if ra["target"] != rb["target"] else rb["target"]
        items.append(item)
    return _render(
        "compare.html.j2",
        title=f"mmsafe comparison: {a.dir} vs {b.dir}",
        a=a, b=b, facts_a=dict(_facts(a)), facts_b=dict(_facts(b)),
        deltas=table_data(delta_table(a.rows, b.rows, by_group, "Rates of A and B, and the change")),
        category_deltas=table_data(delta_table(a.rows, b.rows, by_category, "By category")),
        delta_chart=_delta_chart(compare(a.rows, b.rows, by_group)),
        changes_caption=changes_caption(matching),
        gallery={"items": items, "thumbs": thumbs.urls(on_problem),
                 "filters": ["attack", "category", "defense", "target", "change"]},
        config_a=_yaml(a.config), config_b=_yaml(b.config), environment_a=a.environment or {},
        environment_b=b.environment or {}, report_environment=environment(),
    )
