from __future__ import annotations

from typing import Any

from mmsafe.targets._hf_common import HFVisionTarget
from mmsafe.targets._pixels import normalise, resize
from mmsafe.targets.base import targets


@targets.register("hf-qwen2-vl")
class Qwen2VLTarget(HFVisionTarget):
    """Qwen2-VL / Qwen2.5-VL (e.g. Qwen/Qwen2-VL-2B-Instruct), white-box: gradients reach the image pixels.

    These models take any resolution; the loss path (and generate, so both see the same input) fixes it to
    ``image_size`` (default 224x224, rounded to a multiple of patch_size x merge_size = 28) and patchifies in torch
    exactly as Qwen2VLImageProcessor does, giving ``pixel_values`` and ``image_grid_thw``.
    """

    model_types = ("qwen2_vl", "qwen2_5_vl")
    image_marker = "<|image_pad|>"  # the chat template writes <|vision_start|><|image_pad|><|vision_end|>

    def __init__(self, model: str, image_size: int | tuple[int, int] = 224, **kwargs: Any) -> None:
        """``image_size``: side (or (height, width)) the image is fed at, rounded to the model's 28-pixel grid;
        the other arguments are ``HFVisionTarget``'s."""
        super().__init__(model, **kwargs)
        self._requested = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)

    def setup(self) -> None:
        ip = self.image_processor
        self.patch, self.merge, self.temporal = ip.patch_size, ip.merge_size, ip.temporal_patch_size
        self.mean, self.std = ip.image_mean, ip.image_std
        factor = self.patch * self.merge
        self._size = tuple(max(factor, round(s / factor) * factor) for s in self._requested)
        self.image_token_id = self.config.image_token_id

    @property
    def fixed_image_size(self) -> tuple[int, int]:
        return self._size  # type: ignore[return-value]

    def image_text(self) -> str:
        h, w = self._size
        return self.image_marker * ((h // self.patch) * (w // self.patch) // self.merge**2)

    def vision_inputs(self, pixels: Any) -> dict[str, Any]:
        import torch

        x = normalise(resize(pixels, self._size), self.mean, self.std)
        b, c, h, w = x.shape
        p, m, t = self.patch, self.merge, self.temporal
        gh, gw = h // p, w // p
        # Same layout as Qwen2VLImageProcessor.patchify: merge-window-major patch order, channel then temporal copy
        # (a still image is repeated over the temporal patch) then the patch pixels in each row.
        x = x.reshape(b, c, gh // m, m, p, gw // m, m, p).permute(0, 2, 5, 3, 6, 1, 4, 7)
        x = x.unsqueeze(6).expand(*x.shape[:6], t, p, p)
        pixel_values = x.reshape(b * gh * gw, c * t * p * p)
        grid = torch.tensor([[1, gh, gw]] * b, device=pixels.device)
        return {"pixel_values": pixel_values, "image_grid_thw": grid}

    def token_inputs(self, input_ids: Any, labels: Any | None, has_image: bool) -> dict[str, Any]:
        # M-RoPE needs to know which tokens are image tokens (1) vs text (0), as the processor returns.
        return {"mm_token_type_ids": (input_ids == self.image_token_id).int()}
