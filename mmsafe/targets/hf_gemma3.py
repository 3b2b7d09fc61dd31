from __future__ import annotations

from typing import Any

from mmsafe.targets._hf_common import HFVisionTarget
from mmsafe.targets._pixels import normalise, resize
from mmsafe.targets.base import targets


@targets.register("hf-gemma3")
class Gemma3Target(HFVisionTarget):
    """Gemma 3 with vision (Gemma3ForConditionalGeneration, e.g. google/gemma-3-4b-it), white-box: gradients reach
    the image pixels.

    The image is resized to the SigLIP encoder's square input (``vision_config.image_size``, 896) as
    Gemma3ImageProcessor does with pan-and-scan off (its default); the crops pan-and-scan would add are not used.
    Image tokens attend to each other bidirectionally, so ``token_type_ids`` (1 on image tokens) go to the model as
    the processor returns them.
    """

    model_types = ("gemma3",)

    def setup(self) -> None:
        vision = self.config.vision_config
        self._size = (vision.image_size, vision.image_size)
        self.mean, self.std = self.image_processor.image_mean, self.image_processor.image_std
        # Token names as Gemma3Processor reads them from the tokenizer; these are Gemma 3's own.
        self.image_marker = getattr(self.tok, "boi_token", None) or "<start_of_image>"
        self.eoi = getattr(self.tok, "eoi_token", None) or "<end_of_image>"
        self.image_token = getattr(self.tok, "image_token", None) or "<image_soft_token>"
        self.image_token_id = self.config.image_token_index

    @property
    def fixed_image_size(self) -> tuple[int, int]:
        return self._size

    def image_text(self) -> str:
        # Gemma3Processor.full_image_sequence: the projector pools the patches to mm_tokens_per_image soft tokens.
        soft = self.image_token * self.config.mm_tokens_per_image
        return f"\n\n{self.image_marker}{soft}{self.eoi}\n\n"

    def vision_inputs(self, pixels: Any) -> dict[str, Any]:
        return {"pixel_values": normalise(resize(pixels, self._size), self.mean, self.std)}

    def token_inputs(self, input_ids: Any, labels: Any | None, has_image: bool) -> dict[str, Any]:
        return {"token_type_ids": (input_ids == self.image_token_id).long()}
