from __future__ import annotations

from typing import Any

from mmsafe.targets._hf_common import HFVisionTarget
from mmsafe.targets._pixels import normalise, resize
from mmsafe.targets.base import targets


@targets.register("hf-idefics3")
class Idefics3Target(HFVisionTarget):
    """Idefics3 / SmolVLM (e.g. HuggingFaceTB/SmolVLM-256M-Instruct), white-box: gradients reach the image pixels.

    Image splitting is off: the whole image is fed once, as the processor's global view, resized to the vision
    encoder's square input (``vision_config.image_size``, 512 for SmolVLM, 364 for Idefics3). The processor would
    also split large images into up to 4x4 tiles plus this global view; a fixed single view keeps the loss a plain
    function of one pixel tensor (and generate, sharing the path, sees exactly what the attack optimised).
    """

    model_types = ("idefics3", "smolvlm")
    image_marker = "<image>"  # chat template's marker; the processor expands it (processing_idefics3.py)

    def setup(self) -> None:
        vision = self.config.vision_config
        side = vision.image_size
        self._size = (side, side)
        self.mean, self.std = self.image_processor.image_mean, self.image_processor.image_std
        # Tokens per image after the connector's pixel shuffle: (side / patch)^2 / scale_factor^2.
        self.seq_len = int((side // vision.patch_size) ** 2 / self.config.scale_factor**2)

    @property
    def fixed_image_size(self) -> tuple[int, int]:
        return self._size

    def image_text(self) -> str:
        # Single, unsplit image as Idefics3Processor/SmolVLMProcessor write it: fake token, global tag, image tokens.
        return "<fake_token_around_image><global-img>" + "<image>" * self.seq_len + "<fake_token_around_image>"

    def vision_inputs(self, pixels: Any) -> dict[str, Any]:
        import torch

        x = normalise(resize(pixels, self._size), self.mean, self.std).unsqueeze(1)  # (B, 1 image, 3, H, W)
        mask = torch.ones(x.shape[0], 1, *self._size, dtype=torch.bool, device=x.device)
        return {"pixel_values": x, "pixel_attention_mask": mask}
