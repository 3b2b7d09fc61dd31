from __future__ import annotations

import numpy as np
from PIL import Image

from mmsafe.defenses._purify import Purifier, to_array, to_image
from mmsafe.defenses.base import defenses


def denoise_tv(image: np.ndarray, weight: float, eps: float = 2e-4, max_iter: int = 100) -> np.ndarray:
    """Rudin-Osher-Fatemi total-variation denoising of an HxWxC image in [0, 1], each channel on its own, by
    Chambolle's projection algorithm (the algorithm of ``skimage.restoration.denoise_tv_chambolle``, written here
    in numpy because scikit-image is not a dependency). Stops when the energy changes by less than ``eps`` of its
    first value."""
    x = image.astype(np.float32)
    p = np.zeros((2, *x.shape), np.float32)  # the dual variable, one field per spatial axis
    g = np.zeros_like(p)
    d = np.zeros_like(x)
    tau = 0.25  # 1 / (2 * spatial dims): the step that makes the iteration converge
    out, e_init, e_prev = x, None, None
    for i in range(max_iter):
        if i > 0:
            d = -p.sum(0)  # minus the divergence of p
            d[1:] += p[0, :-1]
            d[:, 1:] += p[1, :, :-1]
            out = x + d
        g[0, :-1] = np.diff(out, axis=0)
        g[1, :, :-1] = np.diff(out, axis=1)
        norm = np.sqrt((g**2).sum(0))
        energy = (float((d**2).sum()) + weight * float(norm.sum())) / x.size
        if e_init is None:
            e_init = e_prev = energy
        elif abs(e_prev - energy) < eps * e_init:
            break
        else:
            e_prev = energy
        p -= tau * g
        p /= 1 + norm * (tau / weight)
    return out


@defenses.register("tv-purify")
class TVPurify(Purifier):
    """Input purification: total-variation minimisation (Rudin-Osher-Fatemi denoising), the DiffPure-spirit purifier.

    DiffPure (Nie et al. 2022, "Diffusion Models for Adversarial Purification") noises the image and lets a diffusion
    model restore it, washing out adversarial perturbations. No diffusion model can be downloaded here, so this
    purifier keeps the idea (project the input onto natural-looking images before the model sees it) with the
    classical image prior instead: minimise ``||u - x||^2 / 2 + weight * TV(u)`` (Rudin, Osher & Fatemi 1992,
    "Nonlinear total variation based noise removal algorithms"; Chambolle 2004's algorithm; Guo et al. 2018,
    "Countering Adversarial Images using Input Transformations", showed TV minimisation as a defense).
    Piecewise-flat images (typography) pass almost unchanged: it is a pixel-attack defense. Deterministic.
    """

    def __init__(self, weight: float = 0.1, max_iter: int = 100) -> None:
        if weight <= 0:
            raise ValueError(f"weight must be > 0, got {weight}")
        self.weight = weight
        self.max_iter = max_iter

    def describe(self) -> str:
        return f"total-variation denoising weight={self.weight}"

    def purify(self, image: Image.Image, rng: np.random.Generator) -> Image.Image:
        return to_image(denoise_tv(to_array(image), self.weight, max_iter=self.max_iter))
