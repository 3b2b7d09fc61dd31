from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

from mmsafe.defenses._purify import Purifier
from mmsafe.defenses.base import defenses


@defenses.register("median")
class Median(Purifier):
    """Input purification: median filter of ``size`` x ``size`` pixels (odd) on every image.

    Xu et al. 2018, "Feature Squeezing" (spatial smoothing): a median replaces each pixel by its neighbourhood's
    median, removing isolated perturbed pixels while keeping edges (and so keeping typography legible).
    """

    def __init__(self, size: int = 3) -> None:
        if size < 3 or size % 2 == 0:
            raise ValueError(f"size must be odd and >= 3, got {size}")
        self.size = size

    def describe(self) -> str:
        return f"median {self.size}x{self.size}"

    def purify(self, image: Image.Image, rng: np.random.Generator) -> Image.Image:
        return image.filter(ImageFilter.MedianFilter(self.size))
