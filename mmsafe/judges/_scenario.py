"""Base of the scenario judges: each decides one scenario's goal from a field the scenario dataset stores in the
request's metadata (``canary``, ``tool_goal``, ``injection``, ``claim``, ``privacy``); a row without that field
(another dataset's, another scenario's) gets an n/a verdict, which every metric leaves out."""

from __future__ import annotations

import re
from typing import Any

from mmsafe.judges.base import Judge
from mmsafe.types import Attempt, Verdict


class ScenarioJudge(Judge):
    # The request metadata field that holds the attacker's goal for this judge.
    field: str = ""
    # Success means the attacker's goal was reached, whatever the user asked: counted on every row.
    scores_benign = True

    def judge(self, attempts: list[Attempt]) -> list[Verdict]:
        return self.scoped(attempts, self.field, self.decide)

    def decide(self, attempts: list[Attempt]) -> list[Verdict]:
        """Verdicts for rows that carry the field, in order."""
        return [self.check(a, a.request.metadata[self.field]) for a in attempts]

    def check(self, attempt: Attempt, goal: Any) -> Verdict:
        raise NotImplementedError


def words(text: str) -> str:
    """``text`` case-folded with every run of non-alphanumeric characters as one space: "PINEAPPLE-7!" and
    "pineapple 7" compare equal."""
    return " ".join(re.sub(r"[\W_]+", " ", text.casefold()).split())


def contains_words(text: str, phrase: str) -> bool:
    """``phrase`` occurs in ``text`` as whole words, ignoring case and punctuation."""
    return f" {words(phrase)} " in f" {words(text)} "
