"""Run the matrix dataset x attack x defense on one target, judge every answer, store every row.

Resumable by construction: a row is keyed by (dataset, sample, attack, defense, target) labels, and rows already in
the store are skipped. Judges named now but missing on stored rows are run on those rows (re-judging is cheap,
generating is not).
"""

from __future__ import annotations

import logging
import shutil
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import zip_longest

from mmsafe.attacks import Attack, attacks
from mmsafe.batching import each_or_alone
from mmsafe.config import ScanConfig
from mmsafe.datasets import datasets, resolve
from mmsafe.datasets._scenario import check_scenarios
from mmsafe.defenses import Defense, defenses
from mmsafe.defenses.defended import DefendedTarget
from mmsafe.judges import Judge, judges
from mmsafe.registry import ComponentSpec
from mmsafe.runner.environment import environment
from mmsafe.runner.store import Store
from mmsafe.targets import Target, targets
from mmsafe.types import Attempt, Response, Row, Sample, Verdict

log = logging.getLogger(__name__)

# Target arguments that change speed or placement but not answers: left out of the row key, so changing them
# resumes the same rows instead of starting new ones.
RUNTIME_ARGS = {"batch_size", "device"}
REJUDGE_BATCH = 64


def identity_label(spec: ComponentSpec) -> str:
    return ComponentSpec(name=spec.name, args={k: v for k, v in spec.args.items() if k not in RUNTIME_ARGS}).label


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


@dataclass
class _Work:
    dataset: str
    sample: Sample
    attack_label: str
    attack: Attack
    defense_label: str
    defense: Defense


class Scan:
    """Builds the components of a ``ScanConfig`` and runs them. ``on_progress(done, total)`` is called after every
    stored batch; ``on_problem(message)`` for every bad input found (file/row named in the message)."""

    def __init__(
        self,
        config: ScanConfig,
        on_progress: Callable[[int, int], None] | None = None,
        on_problem: Callable[[str], None] | None = None,
        target: Target | None = None,
    ) -> None:
        self.config = config
        self.on_progress = on_progress or (lambda done, total: None)
        self.problems: list[str] = []
        self._warned: set[str] = set()
        self._on_problem = on_problem or (lambda msg: None)
        self.target = target  # built when planning; building loads no model, so a resumed scan loads none
        self._owns_target = target is None
        self.target_label = identity_label(config.target)
        scenarios = check_scenarios(config.scenarios)
        # Scenarios add to the datasets named; named none, the scan is of the scenarios alone (not of mini as well).
        named = config.datasets if "datasets" in config.model_fields_set or not scenarios else []
        specs = {s.label: s for s in [*(resolve(s) for s in named), *scenarios]}  # a bare path becomes LOADER:PATH
        self.datasets = list(specs.values())
        self.attacks = [(identity_label(s), attacks.build(s)) for s in config.attacks]
        self.defenses = [(identity_label(s), defenses.build(s)) for s in config.defenses]
        self._defended_targets: dict[str, DefendedTarget] = {}
        chosen = [*config.judges, *own_judges(scenarios)] if config.judges else self.default_judges()
        self.judges: list[Judge] = [judges.build(s) for s in {s.label: s for s in chosen}.values()]

    def default_judges(self) -> list[ComponentSpec]:
        """With no judges named: keywords, plus what each attack and dataset names as its own measure of success."""
        names = ["keywords", *(j for _, a in self.attacks for j in a.default_judges())]
        return [ComponentSpec.parse(n) for n in dict.fromkeys(names)] + own_judges(self.datasets)

    def close(self) -> None:
        """Close every component this scan built; models shared through the cache are dropped with their last
        user."""
        built = [a for _, a in self.attacks] + [d for _, d in self.defenses] + list(self.judges)
        built += self._defended_targets.values()  # they hold the defenses' bindings, not the target
        if self.target is not None and self._owns_target:
            built.append(self.target)
        for component in built:
            component.close()

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

    def _get_target(self) -> Target:
        if self.target is None:
            self.target = targets.build(self.config.target)
        return self.target

    def _runnable(self) -> list[tuple[str, Attack]]:
        """The attacks that can work on the target; the others are skipped with a warning (an image attack on a
        text-only model)."""
        reads = set(self._get_target().modalities)
        out = []
        for label, attack in self.attacks:
            missing = sorted(set(attack.modalities) - reads)
            if missing:
                self.problem(f"skipping attack {label} on target {self.target_label}: it needs {', '.join(missing)} "
                             f"input, which the target does not read ({', '.join(sorted(reads))})")
            else:
                out.append((label, attack))
        return out

    def _loadable(self, work: list[_Work]) -> list[_Work]:
        """``work`` without the rows of attacks that fail to load (a gradient attack bound to a target without
        gradients): skipped with a warning naming attack and target, the rest of the scan runs."""
        for label, attack in {w.attack_label: w.attack for w in work}.items():
            try:
                attack.load()
            except Exception as e:  # noqa: BLE001 - one impossible pairing must not stop the others
                self.problem(f"skipping attack {label}: {e}")
                work = [w for w in work if w.attack_label != label]
        return work

    def plan(self, store: Store) -> tuple[list[_Work], int]:
        done = store.done_keys(with_errors=not self.config.retry_errors)
        work, skipped = [], 0
        samples = self._load_samples()
        runnable = self._runnable()
        # Attack-major order: consecutive rows share a prompt shape, which keeps batches evenly padded.
        for d_label, defense in self.defenses:
            for a_label, attack in runnable:
                for ds_label, sample in samples:
                    if (ds_label, sample.id, a_label, d_label, self.target_label) in done:
                        skipped += 1
                    else:
                        work.append(_Work(ds_label, sample, a_label, attack, d_label, defense))
        return self._loadable(work), skipped

    def _verdicts(self, judge: Judge, attempts: list[Attempt], where: list[str]) -> list[Verdict]:
        """``judge`` on ``attempts``; when the batch fails, row by row, so a row the judge cannot handle gets a
        stored error verdict (named in a warning with ``where[i]``) and its batch-mates are judged."""

        def run(chunk: list[Attempt]) -> list[Verdict]:
            out = judge.judge(chunk)
            if len(out) != len(chunk):
                raise RuntimeError(f"returned {len(out)} verdicts for {len(chunk)} rows")
            return out

        verdicts = []
        for w, v in zip(where, each_or_alone(attempts, run)):
            if isinstance(v, Exception):
                self.problem(f"judge {judge.name} failed on {w}: {type(v).__name__}: {v}")
                v = judge.failed(f"{type(v).__name__}: {v}")
            verdicts.append(v)
        return verdicts

    def _judge(self, attempts: list[Attempt], where: list[str]) -> list[list[Verdict]]:
        """Verdicts per row from every judge."""
        per_row: list[list[Verdict]] = [[] for _ in attempts]
        for judge in self.judges:
            for i, v in enumerate(self._verdicts(judge, attempts, where)):
                per_row[i].append(v)
        return per_row

    def _rejudge(self, store: Store) -> int:
        """Judge stored rows that lack a verdict from a judge named in this scan (or whose verdict is an error),
        with the same inputs as a first pass: the request, the sample sent with its images, the response."""
        n = 0
        for judge in self.judges:
            pending = store.unjudged(judge.name, judge.version)
            for start in range(0, len(pending), REJUDGE_BATCH):
                chunk = pending[start:start + REJUDGE_BATCH]
                where = [f"{r['dataset']}:{r['sample_id']} [{r['attack']}]" for r in chunk]
                verdicts = self._verdicts(judge, [store.attempt(r) for r in chunk], where)
                store.add_verdicts([(r["id"], [v]) for r, v in zip(chunk, verdicts)])
            n += len(pending)
        return n

    def _defended(self, label: str, defense: Defense) -> DefendedTarget:
        if label not in self._defended_targets:
            self._defended_targets[label] = DefendedTarget(self._get_target(), defense)
        return self._defended_targets[label]

    def _run_batch(self, batch: list[_Work]) -> list[Row]:
        rows = [Row(w.dataset, w.sample, w.attack_label, w.defense_label, self.target_label) for w in batch]
        by_defense: dict[str, list[int]] = defaultdict(list)
        for i, (w, row) in enumerate(zip(batch, rows)):
            try:
                row.attacked = w.attack.apply(w.sample)
            except Exception as e:  # noqa: BLE001 - bad sample data; named in the message, run goes on
                row.error = f"{w.attack_label} failed on {w.dataset}:{w.sample.id}: {e}"
                self.problem(row.error)
                continue
            by_defense[w.defense_label].append(i)
        # Each defense's rows go through that defense's DefendedTarget, which records its decisions on the response.
        for label, idx in by_defense.items():
            defended = self._defended(label, batch[idx[0]].defense)
            for i, (sent, resp) in zip(idx, defended.run([rows[i].attacked for i in idx])):  # type: ignore[misc]
                rows[i].attacked, rows[i].response = sent, resp
        judged = [r for r in rows if r.error is None and r.response is not None and r.response.error is None]
        for r in rows:
            if r.response is not None and r.response.error:
                self.problem(f"{r.dataset}:{r.sample.id} [{r.attack}]: {r.response.error}", once=r.response.error)
        attempts = [Attempt(r.sample, r.attacked or r.sample, r.response) for r in judged]  # type: ignore[arg-type]
        where = [f"{r.dataset}:{r.sample.id} [{r.attack}]" for r in judged]
        for r, verdicts in zip(judged, self._judge(attempts, where)):
            r.verdicts = verdicts
        return rows

    def run(self) -> ScanResult:
        cfg = self.config
        created = not cfg.out.exists()
        store = Store(cfg.out)
        written = False
        try:
            store.set_meta("config", cfg.model_dump(mode="json"))
            store.set_meta("environment", environment())
            work, skipped = self.plan(store)
            total = len(work) + skipped
            rejudged = self._rejudge(store)
            self.on_progress(skipped, total)
            done, errors = skipped, 0
            if work:
                bs = max(1, self._get_target().batch_size)
                for start in range(0, len(work), bs):
                    rows = self._run_batch(work[start:start + bs])
                    store.write(rows)
                    written = True
                    errors += sum(1 for r in rows if r.error or (r.response is not None and r.response.error))
                    done += len(rows)
                    self.on_progress(done, total)
            return ScanResult(str(cfg.out), total, skipped, len(work), errors, rejudged, self.problems)
        except BaseException:
            if created and not written:  # a scan that failed before its first row leaves no empty run folder
                store.close()
                shutil.rmtree(cfg.out, ignore_errors=True)
            raise
        finally:
            store.close()
            self.close()
