from __future__ import annotations

import hashlib

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

from mmsafe.defenses._ask import ask
from mmsafe.defenses._purify import to_array, to_image
from mmsafe.defenses.base import Decision, Defense, defenses
from mmsafe.images import load_image
from mmsafe.types import ImageRef, Sample


def _crop(im: Image.Image, rng: np.random.Generator) -> Image.Image:
    w, h = im.size
    s = rng.uniform(0.85, 0.95)
    cw, ch = round(w * s), round(h * s)
    x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    return im.crop((x, y, x + cw, y + ch)).resize((w, h), Image.BILINEAR)


def _rotate(im: Image.Image, rng: np.random.Generator) -> Image.Image:
    return im.rotate(float(rng.uniform(-10, 10)), Image.BILINEAR, fillcolor=(255, 255, 255))


def _noise(im: Image.Image, rng: np.random.Generator) -> Image.Image:
    x = to_array(im)
    return to_image(x + rng.normal(0, 0.05, x.shape).astype(np.float32))


def _blur(im: Image.Image, rng: np.random.Generator) -> Image.Image:
    return im.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.5, 1.2))))


def _jitter(im: Image.Image, rng: np.random.Generator) -> Image.Image:
    return ImageEnhance.Contrast(ImageEnhance.Brightness(im).enhance(rng.uniform(0.7, 1.3))).enhance(rng.uniform(0.7, 1.3))


# JailGuard's image mutators that keep text legible to the model (flips would make every typographic image,
# harmful or not, unreadable and so "divergent").
IMAGE_MUTATIONS = {"crop": _crop, "rotate": _rotate, "noise": _noise, "blur": _blur, "jitter": _jitter}


def _mutate_text(text: str, rng: np.random.Generator) -> str:
    """JailGuard's random deletion and punctuation insertion: drop ~10% of the words, insert a mark somewhere."""
    words = text.split()
    kept = [w for w in words if rng.random() >= 0.1] or words
    at = int(rng.integers(0, len(kept) + 1))
    return " ".join([*kept[:at], str(rng.choice(list(".,!?;:"))), *kept[at:]])


@defenses.register("jailguard")
class JailGuard(Defense):
    """Model-in-the-loop: JailGuard; answers to mutated copies of an input diverge for attacks: above threshold, block.

    Zhang et al. 2024, "JailGuard: A Universal Detection Framework for LLM Prompt-based Attacks". Attacks are less
    robust than benign inputs: small mutations of an attack input change the model's answers more. ``variants``
    copies are mutated (images: crop, rotate, noise, blur, contrast/brightness, seeded per sample; text-only
    requests: random word deletion and punctuation insertion), the model answers each, and the divergence (mean
    pairwise 1 - cosine of the answers' MiniLM embeddings, the classifier judge's embedder; the paper uses KL
    divergence of spaCy similarity vectors) above ``threshold`` blocks the request. ``variants`` extra model calls
    per request.
    """

    stages = ("input",)

    def __init__(self, variants: int = 4, threshold: float = 0.35, seed: int = 0) -> None:
        if variants < 2:
            raise ValueError(f"variants must be >= 2, got {variants}")
        self.variants = variants
        self.threshold = threshold
        self.seed = seed

    def _variant(self, sample: Sample, k: int) -> Sample:
        digest = hashlib.sha256(f"{self.seed}\0{sample.id}\0{k}".encode()).digest()
        rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
        if not sample.images:
            return sample.with_(id=f"{sample.id}/jailguard-{k}", prompt=_mutate_text(sample.prompt, rng))
        names = list(IMAGE_MUTATIONS)
        mutate = IMAGE_MUTATIONS[names[(k + int(rng.integers(len(names)))) % len(names)]]
        return sample.with_(id=f"{sample.id}/jailguard-{k}",
                            images=tuple(ImageRef.from_pil(mutate(load_image(im), rng)) for im in sample.images))

    def screen(self, samples: list[Sample]) -> list[Decision]:
        from mmsafe.embeddings import embed

        copies = [self._variant(s, k) for s in samples for k in range(self.variants)]
        answers = ask(self.target, copies)
        failed = next((a.error for a in answers if a.error), None)
        if failed:
            raise RuntimeError(f"the model could not answer a mutated copy: {failed}")
        emb = embed([a.text or " " for a in answers]).reshape(len(samples), self.variants, -1)
        out = []
        upper = np.triu_indices(self.variants, 1)
        for s, e in zip(samples, emb):
            divergence = float((1 - (e @ e.T)[upper]).mean())
            details = {"divergence": round(divergence, 4)}
            if divergence > self.threshold:
                out.append(self.refusal(f"answers to mutated copies diverge ({divergence:.2f})", **details))
            else:
                out.append(Decision(s, "pass", f"divergence {divergence:.2f}", details))
        return out
