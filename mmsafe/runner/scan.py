"""Run the matrix target x dataset x attack x defense, judge every answer, store every row.

Resumable by construction: a row is keyed by (dataset, sample, attack, defense, target) labels, and rows already in
the store are skipped. Judges named now but missing on stored rows are run on those rows (re-judging is cheap,
generating is not). The scan plans the chunks and writes each finished one to the store; an executor
(``mmsafe.runner.executor``) runs them, in this process or on Ray, through the same ``Worker``.
"""

from __future__ import annotations

import logging
import shutil
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import zip_longest

from mmsafe.attacks import attacks
from mmsafe.config import ScanConfig, identity_label
from mmsafe.datasets import check_scenarios, datasets, resolve
from mmsafe.defenses import defenses
from mmsafe.judges import Judge, judges
from mmsafe.registry import ComponentSpec
from mmsafe.runner.environment import environment
from mmsafe.runner.executor import Executor, executor_for
from mmsafe.runner.store import Store
from mmsafe.runner.work import Chunk, Item, Recipe, Worker, judge_rows
from mmsafe.targets import Target
from mmsafe.types import Sample

log = logging.getLogger(__name__)

REJUDGE_BATCH = 64


def spread(samples: list[Sample], n: int | None) -> list[Sample]:
    """The first ``n`` samples taken round-robin over (category, benign) groups, so a small ``--limit`` still covers
    harmful and benign rows of many categories. Deterministic: the same data and n give the same subset."""
    if n is None or n >= len(samples):
        return samples
    groups: dict[tuple[str, bool], list[Sample]] = defaultdict(list)
    for s in samples:
        groups[(s.category, s.benign)].append(s)
    picked = [s for layer in zip_longest(*groups.values()) for s in layer if s is not None][:n]
    order = {id(s): i for i, s in enumerate(samples)}
    return sorted(picked, key=lambda s: order[id(s)])


def own_judges(specs: list[ComponentSpec]) -> list[ComponentSpec]:
    """The judges the datasets of ``specs`` name as deciding success on their samples (a scenario's)."""
    names: list[str] = []
    for spec in specs:
        with datasets.build(spec) as ds:
            names.extend(ds.default_judges())
    return [ComponentSpec.parse(n) for n in dict.fromkeys(names)]


@dataclass
class ScanResult:
    out: str
    total: int
    skipped: int
    generated: int
    errors: int
    rejudged: int
    problems: list[str] = field(default_factory=list)


class Scan:
    """Builds the components of a ``ScanConfig`` and runs them. ``on_progress(done, total)`` is called after every
    stored chunk; ``on_problem(message)`` for every bad input found (file/row named in the message). ``target``: a
    target object to scan instead of building the config's one target (its owner closes it); ``executor``: where
    the chunks run (default: the config's ``executor``)."""

    def __init__(
        self,
        config: ScanConfig,
        on_progress: Callable[[int, int], None] | None = None,
        on_problem: Callable[[str], None] | None = None,
        target: Target | None = None,
        executor: Executor | None = None,
    ) -> None:
        self.config = config
        self.on_progress = on_progress or (lambda done, total: None)
        self.problems: list[str] = []
        self._warned: set[str] = set()
        self._on_problem = on_problem or (lambda msg: None)
        self.target_labels = [t.key for t in config.targets]
        if target is not None and len(self.target_labels) != 1:
            raise ValueError("a target object stands for the one target of a scan, not for several")
        scenarios = check_scenarios(config.scenarios)
        # Scenarios add to the datasets named; named none, the scan is of the scenarios alone (not of mini as well).
        named = config.datasets if "datasets" in config.model_fields_set or not scenarios else []
        specs = {s.label: s for s in [*(resolve(s) for s in named), *scenarios]}  # a bare path becomes LOADER:PATH
        self.datasets = list(specs.values())
        self.attacks = [(identity_label(s), attacks.build(s)) for s in config.attacks]
        for spec in config.defenses:  # a bad name or argument fails here, before any row runs
            defenses.build(spec).close()
        self.defenses = [identity_label(s) for s in config.defenses]
        chosen = [*config.judges, *own_judges(scenarios)] if config.judges else self.default_judges()
        judge_specs = list({s.label: s for s in chosen}.values())
        self.judges: list[Judge] = [judges.build(s) for s in judge_specs]
        recipe = Recipe(targets={t.key: t for t in config.targets}, attacks=dict(zip(
            [a for a, _ in self.attacks], config.attacks)), defenses=dict(zip(self.defenses, config.defenses)),
            judges=judge_specs)
        # Targets are built when planning, which loads no model: a resumed scan with nothing to do loads none.
        self.worker = Worker(recipe, dict(self.attacks), self.judges,
                             {self.target_labels[0]: target} if target is not None else None)
        self.executor = executor or executor_for(config)

    def default_judges(self) -> list[ComponentSpec]:
        """With no judges named: keywords, plus what each attack and dataset names as its own measure of success."""
        names = ["keywords", *(j for _, a in self.attacks for j in a.default_judges())]
        return [ComponentSpec.parse(n) for n in dict.fromkeys(names)] + own_judges(self.datasets)

    def close(self) -> None:
        """Close every component this scan built (not a target it was given); models shared through the cache are
        dropped with their last user."""
        self.worker.close()

    def problem(self, msg: str, once: str | None = None) -> None:
        """Record ``msg``; print it unless a message with the same ``once`` key was printed (a bad image fails every
        attack and defense of its sample, and every sample that shares it: one warning says it)."""
        self.problems.append(msg)
        if once is None or once not in self._warned:
            self._on_problem(msg)
        if once is not None:
            self._warned.add(once)

    def _load_samples(self) -> list[tuple[str, Sample]]:
        out = []
        for spec in self.datasets:
            with datasets.build(spec) as ds:
                samples = ds.load()
            for p in ds.problems:
                self.problem(p)
            out.extend((spec.label, s) for s in spread(samples, self.config.limit))
        return out

    def _runnable(self, label: str) -> list[str]:
        """The attacks that can work on target ``label``; the others are skipped with a warning (an image attack
        on a text-only model)."""
        reads = set(self.worker.target(label).modalities)
        out = []
        for a_label, attack in self.attacks:
            missing = sorted(set(attack.modalities) - reads)
            if missing:
                self.problem(f"skipping attack {a_label} on target {label}: it needs {', '.join(missing)} "
                             f"input, which the target does not read ({', '.join(sorted(reads))})")
            else:
                out.append(a_label)
        return out

    def _unloadable(self, labels: set[str]) -> set[str]:
        """Of the attacks ``labels``, those that fail to load (a gradient attack bound to a target without
        gradients): skipped with a warning naming attack and target, the rest of the scan runs."""
        failed = set()
        for label, attack in self.attacks:
            if label in labels:
                try:
                    attack.load()
                except Exception as e:  # noqa: BLE001 - one impossible pairing must not stop the others
                    self.problem(f"skipping attack {label}: {e}")
                    failed.add(label)
        return failed

    def plan(self, store: Store) -> tuple[list[Chunk], int]:
        """The chunks still to compute, target by target, and the number of rows already stored."""
        done = store.done_keys(with_errors=not self.config.retry_errors)
        samples = self._load_samples()
        work: dict[str, list[Item]] = {}
        skipped = 0
        for label in self.target_labels:
            work[label] = []
            runnable = self._runnable(label)
            # Attack-major order: consecutive rows share a prompt shape, which keeps batches evenly padded.
            for d_label in self.defenses:
                for a_label in runnable:
                    for ds_label, sample in samples:
                        if (ds_label, sample.id, a_label, d_label, label) in done:
                            skipped += 1
                        else:
                            work[label].append(Item(ds_label, sample, a_label, d_label))
        failed = self._unloadable({i.attack for items in work.values() for i in items})
        chunks = []
        for label, items in work.items():
            items = [i for i in items if i.attack not in failed]
            size = max(1, self.worker.target(label).batch_size)
            chunks += [Chunk(label, items[start:start + size]) for start in range(0, len(items), size)]
        return chunks, skipped

    def _rejudge(self, store: Store) -> int:
        """Judge stored rows that lack a verdict from a judge named in this scan (or whose verdict is an error),
        with the same inputs as a first pass: the request, the sample sent with its images, the response."""
        n = 0
        for judge in self.judges:
            pending = store.unjudged(judge.name, judge.version)
            for start in range(0, len(pending), REJUDGE_BATCH):
                chunk = pending[start:start + REJUDGE_BATCH]
                where = [f"{r['dataset']}:{r['sample_id']} [{r['attack']}]" for r in chunk]
                verdicts = judge_rows(judge, [store.attempt(r) for r in chunk], where, self.problem)
                store.add_verdicts([(r["id"], [v]) for r, v in zip(chunk, verdicts)])
            n += len(pending)
        return n

    def _check_labels(self, store: Store) -> None:
        """A target label must keep naming the same model in a run folder: rows stored under it would otherwise be
        resumed as answers of another model."""
        known = store.get_meta("targets", {})
        for spec in self.config.targets:
            before, now = known.get(spec.key), identity_label(spec)
            if before is not None and before != now:
                raise ValueError(f"{self.config.out}: target label {spec.key!r} was {before} in this run, not {now}; "
                                 "give the changed target another label or scan into another --out")
            known[spec.key] = now
        store.set_meta("targets", known)

    def run(self) -> ScanResult:
        cfg = self.config
        created = not cfg.out.exists()
        store = Store(cfg.out)
        written = False
        try:
            store.set_meta("config", cfg.model_dump(mode="json"))
            store.set_meta("environment", environment())
            self._check_labels(store)
            chunks, skipped = self.plan(store)
            total = skipped + sum(len(c.items) for c in chunks)
            rejudged = self._rejudge(store)
            self.on_progress(skipped, total)
            done, errors = skipped, 0
            for finished in self.executor.run(chunks, self.worker):
                for message, once in finished.problems:
                    self.problem(message, once)
                store.write(finished.rows)
                written = True
                errors += sum(1 for r in finished.rows if r.error or (r.response is not None and r.response.error))
                done += len(finished.rows)
                self.on_progress(done, total)
            return ScanResult(str(cfg.out), total, skipped, total - skipped, errors, rejudged, self.problems)
        except BaseException:
            if created and not written:  # a scan that failed before its first row leaves no empty run folder
                store.close()
                shutil.rmtree(cfg.out, ignore_errors=True)
            raise
        finally:
            store.close()
            self.close()
