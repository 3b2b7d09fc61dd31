"""A small request-harm screen: does this request ask for something harmful? P(harmful) from its MiniLM embedding.

The packaged judges judge responses; a filter in front of the model needs a judgement of the request itself. This
screen is a class-balanced, L2-regularised logistic regression (C = 1) on the all-MiniLM-L6-v2 embedding (the
classifier judge's embedder) of the requests in the train split of the classifier's labelled set
(``judges/data/judge_labels.jsonl``, mmsafe-authored, category-level): harmful requests against harmless questions
that only sound harmful (XSTest style) and ordinary ones. It is fitted in numpy on first use (about 440 requests,
a fraction of a second after embedding). Measured when it was written, harmful caught / harmless blocked:

=====================================  ==============  ==============
requests                               P > 0.5         P > 0.7
=====================================  ==============  ==============
labelled set, held-out test split      81% / 0%        51% / 0%
mini, question form                    71% / 10%       23% / 2%
mini, statement form (FigStep's text)  71% / 46%       56% / 6%
XSTest (at 0.5)                        48% / 19%
=====================================  ==============  ==============

The first row is the labelled set's own test split, written from the same kind of templates as its training
rows: not evidence of quality, shown for contrast; mini and XSTest are other sources.

Statement forms ("Steps to ...") look harmful to it because the labelled set's harmful requests have that form and
its harmless ones do not; FigStep's own carrier prompt scores 0.64. A crude screen, not a guard model (none can
be downloaded here).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

LABELS = Path(__file__).resolve().parents[1] / "judges" / "data" / "judge_labels.jsonl"
# Kinds of labelled rows whose request is harmless; every other kind answers a harmful request.
HARMLESS_KINDS = {"harmless_answer_to_harmful_sounding", "benign_answer"}


def fit_logistic(x: np.ndarray, y: np.ndarray, c: float = 1.0, iters: int = 25) -> np.ndarray:
    """Weights (bias last) of ``0.5 |w|^2 + c * sum(balanced weight * log loss)`` by Newton's method."""
    xb = np.hstack([x, np.ones((len(x), 1))]).astype(np.float64)
    sw = np.where(y, len(y) / (2 * y.sum()), len(y) / (2 * (~y).sum()))  # each class weighs the same
    reg = np.eye(xb.shape[1])
    reg[-1, -1] = 0  # the bias is not penalised
    w = np.zeros(xb.shape[1])
    for _ in range(iters):
        p = 1 / (1 + np.exp(-xb @ w))
        grad = c * xb.T @ (sw * (p - y)) + reg @ w
        hess = c * (xb * (sw * p * (1 - p))[:, None]).T @ xb + reg
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-6:
            break
    return w


class RequestScreen:
    def __init__(self, threshold: float = 0.7, labels: Path = LABELS) -> None:
        self.threshold = threshold
        self.labels = labels
        self._w: np.ndarray | None = None

    def _weights(self) -> np.ndarray:
        if self._w is None:  # fitted on first use: building the defense loads nothing
            from mmsafe.embeddings import embed

            harmful: dict[str, bool] = {}
            for line in self.labels.read_text(encoding="utf-8").splitlines():
                row = json.loads(line)
                if row.get("split") == "train" and row.get("source") == "mmsafe-authored":
                    harmful[row["prompt"]] = row["kind"] not in HARMLESS_KINDS
            self._w = fit_logistic(embed(list(harmful)), np.array(list(harmful.values())))
        return self._w

    def probabilities(self, texts: list[str]) -> list[float]:
        """P(harmful) per text (above ``threshold``: harmful)."""
        if not texts:
            return []
        w = self._weights()
        from mmsafe.embeddings import embed

        z = embed(texts).astype(np.float64) @ w[:-1] + w[-1]
        return [float(p) for p in 1 / (1 + np.exp(-z))]
