"""Judges: decide whether a response refused and whether the attack succeeded; register with
``@judges.register(name)``."""

from pathlib import Path

from mmsafe.judges.base import Judge, judges

# Packaged judge error rates measured on held-out human-labelled answers (``mmsafe judge eval --save-errors``); the
# report corrects ASR with them.
MEASURED_ERRORS = Path(__file__).with_name("data") / "judge_errors.json"

__all__ = ["MEASURED_ERRORS", "Judge", "judges"]
