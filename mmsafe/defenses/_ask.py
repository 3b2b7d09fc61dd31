"""Asking the wrapped model a question: what the model-in-the-loop defenses share."""

from __future__ import annotations

import re

from mmsafe.targets.base import Target
from mmsafe.types import Response, Sample

_WORD = re.compile(r"[a-z]+")


def ask(target: Target | None, samples: list[Sample]) -> list[Response]:
    """The target's answers, in batches of its own size."""
    if target is None:
        raise RuntimeError("this defense asks the model: wrap the target in a DefendedTarget (which binds it)")
    bs = max(1, target.batch_size)
    return [r for i in range(0, len(samples), bs) for r in target.generate(samples[i:i + bs])]


def yes_no(text: str) -> bool | None:
    """The first "yes" or "no" among the answer's first ten words; None when neither is there (a small model's
    rambling is read as no decision, never as a silent yes or no)."""
    for word in _WORD.findall(text.lower())[:10]:
        if word in ("yes", "no"):
            return word == "yes"
    return None
