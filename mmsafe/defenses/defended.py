"""A defended target is a target: any target behind a chain of defenses, every decision recorded on the answer."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mmsafe.defenses.base import Chain, Decision, Defense, defenses
from mmsafe.registry import ComponentSpec
from mmsafe.targets.base import Target
from mmsafe.types import Response, Sample


@dataclass
class Screened:
    """A sample after the input defenses: ``sent`` is what goes on to the model; ``blocked`` the answer given
    instead (a refusal, or the error of a defense that failed), None when the model is to answer; ``records`` the
    decisions so far."""

    sent: Sample
    blocked: Response | None = None
    records: list[dict[str, Any]] = field(default_factory=list)

    def finish(self, response: Response) -> Response:
        """``response`` carrying every decision, its latency including the defenses' seconds."""
        response.details["defenses"] = self.records
        response.latency_s += sum(r["seconds"] for r in self.records)
        return response


class DefendedTarget(Target):
    """``target`` behind ``defense`` (one defense or an ``a+b`` chain).

    For a batch: each part's ``screen`` runs in chain order on the samples still live (a block stops that sample
    there: its refusal is the answer, the model never sees it); the model answers the rest; each part's ``review``
    runs in reverse order on the answers. Every part's decision on every row lands in ``Response.details["defenses"]``
    as ``{defense, stage, action, reason, seconds, details}``; ``seconds`` is the part's share of its batch call, and
    the response's ``latency_s`` includes them, so cost tables count what the defense adds. A defense that raises
    fails only its own rows (error responses), never the batch. The wrapped target belongs to the caller unless
    ``owns_target``; ``close`` closes the defenses (and the target only then).
    """

    def __init__(self, target: Target, defense: Defense | str | dict[str, Any] | ComponentSpec,
                 owns_target: bool = False) -> None:
        self.target = target
        self.defense = defense if isinstance(defense, Defense) else defenses.build(defense)
        self.parts: list[Defense] = self.defense.parts if isinstance(self.defense, Chain) else [self.defense]
        self.batch_size = target.batch_size
        self.modalities = getattr(target, "modalities", Target.modalities)
        self.owns_target = owns_target
        self.defense.bind(target)

    def generate(self, samples: list[Sample]) -> list[Response]:
        return [r for _, r in self.run(samples)]

    def run(self, samples: list[Sample]) -> list[tuple[Sample, Response]]:
        """``(sample sent to the model after the input defenses, final response)`` per sample, in order."""
        screened = self.check_inputs(samples)
        live = [i for i, s in enumerate(screened) if s.blocked is None]
        answers: list[Response] = []
        if live:
            with contextlib.ExitStack() as stack:  # model-side defenses hook the model for this call only
                for part in self.parts:
                    stack.enter_context(part.during_generation())
                answers = self.target.generate([screened[i].sent for i in live])
        reviewed = dict(zip(live, self.check_outputs([screened[i] for i in live], answers)))
        return [(s.sent, reviewed[i] if i in reviewed else s.finish(s.blocked)) for i, s in enumerate(screened)]

    def check_inputs(self, samples: list[Sample]) -> list[Screened]:
        """The input stage alone (a guard proxy runs it before forwarding the request upstream): each part's
        ``screen`` in chain order on the samples still live; a block stops a sample there."""
        screened = [Screened(s) for s in samples]
        for part in self.parts:
            live = [s for s in screened if s.blocked is None]
            if "input" not in part.stages or not live:
                continue
            outs, secs = _call(part.screen, [s.sent for s in live])
            for s, out in zip(live, outs):
                if isinstance(out, Exception):
                    s.blocked = Response(error=f"defense {part.name} failed on input: {type(out).__name__}: {out}")
                    continue
                d = _decide(out, s.sent)
                s.records.append(_record(part, "input", d, secs))
                if isinstance(d.value, Response):
                    s.blocked = d.value
                else:
                    s.sent = d.value
        return screened

    def check_outputs(self, screened: list[Screened], responses: list[Response]) -> list[Response]:
        """The output stage alone, on the model's answers to the live ``screened`` samples: each part's ``review``
        in reverse chain order on the answers that are not errors. Returns the final responses, every decision of
        both stages in ``details["defenses"]``."""
        responses = list(responses)
        for part in reversed(self.parts):
            ok = [i for i, r in enumerate(responses) if not r.error]
            if "output" not in part.stages or not ok:
                continue
            outs, secs = _call(lambda xs: part.review([x[0] for x in xs], [x[1] for x in xs]),
                               [(screened[i].sent, responses[i]) for i in ok])
            for i, out in zip(ok, outs):
                if isinstance(out, Exception):
                    responses[i] = Response(error=f"defense {part.name} failed on output: {type(out).__name__}: {out}")
                    continue
                d = _decide(out, responses[i])
                screened[i].records.append(_record(part, "output", d, secs))
                new: Response = d.value  # type: ignore[assignment]
                if new is not responses[i]:  # a replacement keeps what the model was fed, and its time
                    new.details = {**responses[i].details, **new.details}
                    new.latency_s = responses[i].latency_s
                responses[i] = new
        return [s.finish(r) for s, r in zip(screened, responses)]

    def close(self) -> None:
        for part in self.parts:
            close = getattr(part, "close", None)
            if close is not None:
                close()
        if self.owns_target:
            self.target.close()


def _call(fn: Callable[[list[Any]], list[Any]], items: list[Any]) -> tuple[list[Any], float]:
    """``fn`` on the batch, and the seconds per item; when the batch raises, item by item, a failing item's result
    being its exception."""
    t0 = time.perf_counter()
    try:
        outs = list(fn(items))
        if len(outs) != len(items):
            raise RuntimeError(f"returned {len(outs)} results for {len(items)} inputs")
    except Exception:  # noqa: BLE001 - one bad row must not fail its batch-mates
        outs = []
        for item in items:
            try:
                outs.append(fn([item])[0])
            except Exception as e:  # noqa: BLE001
                outs.append(e)
    return outs, (time.perf_counter() - t0) / max(1, len(items))


def _decide(out: Any, before: Sample | Response) -> Decision:
    d = out if isinstance(out, Decision) else Decision(out)
    if d.action is None:
        if isinstance(before, Sample) and isinstance(d.value, Response):
            d.action = "block"
        elif d.value is before or d.value == before or (
                isinstance(before, Response) and d.value.text == before.text):  # type: ignore[union-attr]
            d.action = "pass"
        else:
            d.action = "rewrite"
    return d


def _record(part: Defense, stage: str, d: Decision, seconds: float) -> dict[str, Any]:
    return {"defense": part.name, "stage": stage, "action": d.action, "reason": d.reason,
            "seconds": round(seconds, 4), "details": d.details}
