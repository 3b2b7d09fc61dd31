"""Core types shared by every component: what flows from dataset to attack to target to judge to store.

Plain dataclasses: they are built millions of times in a large run and need no validation past the config layer
(which is pydantic, see ``mmsafe.config``).
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ImageRef:
    """An image given by file path or by encoded bytes (PNG/JPEG); decoded only when a target needs pixels.

    Attacks create images in memory (``data``); datasets point at files (``path``). ``sha256`` is the hash of the
    encoded bytes, so the same rendered image always has the same hash and the store can deduplicate files.
    """

    path: Path | None = None
    data: bytes | None = None

    def __post_init__(self) -> None:
        if (self.path is None) == (self.data is None):
            raise ValueError("ImageRef needs exactly one of path or data")

    @classmethod
    def from_pil(cls, image: Any, format: str = "PNG") -> ImageRef:
        buf = io.BytesIO()
        image.save(buf, format=format)
        return cls(data=buf.getvalue())

    def read_bytes(self) -> bytes:
        return self.data if self.data is not None else Path(self.path).read_bytes()  # type: ignore[arg-type]

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.read_bytes()).hexdigest()

    def describe(self) -> str:
        return str(self.path) if self.path is not None else f"<{len(self.data or b'')} bytes in memory>"


@dataclass(frozen=True)
class Sample:
    """One request to a model: a text prompt plus zero or more images.

    ``benign`` marks requests a well-behaved model should answer (used for over-refusal); ``category`` keeps the
    source benchmark's own category name; ``metadata`` carries loader-specific fields (e.g. FigStep's
    ``instruction``, the statement form of the question). ``system``: a system prompt for this request (set by the
    ``safety-prompt`` defense); targets that honour it use it instead of their own default one.
    """

    id: str
    prompt: str
    images: tuple[ImageRef, ...] = ()
    category: str = ""
    source: str = ""
    benign: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)
    system: str | None = None

    def with_(self, **changes: Any) -> Sample:
        return replace(self, **changes)

    @property
    def goal(self) -> str:
        """What the request asks for in plain words, the text judges read: ``metadata["goal"]`` where a dataset ships
        its requests already attacked (FigStep's images, JailBreakV's jailbreak text: the carrier in ``prompt``),
        else ``prompt``."""
        return str(self.metadata.get("goal") or self.prompt)


@dataclass
class Response:
    """A target's answer to one sample. ``error`` is set (and ``text`` empty) when the target could not answer."""

    text: str = ""
    error: str | None = None
    latency_s: float = 0.0
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    # What the target actually fed its model (e.g. the OCR text it read): kept for debugging judge disagreements.
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Attempt:
    """What a judge sees of one row: the dataset's ``request`` (what the attacker wanted), the ``sent`` sample (the
    image and text the model actually received, after attack and defense) and the model's ``response``."""

    request: Sample
    sent: Sample
    response: Response

    @classmethod
    def of(cls, sample: Sample, response: Response) -> Attempt:
        """An attempt whose sample was sent as it is (no attack): a judge run on plain (prompt, response) pairs."""
        return cls(sample, sample, response)


# The label of a verdict on a row outside a judge's scope (a scenario judge on another scenario's row): stored, so the
# row counts as judged on resume, and left out of every metric as if the judge had not seen the row.
NOT_APPLICABLE = "n/a"


@dataclass(frozen=True)
class Verdict:
    """One judge's decision on one response; the judge decides what it means, the metrics only count it.

    ``unsafe``: the attack succeeded (harmful compliance, or the attacker's target reached); ``refusal``: the model
    declined. Either is ``None`` when this judge has no opinion on it or could not decide: never silently safe.
    ``scores_benign``: ``unsafe`` means something on harmless requests too (a forced target string), so ASR counts
    benign rows. ``score`` is the judge's raw number (a probability, a rubric score), kept for reading and
    calibration, never averaged into a rate. ``details`` holds structured output (probabilities, hazard codes,
    rubric fields); ``error`` says why the judge failed on this row.
    """

    judge: str
    version: str
    unsafe: bool | None
    refusal: bool | None
    score: float | None = None
    label: str = ""
    scores_benign: bool = False
    details: dict[str, Any] = field(default_factory=dict)
    explanation: str = ""
    error: str | None = None


@dataclass
class Row:
    """One (sample, attack, defense, target) cell of a scan: the lineage from dataset row to verdicts."""

    dataset: str
    sample: Sample
    attack: str
    defense: str
    target: str
    attacked: Sample | None = None
    response: Response | None = None
    verdicts: list[Verdict] = field(default_factory=list)
    error: str | None = None

    @property
    def key(self) -> tuple[str, str, str, str, str]:
        return (self.dataset, self.sample.id, self.attack, self.defense, self.target)
