"""Targets: models under test; register with ``@targets.register(name)``. ``WhiteBox`` and ``PromptEmbeddings`` are
the capabilities gradient attacks need (``targets/base.py``)."""

from mmsafe.targets.base import PromptEmbeddings, Target, WhiteBox, WhiteBoxTarget, lacks, require, targets

__all__ = ["PromptEmbeddings", "Target", "WhiteBox", "WhiteBoxTarget", "lacks", "require", "targets"]
