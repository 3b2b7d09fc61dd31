from __future__ import annotations

from mmsafe.component import Loadable
from mmsafe.registry import Registry
from mmsafe.types import Sample


class Attack(Loadable):
    """Turns a sample into the adversarial sample sent to the target. Must be deterministic for a given sample,
    so that a resumed run sends the same bytes and the stored image hashes stay valid."""

    # What the attacked sample needs the target to read: the runner skips targets that cannot (an image attack on
    # a text-only model). Text-only attacks keep the sample's own images but do not depend on them.
    modalities: tuple[str, ...] = ("text",)

    def apply(self, sample: Sample) -> Sample:
        raise NotImplementedError

    def default_judges(self) -> list[str]:
        """Judge specs that score this attack's success (a forced string needs ``contains:<string>``); a scan
        with no judges named uses keywords plus these."""
        return []


class Composed(Attack):
    """``a+b``: apply ``a`` then ``b`` (e.g. ``figstep+refusal-suppression`` renders the image, then wraps the
    text prompt in a template)."""

    def __init__(self, parts: list[Attack]) -> None:
        self.parts = parts
        self.modalities = tuple(dict.fromkeys(m for p in parts for m in p.modalities))

    def apply(self, sample: Sample) -> Sample:
        for part in self.parts:
            sample = part.apply(sample)
        return sample

    def default_judges(self) -> list[str]:
        return list(dict.fromkeys(j for p in self.parts for j in p.default_judges()))

    def load(self) -> None:
        for part in self.parts:
            part.load()

    def close(self) -> None:
        for part in self.parts:
            part.close()


attacks: Registry[Attack] = Registry("attack", "mmsafe.attacks", chain=Composed)
