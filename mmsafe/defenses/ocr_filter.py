from __future__ import annotations

import re

from mmsafe.defenses._request_screen import RequestScreen
from mmsafe.defenses.base import Decision, Defense, defenses
from mmsafe.images import load_image
from mmsafe.ocr import OCR
from mmsafe.types import Sample

_MARKER_LINE = re.compile(r"\s*\d{1,2}[.)]?\s*")


def request_text(read: str) -> str:
    """OCR lines as one line, empty list items ("1.", "2.") dropped: they carry no request."""
    return " ".join(line.strip() for line in read.splitlines() if not _MARKER_LINE.fullmatch(line))


@defenses.register("ocr-filter")
class OCRFilter(Defense):
    """Typography defense: read the text in the images (OCR) and block when it or the prompt is a harmful request.

    Typographic attacks (FigStep, Gong et al. 2023; MM-SafetyBench, Liu et al. 2024) move the harmful request from
    the text channel, where safety training looks, into the image. This filter moves it back: it reads each image
    with ``mmsafe.ocr`` and scores the prompt and every image text on their own (a FigStep prompt is an innocent
    carrier; the request is in the image) with a request-harm screen (``_request_screen.py``: logistic regression
    on MiniLM embeddings of mmsafe's labelled requests; the packaged judges judge responses, not requests). A
    request whose highest P(harmful) passes ``threshold`` gets a refusal; the model never sees it. The default
    0.7 is above the 0.64 that FigStep's carrier prompt alone scores, so an image's text, not the attack's wording,
    decides (the screen's measured rates are in its module).
    """

    stages = ("input",)

    def __init__(self, threshold: float = 0.7, ocr: str = "rapidocr") -> None:
        if not 0 < threshold < 1:
            raise ValueError(f"threshold must be in (0, 1), got {threshold}")
        self.threshold = threshold
        self.ocr = OCR(ocr)  # the engine itself loads on first use
        self.screen_model = RequestScreen(threshold)

    def screen(self, samples: list[Sample]) -> list[Decision]:
        texts = [[s.prompt] + [t for t in (request_text(self.ocr(load_image(im))) for im in s.images) if t]
                 for s in samples]
        flat = self.screen_model.probabilities([t for ts in texts for t in ts])
        out, at = [], 0
        for s, ts in zip(samples, texts):
            probs, at = flat[at:at + len(ts)], at + len(ts)
            worst = max(range(len(ts)), key=probs.__getitem__)
            where = "prompt" if worst == 0 else "image text"
            details = {"p_harmful": round(probs[worst], 4), "image_text": ts[1:]}
            if probs[worst] > self.threshold:
                out.append(self.refusal(f"{where} screened harmful (p={probs[worst]:.2f})", **details))
            else:
                out.append(Decision(s, "pass", f"max p(harmful)={probs[worst]:.2f} ({where})", details))
        return out
