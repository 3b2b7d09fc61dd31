"""Shared shape of the input purifiers: each image of a sample is rewritten, the text passes as it is."""

from __future__ import annotations

import hashlib

import numpy as np
from PIL import Image

from mmsafe.defenses.base import Decision, Defense
from mmsafe.images import load_image
from mmsafe.types import ImageRef, Sample


def to_array(image: Image.Image) -> np.ndarray:
    """HxWx3 float32 in [0, 1]."""
    return np.asarray(image.convert("RGB"), dtype=np.float32) / 255


def to_image(x: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(np.rint(x * 255), 0, 255).astype(np.uint8), "RGB")


class Purifier(Defense):
    """Rewrites every image with ``purify``; ``rng`` is seeded by (``seed``, sample id, image index), so a resumed
    run sends the same pixels. ``details`` record the largest and mean pixel change in [0, 1] units."""

    stages = ("input",)
    seed: int = 0

    def purify(self, image: Image.Image, rng: np.random.Generator) -> Image.Image:
        raise NotImplementedError

    def purify_array(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``purify`` on an HxWx3 array in [0, 1], through the 8-bit image a model would receive, at the same size
        (what an adaptive attack differentiates around, see ``GradientAttack``'s ``through``)."""
        out = self.purify(to_image(x), rng)
        h, w = x.shape[:2]
        return to_array(out if out.size == (w, h) else out.resize((w, h), Image.BILINEAR))

    def describe(self) -> str:
        """The reason recorded on every rewrite (the purifier and its budget)."""
        return self.name

    def rng(self, sample: Sample, index: int) -> np.random.Generator:
        digest = hashlib.sha256(f"{self.seed}\0{sample.id}\0{index}".encode()).digest()
        return np.random.default_rng(int.from_bytes(digest[:8], "little"))

    def on_input(self, sample: Sample) -> Decision:
        if not sample.images:
            return Decision(sample, "pass", "no image")
        images, max_change, mean_change = [], 0.0, []
        for k, ref in enumerate(sample.images):
            before = load_image(ref)
            after = self.purify(before, self.rng(sample, k))
            diff = np.abs(to_array(after) - to_array(before.resize(after.size)))
            max_change, mean_change = max(max_change, float(diff.max())), [*mean_change, float(diff.mean())]
            images.append(ImageRef.from_pil(after))
        return Decision(sample.with_(images=tuple(images)), "rewrite", self.describe(),
                        {"max_abs_change": round(max_change, 4), "mean_abs_change": round(float(np.mean(mean_change)), 4)})
