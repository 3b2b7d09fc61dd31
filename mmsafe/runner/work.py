"""The work of a scan, one chunk of rows at a time, the same under every executor: attack each sample, send it
through its defense to the target, judge the answers.

A ``Worker`` holds the components. It is built from a ``Recipe`` (specs only, so another process can build its own
from it: what the Ray executor sends) and may be handed components already built (the local executor reuses the
scan's own). It holds one target at a time: moving to the next target's rows closes the previous target's models
first, while attacks and judges, which do not depend on the target, stay loaded.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from mmsafe.attacks import Attack, attacks
from mmsafe.batching import each_or_alone
from mmsafe.defenses import defenses
from mmsafe.defenses.defended import DefendedTarget
from mmsafe.judges import Judge, judges
from mmsafe.registry import ComponentSpec
from mmsafe.targets import Target, targets
from mmsafe.types import Attempt, Row, Sample, Verdict


@dataclass(frozen=True)
class Item:
    """One row to compute on a chunk's target; attack and defense by label."""

    dataset: str
    sample: Sample
    attack: str
    defense: str


@dataclass(frozen=True)
class Chunk:
    """Rows of one target computed together: one ``generate`` batch of the target."""

    target: str
    items: list[Item]


@dataclass
class Done:
    """A chunk's finished rows, and the problems met on the way (bad samples, failed judges) for the driver to
    report: ``(message, once)``, where messages of one ``once`` key are printed once per scan (``Scan.problem``)."""

    rows: list[Row]
    problems: list[tuple[str, str | None]] = field(default_factory=list)


@dataclass(frozen=True)
class Recipe:
    """Every component of a scan as specs, keyed by the labels the rows carry."""

    targets: dict[str, ComponentSpec]
    attacks: dict[str, ComponentSpec]
    defenses: dict[str, ComponentSpec]
    judges: list[ComponentSpec]


def judge_rows(judge: Judge, attempts: list[Attempt], where: list[str],
               problem: Callable[[str], None]) -> list[Verdict]:
    """``judge`` on ``attempts``; when the batch fails, row by row, so a row the judge cannot handle gets a stored
    error verdict (named with ``where[i]`` to ``problem``) and its batch-mates are judged."""

    def run(chunk: list[Attempt]) -> list[Verdict]:
        out = judge.judge(chunk)
        if len(out) != len(chunk):
            raise RuntimeError(f"returned {len(out)} verdicts for {len(chunk)} rows")
        return out

    verdicts = []
    for w, v in zip(where, each_or_alone(attempts, run)):
        if isinstance(v, Exception):
            problem(f"judge {judge.name} failed on {w}: {type(v).__name__}: {v}")
            v = judge.failed(f"{type(v).__name__}: {v}")
        verdicts.append(v)
    return verdicts


class Worker:
    """Runs chunks with the components of ``recipe``. ``attacks`` and ``judges``, when given, are those components
    already built; ``given`` maps a target label to a target object to use instead of building one (its owner
    closes it). ``close`` closes everything else."""

    def __init__(self, recipe: Recipe, attacks_built: dict[str, Attack] | None = None,
                 judges_built: list[Judge] | None = None, given: dict[str, Target] | None = None) -> None:
        self.recipe = recipe
        self.attacks = attacks_built if attacks_built is not None else {
            label: attacks.build(spec) for label, spec in recipe.attacks.items()}
        self.judges = judges_built if judges_built is not None else [judges.build(s) for s in recipe.judges]
        self.given = dict(given or {})
        self._targets: dict[str, Target] = {}
        self._current: str | None = None
        self._defended: dict[str, DefendedTarget] = {}

    def target(self, label: str) -> Target:
        """The target of ``label``, built on first use; building loads no model."""
        if label not in self._targets:
            given = self.given.get(label)
            self._targets[label] = given if given is not None else targets.build(self.recipe.targets[label])
        return self._targets[label]

    def _use(self, label: str) -> None:
        """Make ``label`` the current target, closing the previous one's models (and its defenses) first."""
        if label != self._current:
            self._release()
            self._current = label

    def _release(self) -> None:
        for defended in self._defended.values():
            defended.close()  # the defenses' own models; the target is closed below
        self._defended.clear()
        if self._current is not None and self._current not in self.given:
            self.target(self._current).close()
        self._current = None

    def _defended_target(self, label: str) -> DefendedTarget:
        if label not in self._defended:
            spec = self.recipe.defenses[label]
            self._defended[label] = DefendedTarget(self.target(self._current), defenses.build(spec))  # type: ignore[arg-type]
        return self._defended[label]

    def run(self, chunk: Chunk) -> Done:
        """The chunk's rows, each with its attacked sample, response (or error) and verdicts."""
        self._use(chunk.target)
        problems: list[tuple[str, str | None]] = []
        rows = [Row(i.dataset, i.sample, i.attack, i.defense, chunk.target) for i in chunk.items]
        by_defense: dict[str, list[int]] = defaultdict(list)
        for n, (item, row) in enumerate(zip(chunk.items, rows)):
            try:
                row.attacked = self.attacks[item.attack].apply(item.sample)
            except Exception as e:  # noqa: BLE001 - bad sample data; named in the message, run goes on
                row.error = f"{item.attack} failed on {item.dataset}:{item.sample.id}: {e}"
                problems.append((row.error, None))
                continue
            by_defense[item.defense].append(n)
        # Each defense's rows go through that defense's DefendedTarget, which records its decisions on the response.
        for label, idx in by_defense.items():
            sent = [rows[n].attacked for n in idx]
            for n, (attacked, resp) in zip(idx, self._defended_target(label).run(sent)):  # type: ignore[arg-type]
                rows[n].attacked, rows[n].response = attacked, resp
        for r in rows:
            if r.response is not None and r.response.error:
                problems.append((f"{r.dataset}:{r.sample.id} [{r.attack}]: {r.response.error}", r.response.error))
        judged = [r for r in rows if r.error is None and r.response is not None and r.response.error is None]
        attempts = [Attempt(r.sample, r.attacked or r.sample, r.response) for r in judged]  # type: ignore[arg-type]
        where = [f"{r.dataset}:{r.sample.id} [{r.attack}]" for r in judged]
        for judge in self.judges:
            for r, v in zip(judged, judge_rows(judge, attempts, where, lambda msg: problems.append((msg, None)))):
                r.verdicts.append(v)
        return Done(rows, problems)

    def close(self) -> None:
        """Close every component held; models shared through the cache are dropped with their last user."""
        self._release()
        for label, target in self._targets.items():
            if label not in self.given:
                target.close()
        for component in [*self.attacks.values(), *self.judges]:
            component.close()
