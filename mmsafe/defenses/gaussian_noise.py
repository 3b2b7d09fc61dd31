from __future__ import annotations

import numpy as np
from PIL import Image

from mmsafe.defenses._purify import Purifier, to_array, to_image
from mmsafe.defenses.base import defenses


@defenses.register("gaussian-noise")
class GaussianNoise(Purifier):
    """Input purification: add seeded Gaussian noise (sigma in [0, 1] pixel units) to every image.

    Random noise drowns small adversarial perturbations before the model sees them (the randomised-input family;
    Cohen et al. 2019, "Certified Adversarial Robustness via Randomized Smoothing", is its certified form). Typography
    survives it by design: it is a defense against pixel attacks, measured here against typographic ones too.
    """

    def __init__(self, sigma: float = 0.05, seed: int = 0) -> None:
        if sigma < 0:
            raise ValueError(f"sigma must be >= 0, got {sigma}")
        self.sigma = sigma
        self.seed = seed

    def describe(self) -> str:
        return f"gaussian noise sigma={self.sigma}"

    def purify(self, image: Image.Image, rng: np.random.Generator) -> Image.Image:
        x = to_array(image)
        return to_image(x + rng.normal(0.0, self.sigma, x.shape).astype(np.float32))
