from __future__ import annotations

from mmsafe.defenses._request_screen import RequestScreen
from mmsafe.defenses.base import Decision, Defense, defenses
from mmsafe.images import load_image
from mmsafe.ocr import OCR
from mmsafe.types import Sample


@defenses.register("ocr-filter")
class OCRFilter(Defense):
    """Typography defense: read the text in the images (OCR) and block when it or the prompt is a harmful request.

    Typographic attacks (FigStep, Gong et al. 2023; MM-SafetyBench, Liu et al. 2024) move the harmful request from
    the text channel, where safety training looks, into the image. This filter moves it back: it reads each image
    with ``mmsafe.ocr`` and scores the prompt and every image text on their own (a FigStep prompt is an innocent
    carrier; the request is in the image) with a request-harm screen (``_request_screen.py``: logistic regression
    on MiniLM embeddings of mmsafe's labelled requests; the packaged judges judge responses, not requests). A
    request whose highest P(harmful) passes ``threshold`` gets a refusal; the model never sees it.
    """

    stages = ("input",)

    def __init__(self, threshold: float = 0.5, ocr: str = "rapidocr") -> None:
        if not 0 < threshold < 1:
            raise ValueError(f"threshold must be in (0, 1), got {threshold}")
        self.threshold = threshold
        self.ocr = OCR(ocr)  # the engine itself loads on first use
        self.screen_model = RequestScreen(threshold)

    def screen(self, samples: list[Sample]) -> list[Decision]:
        texts = [[s.prompt] + [t for t in (self.ocr(load_image(im)) for im in s.images) if t] for s in samples]
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
