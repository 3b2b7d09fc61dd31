from __future__ import annotations

from mmsafe.component import Loadable
from mmsafe.registry import Registry
from mmsafe.types import Response, Sample, Verdict


class Judge(Loadable):
    """Scores responses. ``version`` is stored with every verdict: bump it when the judge's decisions change so
    old and new verdicts are never mixed silently."""

    version: str = "1"
    # True when a score of 1 means the attack succeeded on any request, harmless ones included (a forced target
    # string): ASR then counts benign rows too. False for harm judges, whose score only means something on
    # harmful requests.
    scores_benign: bool = False

    @property
    def name(self) -> str:
        spec = getattr(self, "spec", None)
        return spec.label if spec is not None else type(self).registry_name  # type: ignore[attr-defined]

    def judge(self, samples: list[Sample], responses: list[Response]) -> list[Verdict]:
        raise NotImplementedError


judges: Registry[Judge] = Registry("judge", "mmsafe.judges")
