"""LLaVA-1.5 and LLaVA-NeXT from Hugging Face checkpoints, as white-box targets.

One image pipeline serves ``generate`` and ``loss``: pixels in [0, 1] -> the processor's mean/std -> vision tower ->
projector -> image features scattered into the token embeddings at the ``<image>`` positions, which the model then
gets as ``inputs_embeds``. So an image an attack optimised through ``loss`` is read the same way when the scan
sends it through ``generate``.
"""

from __future__ import annotations

from typing import Any

from mmsafe.targets._hf_common import HFVisionTarget
from mmsafe.targets._pixels import normalise
from mmsafe.targets.base import targets

# OpenAI CLIP's normalisation constants (Radford et al. 2021; the CLIPImageProcessor defaults), used when the
# checkpoint ships no image processor config.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@targets.register("hf-llava")
class HFLlava(HFVisionTarget):
    """LLaVA-1.5 / LLaVA-NeXT (Hugging Face ``llava`` and ``llava_next`` checkpoints, e.g. llava-hf/llava-1.5-7b-hf):
    batched greedy generation and a differentiable image loss for gradient attacks.

    LLaVA-NeXT is fed its base-resolution view only (one tile of the vision tower's size plus the image-newline
    token), in ``generate`` as in ``loss``: its any-res tiling picks a grid from the image size, which a
    fixed-size attack graph cannot follow, and evaluating the attacked image with another view than the one
    optimised would measure transfer, not the attack. Answers on clean images are therefore a little weaker than
    with the full any-res input.
    """

    model_types: tuple[str, ...] = ("llava", "llava_next")
    needs_image_processor = False  # CLIP defaults for checkpoints saved without one

    def setup(self) -> None:
        cfg = self.config
        vision = cfg.vision_config
        self._size = (vision.image_size, vision.image_size)
        ip = self.image_processor
        self.mean = tuple(getattr(ip, "image_mean", None) or CLIP_MEAN)
        self.std = tuple(getattr(ip, "image_std", None) or CLIP_STD)
        # LLaVA-1.5 pads to a square of the mean colour before resizing (Liu et al. 2023, "Improved Baselines with
        # Visual Instruction Tuning", expand2square); HF's LlavaImageProcessor exposes it as do_pad.
        self.pad_square = bool(getattr(ip, "do_pad", False))
        self.image_token_id = getattr(cfg, "image_token_id", None)
        if self.image_token_id is None:
            self.image_token_id = cfg.image_token_index
        self.image_marker = self.tok.convert_ids_to_tokens(self.image_token_id)
        patches = (vision.image_size // vision.patch_size) ** 2
        # "default" drops the CLS token, as the model's own get_image_features does; NeXT adds its newline token
        self.n_image_tokens = patches + (cfg.vision_feature_select_strategy != "default") + (
            cfg.model_type == "llava_next")

    @property
    def fixed_image_size(self) -> tuple[int, int]:
        return self._size

    def image_text(self) -> str:
        return self.image_marker * self.n_image_tokens

    def prompt_text(self, prompt: str, has_image: bool, system: str | None = None) -> str:
        if self.chat_template:
            return super().prompt_text(prompt, has_image, system)
        # LLaVA-1.5's conversation format (Liu et al. 2023) for checkpoints without any template
        system = system if system is not None else self.system_prompt
        system = f"{system} " if system else ""
        image = f"{self.image_text()}\n" if has_image else ""
        return f"{system}USER: {image}{prompt} ASSISTANT:"

    def prompt_encoding(self, text: str, offsets: bool = False) -> tuple[list[int], list[tuple[int, int]]]:
        # Some chat templates write the BOS token, others (LLaVA-1.5's) leave it to the tokenizer, as HF's
        # processors do: let the tokenizer add it and drop a doubled one.
        enc = self.tok(text, return_offsets_mapping=offsets)
        ids, spans = enc["input_ids"], [tuple(o) for o in enc.get("offset_mapping", [])]
        bos = self.tok.bos_token_id
        if bos is not None and len(ids) > 1 and ids[0] == ids[1] == bos:
            ids, spans = ids[1:], spans[1:]
        return ids, spans

    def to_pixels(self, image: Any) -> Any:
        """Optional square padding, shortest edge resized (bicubic), centre crop: the CLIP preprocessing LLaVA
        uses, minus the normalisation."""
        import numpy as np
        import torch
        from PIL import Image

        h, w = self.image_size
        image = image.convert("RGB")
        if self.pad_square and image.width != image.height:
            side = max(image.size)
            square = Image.new("RGB", (side, side), tuple(int(round(m * 255)) for m in self.mean))
            square.paste(image, ((side - image.width) // 2, (side - image.height) // 2))
            image = square
        scale = max(h / image.height, w / image.width)
        if image.size != (w, h):
            size = (max(w, round(image.width * scale)), max(h, round(image.height * scale)))
            image = image.resize(size, Image.Resampling.BICUBIC)
            left, top = (image.width - w) // 2, (image.height - h) // 2
            image = image.crop((left, top, left + w, top + h))
        return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)

    def image_features(self, pixels: Any) -> Any:
        """(B, 3, H, W) pixels in [0, 1] at ``image_size`` -> (B, N, D) image embeddings for the language model."""
        import torch

        inner = self.model.model
        cfg = self.config
        x = normalise(pixels, self.mean, self.std).to(self.model.dtype)
        hidden = inner.vision_tower(x, output_hidden_states=True).hidden_states
        layers = cfg.vision_feature_layer
        picked = [hidden[layers]] if isinstance(layers, int) else [hidden[i] for i in layers]
        if cfg.vision_feature_select_strategy == "default":
            picked = [h[:, 1:] for h in picked]
        feats = inner.multi_modal_projector(torch.cat(picked, dim=-1))
        if cfg.model_type == "llava_next":
            # a single tile goes through pack_image_features' one-patch branch: base features + image_newline
            newline = inner.image_newline.to(feats.dtype).view(1, 1, -1).expand(feats.shape[0], 1, -1)
            feats = torch.cat([feats, newline], dim=1)
        return feats

    def model_inputs(self, input_ids: Any, pixels: Any | None) -> dict[str, Any]:
        embeds = self.model.get_input_embeddings()(input_ids)
        if pixels is not None:
            feats = self.image_features(pixels)
            where = (input_ids == self.image_token_id).unsqueeze(-1)
            embeds = embeds.masked_scatter(where, feats.reshape(-1, feats.shape[-1]).to(embeds.dtype))
        return {"inputs_embeds": embeds}
