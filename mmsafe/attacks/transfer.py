from __future__ import annotations

from typing import Any

from mmsafe.attacks._gradient import GradientAttack
from mmsafe.attacks.base import Attack, attacks
from mmsafe.registry import ComponentSpec
from mmsafe.types import Sample


@attacks.register("transfer")
class Transfer(Attack):
    """Transfer attack: a gradient attack crafted on a white-box surrogate, sent to whatever target the scan
    evaluates (a black-box one included). Threat model: no gradients of the victim; success measures how well the
    perturbation transfers (Qi et al. 2023 and Bailey et al. 2023 both report transfer this way)."""

    def __init__(self, attack: str | dict[str, Any] = "visual-jailbreak", surrogate: str = "tiny-llava") -> None:
        """``attack``: a gradient attack spec (``hijack``, ``{name: refusal, args: {eps: 16}}``, ...);
        ``surrogate``: the white-box target spec it is crafted on (``tiny-llava``, ``hf:<id>``)."""
        spec = ComponentSpec.parse(attack)
        if "target" in spec.args:
            raise ValueError("give the surrogate as transfer's 'surrogate' argument, not as the attack's target")
        if not issubclass(attacks.get(spec.name), GradientAttack):
            raise ValueError(f"transfer needs a gradient attack (hijack, visual-jailbreak, refusal, patch), "
                             f"not {spec.name!r}")
        self.inner = attacks.build({"name": spec.name, "args": {**spec.args, "target": surrogate}})
        self.surrogate = surrogate

    modalities = ("text", "image")

    def default_judges(self) -> list[str]:
        return self.inner.default_judges()

    def load(self) -> None:
        self.inner.load()

    def close(self) -> None:
        self.inner.close()

    def apply(self, sample: Sample) -> Sample:
        out = self.inner.apply(sample)
        return out.with_(metadata={**out.metadata, "surrogate": self.surrogate})
