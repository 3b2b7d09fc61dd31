from __future__ import annotations

import io

import numpy as np
from PIL import Image

from mmsafe.defenses._purify import Purifier
from mmsafe.defenses.base import defenses


@defenses.register("jpeg")
class Jpeg(Purifier):
    """Input purification: re-encode every image as JPEG at ``quality`` (1-95).

    JPEG's quantisation of high-frequency DCT coefficients removes much of a small adversarial perturbation (Das et
    al. 2017, "Keeping the Bad Guys Out: Protecting and Vaccinating Deep Learning with JPEG Compression"; Guo et al.
    2018, "Countering Adversarial Images using Input Transformations"). Deterministic.
    """

    def __init__(self, quality: int = 75) -> None:
        if not 1 <= quality <= 95:
            raise ValueError(f"quality must be in [1, 95], got {quality}")
        self.quality = quality

    def describe(self) -> str:
        return f"jpeg quality={self.quality}"

    def purify(self, image: Image.Image, rng: np.random.Generator) -> Image.Image:
        buf = io.BytesIO()
        image.save(buf, format="JPEG", quality=self.quality)
        buf.seek(0)
        with Image.open(buf) as out:
            return out.convert("RGB")
