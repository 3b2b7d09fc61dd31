"""Attacks: transformations of a ``Sample``; register with ``@attacks.register(name)``. The gradient attacks' shared
base and PGD engine, and the saved adversarial set, are re-exported here for other packages and user code."""

from mmsafe.attacks._gradient import Crafted, GradientAttack, read_prompts
from mmsafe.attacks._pgd import PGDConfig, PGDResult, pgd
from mmsafe.attacks.base import Attack, attacks

__all__ = ["Attack", "Crafted", "GradientAttack", "PGDConfig", "PGDResult", "attacks", "pgd", "read_prompts"]
