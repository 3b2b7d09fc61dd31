"""Defenses: input and output decisions around a target; register with ``@defenses.register(name)``; wrap a target
with ``DefendedTarget`` (``mmsafe.defenses.defended``) to run them and record every decision."""

from mmsafe.defenses._purify import Purifier
from mmsafe.defenses.base import Decision, Defense, defenses

__all__ = ["Decision", "Defense", "Purifier", "defenses"]
