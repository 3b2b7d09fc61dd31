from __future__ import annotations

from typing import Any

from mmsafe.targets._hf_common import HFVisionTarget
from mmsafe.targets._pixels import normalise, resize
from mmsafe.targets.base import targets


@targets.register("hf-mllama")
class MllamaTarget(HFVisionTarget):
    """Llama 3.2 Vision (e.g. meta-llama/Llama-3.2-11B-Vision-Instruct), white-box: gradients reach the image pixels.

    MllamaImageProcessor cuts an image into up to 4 tiles by aspect ratio; here the image is one tile, resized to
    ``vision_config.image_size`` (560) square with aspect ratio id 1 (the 1x1 layout), and the other tile slots are
    zero padding masked out, as the processor pads them. One tile keeps the loss a plain function of one pixel
    tensor; the text attends to the image through the cross-attention mask from the ``<|image|>`` token on.
    """

    model_types = ("mllama",)
    image_marker = "<|image|>"
    system_as_text = True  # the Llama 3.2 template reads a system message's content as a string

    def setup(self) -> None:
        vision = self.config.vision_config
        self._size = (vision.image_size, vision.image_size)
        self.tiles = vision.max_num_tiles
        self.mean, self.std = self.image_processor.image_mean, self.image_processor.image_std
        self.image_token_id = self.config.image_token_index
        # aspect_ratio_ids index supported_aspect_ratios from 1 (0 is padding); (1, 1) is one tile.
        self.ratio_id = [list(r) for r in vision.supported_aspect_ratios].index([1, 1]) + 1

    @property
    def fixed_image_size(self) -> tuple[int, int]:
        return self._size

    def image_text(self) -> str:
        return self.image_marker  # one token; the image enters through cross-attention, not as input tokens

    def vision_inputs(self, pixels: Any) -> dict[str, Any]:
        import torch

        x = normalise(resize(pixels, self._size), self.mean, self.std)
        b = x.shape[0]
        # The vision tower's tile embeddings are sized for max_num_tiles: pad the unused slots with zeros.
        pad = x.new_zeros(b, self.tiles - 1, *x.shape[1:])
        pixel_values = torch.cat([x.unsqueeze(1), pad], 1).unsqueeze(1)  # (B, 1 image, tiles, 3, H, W)
        ratio_ids = torch.full((b, 1), self.ratio_id, dtype=torch.long, device=x.device)
        ratio_mask = torch.zeros(b, 1, self.tiles, dtype=torch.long, device=x.device)
        ratio_mask[:, :, 0] = 1
        return {"pixel_values": pixel_values, "aspect_ratio_ids": ratio_ids, "aspect_ratio_mask": ratio_mask}

    def token_inputs(self, input_ids: Any, labels: Any | None, has_image: bool) -> dict[str, Any]:
        if not has_image:
            return {}
        import torch

        # As MllamaProcessor: a single image is seen by every token from its <|image|> token to the end.
        seen = (input_ids == self.image_token_id).long().cumsum(1) > 0
        mask = torch.zeros(*input_ids.shape, 1, self.tiles, dtype=torch.long, device=input_ids.device)
        mask[:, :, 0, 0] = seen.long()
        return {"cross_attention_mask": mask}
