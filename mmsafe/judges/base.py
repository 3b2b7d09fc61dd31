from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mmsafe.component import Loadable
from mmsafe.registry import Registry
from mmsafe.types import NOT_APPLICABLE, Attempt, Verdict


class Judge(Loadable):
    """Decides, for each attempt, whether the attack succeeded (``unsafe``) and whether the model refused.

    ``judge`` gets the original request, the sample the model received (images included) and the response of each
    row, and returns one ``Verdict`` per attempt, in order. ``version`` is stored with every verdict: bump it when
    the judge's decisions change, so old and new verdicts are never mixed silently."""

    version: str = "1"
    # True when ``unsafe`` means the attack succeeded on any request, harmless ones included (a forced target
    # string): ASR then counts benign rows too. False for harm judges, whose ``unsafe`` only means something on
    # harmful requests.
    scores_benign: bool = False

    @property
    def name(self) -> str:
        spec = getattr(self, "spec", None)
        return spec.label if spec is not None else type(self).registry_name  # type: ignore[attr-defined]

    def judge(self, attempts: list[Attempt]) -> list[Verdict]:
        raise NotImplementedError

    def verdict(self, unsafe: bool | None, refusal: bool | None, score: float | None = None, label: str = "",
                details: dict[str, Any] | None = None, explanation: str = "") -> Verdict:
        """A verdict stamped with this judge's name, version and ``scores_benign``."""
        if not label:
            label = ("unsafe" if unsafe else "refusal" if refusal else "safe" if unsafe is False
                     else "not refused" if refusal is False else "unscored")
        return Verdict(self.name, self.version, unsafe, refusal, score, label, self.scores_benign, details or {},
                       explanation)

    def not_applicable(self, why: str) -> Verdict:
        """The verdict of a row this judge has nothing to say about (it lacks what the judge checks): stored, never
        counted."""
        return self.verdict(None, None, label=NOT_APPLICABLE, explanation=why)

    def scoped(self, attempts: list[Attempt], field: str,
               decide: Callable[[list[Attempt]], list[Verdict]]) -> list[Verdict]:
        """``decide`` on the rows whose request metadata has ``field`` (a scenario's goal), n/a on the others."""
        inside = [i for i, a in enumerate(attempts) if a.request.metadata.get(field)]
        decided = dict(zip(inside, decide([attempts[i] for i in inside])))
        return [decided[i] if i in decided else self.not_applicable(f"the sample has no {field!r} to check")
                for i in range(len(attempts))]

    def failed(self, error: str) -> Verdict:
        """The verdict of a row this judge could not judge (a crash, a judge model's error): stored, not counted."""
        return Verdict(self.name, self.version, None, None, None, "error", self.scores_benign, {}, "", error)


judges: Registry[Judge] = Registry("judge", "mmsafe.judges")
