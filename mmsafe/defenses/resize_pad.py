from __future__ import annotations

import numpy as np
from PIL import Image

from mmsafe.defenses._purify import Purifier
from mmsafe.defenses.base import defenses


@defenses.register("resize-pad")
class ResizePad(Purifier):
    """Input purification: shrink every image by a random factor and pad it back to its size at a random offset.

    Xie et al. 2018, "Mitigating Adversarial Effects Through Randomization": the random rescale and placement
    misalign a perturbation crafted for fixed pixel positions. The factor (in [``min_scale``, 1]) and the offset
    are drawn from a generator seeded per sample and image, so runs are deterministic and resumable. Padding is
    ``fill`` (white, the background of typographic images).
    """

    def __init__(self, min_scale: float = 0.85, seed: int = 0, fill: int = 255) -> None:
        if not 0 < min_scale <= 1:
            raise ValueError(f"min_scale must be in (0, 1], got {min_scale}")
        self.min_scale = min_scale
        self.seed = seed
        self.fill = fill

    def describe(self) -> str:
        return f"random resize in [{self.min_scale}, 1] and pad"

    def purify(self, image: Image.Image, rng: np.random.Generator) -> Image.Image:
        w, h = image.size
        scale = rng.uniform(self.min_scale, 1.0)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        canvas = Image.new("RGB", (w, h), (self.fill,) * 3)
        canvas.paste(image.resize((nw, nh), Image.BILINEAR),
                     (int(rng.integers(0, w - nw + 1)), int(rng.integers(0, h - nh + 1))))
        return canvas
