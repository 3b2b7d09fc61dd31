from __future__ import annotations

from typing import Any

from mmsafe.targets._hf_common import HFVisionTarget
from mmsafe.targets._pixels import normalise, resize
from mmsafe.targets.base import targets


@targets.register("hf-paligemma")
class PaliGemmaTarget(HFVisionTarget):
    """PaliGemma / PaliGemma 2 (e.g. google/paligemma-3b-mix-224), white-box: gradients reach the image pixels.

    No chat template: the input is ``<image>`` x N, BOS, the prompt, a newline (PaliGemmaProcessor's layout), and the
    answer follows as the "suffix". The prefix attends bidirectionally and the answer causally, so the loss path
    passes ``token_type_ids`` (0 prefix, 1 answer) as the processor does for fine-tuning. A ``system_prompt`` is
    put before the prompt on its own line.
    """

    model_types = ("paligemma",)

    def setup(self) -> None:
        vision = self.config.vision_config
        self._size = (vision.image_size, vision.image_size)
        self.mean, self.std = self.image_processor.image_mean, self.image_processor.image_std
        self.seq_len = (vision.image_size // vision.patch_size) ** 2  # SigLIP keeps every patch as a token
        self.image_token = getattr(self.tok, "image_token", None) or "<image>"

    @property
    def fixed_image_size(self) -> tuple[int, int]:
        return self._size

    def image_text(self) -> str:
        return self.image_token * self.seq_len

    def prompt_text(self, prompt: str, has_image: bool, system: str | None = None) -> str:
        system = system if system is not None else self.system_prompt
        if system is not None:  # PaliGemma has no chat roles: the system text leads the prompt
            prompt = f"{system}\n{prompt}"
        return f"{self.image_text() if has_image else ''}{self.tok.bos_token}{prompt}\n"

    def vision_inputs(self, pixels: Any) -> dict[str, Any]:
        return {"pixel_values": normalise(resize(pixels, self._size), self.mean, self.std)}

    def token_inputs(self, input_ids: Any, labels: Any | None, has_image: bool) -> dict[str, Any]:
        import torch

        types = torch.zeros_like(input_ids) if labels is None else (labels != -100).long()
        return {"token_type_ids": types}
