from __future__ import annotations

import numpy as np
from PIL import Image

from mmsafe.defenses._purify import Purifier, to_array, to_image
from mmsafe.defenses.base import defenses


@defenses.register("bit-depth")
class BitDepth(Purifier):
    """Input purification: reduce every image to ``bits`` bits per channel (feature squeezing).

    Xu et al. 2018, "Feature Squeezing: Detecting Adversarial Examples in Deep Neural Networks": rounding to 2^bits
    levels erases perturbations smaller than half a level. Each pixel moves by at most 1 / (2 * (2^bits - 1)).
    """

    def __init__(self, bits: int = 4) -> None:
        if not 1 <= bits <= 8:
            raise ValueError(f"bits must be in [1, 8], got {bits}")
        self.bits = bits

    def describe(self) -> str:
        return f"bit depth {self.bits}"

    def purify(self, image: Image.Image, rng: np.random.Generator) -> Image.Image:
        levels = 2**self.bits - 1
        return to_image(np.rint(to_array(image) * levels) / levels)
