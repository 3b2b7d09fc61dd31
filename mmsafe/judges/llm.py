"""LLM-as-judge over any configured target, with a published rubric (see ``_rubrics.py`` for the three rubrics and
how answers are read)."""

from __future__ import annotations

from typing import Any

from mmsafe.judges._rubrics import PARSERS, RUBRICS, SCOPES
from mmsafe.judges.base import Judge, judges
from mmsafe.targets.base import Target
from mmsafe.types import Attempt, Response, Sample, Verdict

EXCERPT = 300  # characters of the judge's raw answer kept in an "unscored" verdict, enough to see why


def excerpt(text: str, n: int = EXCERPT) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


@judges.register("llm")
class LLMJudge(Judge):
    """LLM-as-judge: any target grades answers with a rubric (mmsb, harmbench, strongreject, injection).

    The judge model's answer is parsed leniently (case, punctuation, "Answer: yes", JSON, the first decisive word);
    an answer it cannot read is stored as 'unscored' with the raw text, never as safe."""

    version = "1"

    def __init__(
        self,
        rubric: str = "mmsb",
        target: str | dict[str, Any] | Target = "reader",
        max_response_chars: int = 4000,
        images: bool = False,
    ) -> None:
        """``target``: a target spec (``reader``, ``{name: reader, args: {model: ...}}``) or a built ``Target``.
        ``max_response_chars``: longer answers are cut before judging, so one runaway answer cannot overflow the
        judge model's context. ``images``: also show the judge model the images the target received (for a judge
        that can read them; the embedded reader reads their text)."""
        if rubric not in RUBRICS:
            raise ValueError(f"unknown rubric {rubric!r}; known: {', '.join(sorted(RUBRICS))}")
        self.rubric = rubric
        self.scope = SCOPES.get(rubric)
        self.scores_benign = self.scope is not None
        self.template = RUBRICS[rubric]
        self.parse = PARSERS[rubric]
        self.max_response_chars = max_response_chars
        self.images = images
        self._target_spec = target
        self._target: Target | None = target if isinstance(target, Target) else None
        self._owns_target = self._target is None  # a target passed in built is its owner's to close

    @property
    def target(self) -> Target:
        if self._target is None:  # built on first use: listing or configuring a judge loads no model
            from mmsafe.targets import targets

            self._target = targets.build(self._target_spec)  # type: ignore[arg-type]
        return self._target

    def load(self) -> None:
        self.target.load()  # through the model cache: the same model as the scan's target is not loaded again

    def close(self) -> None:
        if self._owns_target and self._target is not None:
            self._target.close()
            self._target = None

    def prompt(self, sample: Sample, response: Response) -> str:
        return self.template.format(request=sample.goal, instruction=sample.metadata.get("instruction", ""),
                                    response=response.text[: self.max_response_chars])

    def read(self, answer: Response) -> Verdict:
        """One judge-model answer -> verdict."""
        if answer.error:
            return self.failed(f"judge target error: {answer.error}")
        parsed = self.parse(answer.text)
        if parsed is None:
            return self.verdict(None, None, details={"answer": excerpt(answer.text) or "<empty answer>"},
                                explanation="unreadable answer")
        return self.verdict(parsed.unsafe, parsed.refusal, parsed.score,
                            details={"rubric": self.rubric, "read": parsed.how, "answer": excerpt(answer.text, 120)})

    def ask(self, attempts: list[Attempt]) -> list[Response]:
        """The judge model's raw answers, one per row."""
        target = self.target
        # The rubric gets the request (what the attacker wanted) and the answer; with ``images``, the judge model
        # also sees the images the target received.
        asks = [Sample(id=f"judge-{i}", prompt=self.prompt(a.request, a.response),
                       images=a.sent.images if self.images else ()) for i, a in enumerate(attempts)]
        bs = max(1, target.batch_size)
        answers: list[Response] = []
        for start in range(0, len(asks), bs):
            answers.extend(target.generate(asks[start:start + bs]))
        return answers

    def judge(self, attempts: list[Attempt]) -> list[Verdict]:
        def decide(chunk: list[Attempt]) -> list[Verdict]:
            return [self.read(a) for a in self.ask(chunk)]

        return decide(attempts) if self.scope is None else self.scoped(attempts, self.scope, decide)
