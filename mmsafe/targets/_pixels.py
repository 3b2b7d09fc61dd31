"""Image preprocessing in torch for the white-box targets: the processors' resize and normalise, differentiable,
so gradients reach the pixels. (The processors themselves work in numpy, outside the graph, and their default
"fast" versions need torchvision.)"""

from __future__ import annotations

from typing import Any


def resize(pixels: Any, size: tuple[int, int]) -> Any:
    """Bicubic resize of (B,3,H,W) pixels in [0,1], differentiable; clamped as PIL's bicubic is (it writes uint8)."""
    import torch.nn.functional as F

    if tuple(pixels.shape[-2:]) == tuple(size):
        return pixels
    out = F.interpolate(pixels, size=size, mode="bicubic", align_corners=False, antialias=True)
    return out.clamp(0.0, 1.0)


def normalise(pixels: Any, mean: Any, std: Any) -> Any:
    """``(pixels - mean) / std`` per channel, the processors' ``do_normalize`` (after rescaling to [0,1])."""
    import torch

    m = torch.as_tensor(mean, dtype=pixels.dtype, device=pixels.device).view(1, -1, 1, 1)
    s = torch.as_tensor(std, dtype=pixels.dtype, device=pixels.device).view(1, -1, 1, 1)
    return (pixels - m) / s


def to_pixels(image: Any, size: tuple[int, int]) -> Any:
    """A PIL image as a (3,H,W) float tensor in [0,1] at ``size`` = (height, width), resized by PIL (bicubic)."""
    import numpy as np
    import torch
    from PIL import Image

    im = image.convert("RGB").resize((size[1], size[0]), Image.Resampling.BICUBIC)
    return torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()
