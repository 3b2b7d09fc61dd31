from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mmsafe.component import Loadable
from mmsafe.registry import Registry
from mmsafe.types import Response, Sample

if TYPE_CHECKING:
    from mmsafe.targets.base import Target

ACTIONS = ("pass", "rewrite", "block")


@dataclass
class Decision:
    """A defense's answer for one row with its reasons: ``value`` is the sample (input) or response (output) to go
    on with; ``action`` is ``pass``, ``rewrite`` or ``block`` (``None``: inferred from ``value``); ``reason`` says
    why in a few words; ``details`` holds what the defense measured (a score, the text it read)."""

    value: Sample | Response
    action: str | None = None
    reason: str = ""
    details: dict[str, Any] = field(default_factory=dict)


class Defense(Loadable):
    """Sits between the attacked sample and the target.

    ``on_input`` may rewrite the sample or block it by returning a ``Response`` (the refusal the user would see);
    ``on_output`` may rewrite or replace the model's response. Defaults pass everything through. Either may return a
    ``Decision`` to say why. ``screen``/``review`` are the batched forms a ``DefendedTarget`` calls: a defense that
    asks a model overrides them to ask for a whole batch at once. Model-in-the-loop defenses reach the wrapped target
    as ``self.target`` (set by ``bind``); heavy models load on first use, never in ``__init__``.
    """

    target: Target | None = None
    # "input", "output" or both: which stages a DefendedTarget records for this defense.
    stages: tuple[str, ...] = ("input", "output")

    @property
    def name(self) -> str:
        spec = getattr(self, "spec", None)
        return spec.label if spec is not None else getattr(type(self), "registry_name", type(self).__name__)

    def bind(self, target: Target) -> None:
        """Called by ``DefendedTarget`` with the target it wraps (the undefended model)."""
        self.target = target

    def on_input(self, sample: Sample) -> Sample | Response | Decision:
        return sample

    def on_output(self, sample: Sample, response: Response) -> Response | Decision:
        return response

    def screen(self, samples: list[Sample]) -> list[Sample | Response | Decision]:
        return [self.on_input(s) for s in samples]

    def review(self, samples: list[Sample], responses: list[Response]) -> list[Response | Decision]:
        return [self.on_output(s, r) for s, r in zip(samples, responses)]

    def during_generation(self) -> contextlib.AbstractContextManager[None]:
        """Entered around the wrapped target's ``generate`` (model-side defenses hook the model here)."""
        return contextlib.nullcontext()

    def refusal(self, reason: str, text: str = "I'm sorry, but I can't help with that request.", **details: Any
                ) -> Decision:
        """A block: the refusal the user sees instead of the model's answer."""
        return Decision(Response(text=text, details={"blocked_by": self.name}), "block", reason, details)


class Chain(Defense):
    """``a+b``: ``a`` screens the input first and reviews the output last (it wraps ``b``, which wraps the model),
    like middleware. ``jpeg+ocr-filter+protector``: compress, then read and screen, then check the answer."""

    def __init__(self, parts: list[Defense]) -> None:
        self.parts = parts

    def bind(self, target: Target) -> None:
        super().bind(target)
        for p in self.parts:
            p.bind(target)

    # Used without a DefendedTarget (which runs the parts itself to record each one's decision).
    def on_input(self, sample: Sample) -> Sample | Response:
        for p in self.parts:
            out = unwrap(p.on_input(sample))
            if isinstance(out, Response):
                return out
            sample = out
        return sample

    def on_output(self, sample: Sample, response: Response) -> Response:
        for p in reversed(self.parts):
            response = unwrap(p.on_output(sample, response))  # type: ignore[assignment]
        return response


def unwrap(out: Sample | Response | Decision) -> Sample | Response:
    return out.value if isinstance(out, Decision) else out


defenses: Registry[Defense] = Registry("defense", "mmsafe.defenses", chain=Chain)
