"""The ``mmsafe`` command. Heavy imports (torch, transformers) happen inside commands, so ``--help`` is instant."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.logging import RichHandler

app = typer.Typer(
    help="Red-team multimodal LLMs through their image input, measure how safe they are, and make them safer.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console(markup=False)  # stdout carries user text (answers, file names, YAML): never markup
err = Console(stderr=True)

from mmsafe.cli.output import fail, warn  # noqa: E402
from mmsafe.cli.datasets import app as datasets_app  # noqa: E402 - sub-apps attach after the main app exists
from mmsafe.cli.attack import app as attack_app  # noqa: E402
from mmsafe.cli.judge import app as judge_app  # noqa: E402
from mmsafe.cli.serve import app as serve_app  # noqa: E402
from mmsafe.cli.serve_model import app as serve_model_app  # noqa: E402

app.add_typer(attack_app, name="attack")
app.add_typer(datasets_app, name="datasets")
app.add_typer(judge_app, name="judge")
app.add_typer(serve_app, name="serve")
app.add_typer(serve_model_app, name="serve-model")

KINDS = ("datasets", "attacks", "defenses", "targets", "judges")


def _quiet_libraries() -> None:
    # transformers prints a progress bar per weight load and a warning per generate(); the scan's own bar is enough.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(level=logging.WARNING, format="%(message)s",
                        handlers=[RichHandler(console=err, show_time=False, show_path=False)])


class _ScanProgress:
    """Rows done, rate and ETA. On resume the bar counts only the rows left, so rate and ETA are honest. When
    stderr is not a terminal (CI, a log file), a plain line every ``PLAIN_EVERY_S`` seconds instead of a bar."""

    PLAIN_EVERY_S = float(os.environ.get("MMSAFE_PROGRESS_EVERY", "30"))

    def __init__(self, out: Path) -> None:
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                   TimeRemainingColumn)

        self.out = out
        self.plain = not err.is_terminal
        self.progress = Progress(
            TextColumn("[bold]scan"), BarColumn(), MofNCompleteColumn(), TextColumn("rows"),
            TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            console=err, disable=self.plain,
        )
        self.task = None
        self.base = 0
        self.started = self.last_line = 0.0

    def update(self, done: int, total: int) -> None:
        import time

        now = time.monotonic()
        if self.task is None:
            if done:
                err.print(f"resuming: {done} of {total} rows already in {self.out}", markup=False, highlight=False)
            self.base, self.started, self.last_line = done, now, now
            self.task = self.progress.add_task("scan", total=total - done, rate="")
            self.progress.start()
            return
        self.progress.update(self.task, completed=done - self.base)
        speed = self.progress.tasks[0].speed
        self.progress.update(self.task, rate=f"{speed:.2f} rows/s" if speed else "")
        if self.plain and (now - self.last_line >= self.PLAIN_EVERY_S or done == total):
            self.last_line = now
            rate = (done - self.base) / max(now - self.started, 1e-9)
            eta = f"{(total - done) / rate:.0f} s" if rate > 0 else "?"
            err.print(f"scan: {done}/{total} rows, {rate:.2f} rows/s, ETA {eta}", markup=False, highlight=False)

    def stop(self) -> None:
        self.progress.stop()


@app.command()
def scan(
    target: Annotated[Optional[str], typer.Option("--target", "-t", help="Model under test, e.g. reader (embedded, offline) or reader:<HF causal-LM id>; comma-separated for several, scanned one after another into the same run.")] = None,
    dataset: Annotated[Optional[str], typer.Option("--dataset", "-d", help="Comma-separated datasets, e.g. mini, figstep:path/to/safebench.csv, or a bare path (format detected).")] = None,
    scenario: Annotated[Optional[str], typer.Option("--scenario", "-s", help="Comma-separated attack-goal scenarios: leakage, tool-misuse, indirect-injection, misinformation, privacy. Each adds its built-in dataset and the judge of its success; without -d, only the scenarios are scanned.")] = None,
    attack: Annotated[Optional[str], typer.Option("--attack", "-a", help="Comma-separated attacks \\[default: none,figstep].")] = None,
    defense: Annotated[Optional[str], typer.Option("--defense", help="Comma-separated defenses \\[default: none].")] = None,
    judge: Annotated[Optional[str], typer.Option("--judge", "-j", help="Comma-separated judges; all are stored \\[default: keywords plus the attacks' own, e.g. contains:TEXT for hijack].")] = None,
    limit: Annotated[Optional[int], typer.Option("--limit", "-n", min=1, help="Samples per dataset, spread over categories and harmful/benign.")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Run folder (results.sqlite, images). Re-running into it resumes. \\[default: mmsafe-runs/scan]")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="YAML file with any of the settings above; flags override it.")] = None,
    max_new_tokens: Annotated[Optional[int], typer.Option(min=1, help="Target's answer length limit (reader default 128).")] = None,
    batch_size: Annotated[Optional[int], typer.Option(min=1, help="Samples per generate() call (reader default 16).")] = None,
    retry_errors: Annotated[Optional[bool], typer.Option("--retry-errors/--no-retry-errors", help="Re-run rows stored with an error (a fixed image, a target that was down). \\[default: retry]")] = None,
    executor: Annotated[Optional[str], typer.Option(help="Where rows run: local (this process) or ray (one task per batch of rows; pip install 'mmsafe\\[ray]'). \\[default: local]")] = None,
    ray_address: Annotated[Optional[str], typer.Option(help="Ray cluster for --executor ray: ray://host:port or auto \\[default: a local Ray on this machine's CPUs].")] = None,
) -> None:
    """Run every dataset x attack x defense on each target, judge each answer, and print ASR / refusal /
    over-refusal with 95% CIs. Finished rows are kept: re-running the same command resumes."""
    _quiet_libraries()
    from mmsafe.config import ConfigError, load_config
    from mmsafe.registry import UnknownComponent
    from mmsafe.report.tables import summary_table
    from mmsafe.runner.scan import Scan
    from mmsafe.runner.store import Store

    try:
        cfg = load_config(config, targets=target, datasets=dataset, scenarios=scenario, attacks=attack,
                          defenses=defense, judges=judge, limit=limit, out=out, retry_errors=retry_errors,
                          executor=executor, ray_address=ray_address)
    except ConfigError as e:
        fail(str(e))
    for key, value in (("max_new_tokens", max_new_tokens), ("batch_size", batch_size)):
        if value is not None:
            for spec in cfg.targets:
                spec.args[key] = value

    bar = _ScanProgress(cfg.out)
    try:
        runner = Scan(cfg, on_progress=bar.update, on_problem=warn)
        result = runner.run()
    except (UnknownComponent, TypeError, ValueError, FileNotFoundError, ImportError, OSError) as e:
        bar.stop()
        fail(str(e))
    except KeyboardInterrupt:
        bar.stop()
        err.print(f"interrupted: finished rows are kept in {cfg.out}; re-run the same command to resume")
        raise typer.Exit(130)
    bar.stop()
    store = Store.open_existing(cfg.out)
    labels = {s.label for s in runner.datasets}
    rows = [r for r in store.rows() if r["dataset"] in labels and r["target"] in runner.target_labels]
    store.close()
    console.print(summary_table(rows, title=f"mmsafe scan: {', '.join(runner.target_labels)}"))
    stored_errors = sum(1 for r in rows if r["error"])
    console.print(
        f"{result.generated} rows generated, {result.skipped} resumed, {result.errors} errors in this run "
        f"({stored_errors} error rows in the store), {len(result.problems)} warnings. "
        f"Results: {cfg.out}/results.sqlite\n"
        f"Next: mmsafe report {cfg.out}   |   mmsafe export {cfg.out} --format jsonl",
        highlight=False,
    )


@app.command()
def report(
    run_dirs: Annotated[list[Path], typer.Argument(help="A run folder written by mmsafe scan --out; two folders (A B) compare run B with run A.", metavar="RUN_DIR", show_default=False)],
    by_category: Annotated[bool, typer.Option("--by-category/--no-by-category", help="Also break down by category.")] = True,
    format: Annotated[str, typer.Option("--format", "-f", help="table (for people) or json (every metric, unrounded).")] = "table",
    judge_errors: Annotated[Optional[Path], typer.Option("--judge-errors", help="Judges' measured error rates (written by mmsafe judge eval --save-errors) to show ASR corrected for them. \\[default: the packaged measurements of classifier and keywords]")] = None,
    html: Annotated[bool, typer.Option("--html", help="Write one self-contained HTML page (charts, tables, a filterable gallery of every row) instead of printing.")] = False,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Where --html writes. \\[default: RUN/report.html, or B/compare.html for two runs]")] = None,
) -> None:
    """Print the metrics of a run folder: ASR, refusal and over-refusal with 95% CIs (overall and by category),
    ASR corrected for the judge's measured errors, utility on benign rows with answers, defenses against the
    baseline, cost, and where judges disagree. With two folders: both runs' rates, the change with its CI, and the
    rows whose verdict changed. --html writes the same as a page to open in a browser or send around."""
    from mmsafe.judges import MEASURED_ERRORS
    from mmsafe.metrics.corrected import load_judge_errors
    from mmsafe.report import tables
    from mmsafe.report.html import Run

    if len(run_dirs) > 2:
        fail(f"give one run folder, or two to compare; got {len(run_dirs)}")
    if format not in ("table", "json"):
        fail(f"unknown format {format!r}; known: table, json")
    if html and format != "table":
        fail("--html writes a page; --format json prints to the terminal: give one of them")
    source = judge_errors or (MEASURED_ERRORS if MEASURED_ERRORS.is_file() else None)
    try:
        measured = load_judge_errors(source) if source else {}
    except ValueError as e:
        fail(str(e))
    runs = []
    for d in run_dirs:
        try:
            run = Run.load(d)
        except FileNotFoundError as e:
            fail(str(e))
        if not run.rows:
            fail(f"{d}: no rows yet; run `mmsafe scan --out {d}` to start (or resume) one")
        runs.append(run)
    if html:
        from mmsafe.report.html import compare_report, run_report

        page = run_report(runs[0], measured, on_problem=warn) if len(runs) == 1 else \
            compare_report(runs[0], runs[1], on_problem=warn)
        dest = out or runs[-1].dir / ("report.html" if len(runs) == 1 else "compare.html")
        try:
            dest.write_text(page, encoding="utf-8")
        except OSError as e:
            fail(f"{dest}: cannot write the report ({e.strerror or e})")
        console.print(f"{dest} ({len(page.encode()) / 2**20:.1f} MiB), open it in a browser", highlight=False)
        return
    if len(runs) == 2:
        _report_comparison(runs[0].rows, runs[1].rows, format)
        return
    rows = runs[0].rows
    if format == "json":
        import json

        print(json.dumps(tables.report_json(rows, measured), indent=1, default=str))
        return
    console.print(tables.summary_table(rows, title=f"{run_dirs[0]}", judge_errors=measured))
    if by_category:
        console.print(tables.summary_table(rows, by=("target", "defense", "attack", "category"), title="by category",
                                           judge_errors=measured))
    from mmsafe.report.perturbation import perturbation_table

    for extra in (tables.targets_table(rows), tables.utility_table(rows), tables.defense_table(rows),
                  tables.frontier_table(rows), perturbation_table(rows)):
        if extra is not None:
            console.print(extra)
    console.print(tables.cost_table(rows))
    if len({j for r in rows for j in r["verdicts"]}) > 1:
        from mmsafe.report.agreement import agreement_table, disagreements_table

        console.print(agreement_table(rows))
        console.print(disagreements_table(rows, limit=10))


def _report_comparison(rows_a: list[dict], rows_b: list[dict], format: str) -> None:
    from mmsafe.metrics.compare import changed_verdicts
    from mmsafe.report.compare import changes_table, compare_groupings, comparison_json, delta_table

    if format == "json":
        import json

        print(json.dumps(comparison_json(rows_a, rows_b), indent=1, default=str))
        return
    by_group, by_category = compare_groupings(rows_a, rows_b)
    console.print(delta_table(rows_a, rows_b, by_group, "B against A"))
    console.print(delta_table(rows_a, rows_b, by_category, "by category"))
    console.print(changes_table(changed_verdicts(rows_a, rows_b)))


@app.command()
def export(
    run_dir: Annotated[Path, typer.Argument(help="A run folder written by mmsafe scan --out.")],
    format: Annotated[str, typer.Option("--format", "-f", help="jsonl (one nested object per row), csv or parquet (flat: one column per judge field, lists as JSON text in CSV).")] = "jsonl",
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="File to write \\[default: stdout; parquet needs a file].")] = None,
    images: Annotated[Optional[Path], typer.Option("--images", help="Also copy every image sent into this folder (one file per content hash); the export's image paths then point there, relative to the output file.")] = None,
) -> None:
    """Write every row of a run (prompt, response, verdicts keyed by judge, error, ...) as JSON lines, CSV or
    Parquet."""
    from mmsafe.report.export import FORMATS, export_images, write_csv, write_jsonl, write_parquet
    from mmsafe.runner.store import Store

    if format not in FORMATS:
        fail(f"unknown format {format!r}; known: {', '.join(FORMATS)}")
    if format == "parquet" and output is None:
        fail("parquet is binary: give a file with --output")
    try:
        store = Store.open_existing(run_dir)
    except FileNotFoundError as e:
        fail(str(e))
    try:
        rows = list(store.rows())
    finally:
        store.close()
    paths = None
    if images is not None:
        base = output.resolve().parent if output is not None else Path.cwd()
        paths = export_images(rows, run_dir, images, relative_to=base, on_problem=warn)
        err.print(f"{len(set(paths.values()))} images copied to {images}")
    write_text = write_jsonl if format == "jsonl" else write_csv
    try:
        if format == "parquet":
            n = write_parquet(rows, output, paths)  # type: ignore[arg-type] - checked above
        elif output is None:
            n = write_text(rows, sys.stdout, paths)
        else:
            with output.open("w", encoding="utf-8", newline="" if format == "csv" else None) as f:
                n = write_text(rows, f, paths)
    except (ImportError, OSError) as e:
        fail(str(e))
    if output is not None:
        err.print(f"{n} rows written to {output}")


@app.command("list")
def list_components(
    kind: Annotated[Optional[str], typer.Argument(help=f"One of: {', '.join(KINDS)} \\[default: all].")] = None,
) -> None:
    """List the registered components (built-in and from installed plugins) with a line on each."""
    from rich.table import Table

    from mmsafe.attacks import attacks
    from mmsafe.datasets import datasets
    from mmsafe.defenses import defenses
    from mmsafe.judges import judges
    from mmsafe.targets import targets

    registries = dict(zip(KINDS, (datasets, attacks, defenses, targets, judges)))
    if kind is not None and kind not in registries:
        fail(f"unknown kind {kind!r}; known: {', '.join(KINDS)}")
    table = Table("kind", "name", "what it is")
    for k, reg in registries.items():
        if kind in (None, k):
            for name in reg.names():
                table.add_row(k, name, reg.describe(name))
    console.print(table)


if __name__ == "__main__":
    app()
