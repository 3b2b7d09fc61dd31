"""The white-box Hugging Face VLM targets' base (LLaVA / LLaVA-NeXT, Qwen2-VL, Idefics3/SmolVLM, PaliGemma, Gemma 3,
Llama 3.2 Vision): loading through the shared model cache, the per-sample loss and batched generation.

Each family file says only what differs: how its image becomes model inputs (in torch, so gradients reach the
pixels, with ``_pixels.py``), how many placeholder tokens an image takes in the text, and any extra per-token
inputs. Chat formatting and label masking are in ``_hf_chat.py``; the prompt-embedding perturbations of
cross-prompt attacks in ``_prompt_noise.py``.
"""

from __future__ import annotations

import time
from typing import Any

from mmsafe.batching import each_or_alone
from mmsafe.images import ImageError, load_image
from mmsafe.models import MODEL_CACHE, Lease, cannot_load, decode_until_eos, generation_kwargs, ready
from mmsafe.targets._hf_chat import ChatPrompts, load_chat_template, sequence_nll, takes_parts
from mmsafe.targets._pixels import to_pixels
from mmsafe.targets._prompt_noise import PromptNoise
from mmsafe.targets.base import WhiteBoxTarget, generated
from mmsafe.types import Response, Sample


def load_vlm(src: str, dtype: str, device: str | None, needs_image_processor: bool) -> tuple[Any, Any, Any]:
    """``(model, tokenizer, image processor or None)`` of an image-text-to-text checkpoint, frozen, in eval mode."""
    import torch
    from transformers import AutoImageProcessor, AutoModelForImageTextToText, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    try:
        tok = AutoTokenizer.from_pretrained(src)
        # Without torchvision transformers falls back to the PIL processor; we only read its config values.
        try:
            image_processor = AutoImageProcessor.from_pretrained(src)
        except (OSError, ValueError):
            if needs_image_processor:
                raise
            image_processor = None
        model = AutoModelForImageTextToText.from_pretrained(src, dtype=getattr(torch, dtype))
    except OSError as e:
        raise cannot_load(src, e) from e
    model.requires_grad_(False)  # attacks need gradients for the pixels only
    return (*ready(model, tok, device), image_processor)


class HFVisionTarget(ChatPrompts, PromptNoise, WhiteBoxTarget):
    """Base of the white-box Hugging Face VLM targets; a family subclass fills in the hooks below."""

    model_types: tuple[str, ...] = ()
    # False for targets that build their own checkpoint (tiny-llava): ``hf:`` never dispatches to them.
    hub: bool = True
    # Families that can run on the CLIP defaults when a checkpoint has no image processor config (LLaVA).
    needs_image_processor: bool = True
    needs_args = "a Hugging Face model id or folder of this family (or use hf:<id>, which picks the family)"
    # False for a user that changes the weights (training): it loads a private copy, never the shared one.
    shared: bool = True

    def __init__(
        self,
        model: str,
        dtype: str = "float32",
        device: str | None = None,
        max_new_tokens: int = 128,
        batch_size: int = 8,
        temperature: float = 0.0,
        system_prompt: str | None = None,
        seed: int = 0,
    ) -> None:
        """``model``: a Hugging Face id or a folder saved with ``save_pretrained``. ``temperature`` 0 is greedy.
        ``system_prompt`` adds a system message (``None``: the chat template's default)."""
        self.model_id = model
        self.dtype = dtype
        self.device = device
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        self.temperature = temperature
        self.system_prompt = system_prompt
        self.seed = seed
        self._lease: Lease[tuple[Any, Any, Any]] | None = None
        self._model: Any = None
        self.config: Any = None
        self.tok: Any = None
        self.image_processor: Any = None
        self.chat_template: str | None = None

    # ---- family hooks -------------------------------------------------------------------------------------------

    def setup(self) -> None:
        """Read what the family needs from ``self.config``, ``self.image_processor`` and ``self.tok`` after loading."""

    @property
    def fixed_image_size(self) -> tuple[int, int]:
        """(height, width) the loss path feeds the model."""
        raise NotImplementedError

    def vision_inputs(self, pixels: Any) -> dict[str, Any]:
        """Model kwargs for one image per sample from (B,3,H,W) pixels in [0,1] at ``image_size``, in torch."""
        raise NotImplementedError

    def token_inputs(self, input_ids: Any, labels: Any | None, has_image: bool) -> dict[str, Any]:
        """Extra per-token model kwargs (token types, cross-attention masks) for left-padded ``input_ids``;
        ``labels`` (-100 outside the answer) on the loss path, ``None`` when generating."""
        return {}

    def model_inputs(self, input_ids: Any, pixels: Any | None) -> dict[str, Any]:
        """What the model's forward (and generate) gets for the tokens and images: ids plus ``vision_inputs`` by
        default; a family that merges image features itself returns ``inputs_embeds`` as well."""
        return {"input_ids": input_ids, **(self.vision_inputs(pixels) if pixels is not None else {})}

    def to_pixels(self, image: Any) -> Any:
        """A PIL image as (3, H, W) pixels in [0, 1] at ``image_size``: what ``generate`` feeds and where gradient
        attacks start. A plain bicubic resize unless the family crops or pads first."""
        return to_pixels(image, self.image_size)

    # ---- lifecycle ----------------------------------------------------------------------------------------------

    def source(self) -> str:
        """What ``from_pretrained`` loads; a target that builds its own checkpoint returns its folder."""
        return self.model_id

    def load(self) -> None:
        if self._lease is not None:
            return
        src = self.source()
        key = ("vlm", src, self.dtype, self.device)
        load = lambda: load_vlm(src, self.dtype, self.device, self.needs_image_processor)  # noqa: E731
        lease = MODEL_CACHE.acquire(key, load) if self.shared else Lease(None, key, load())
        model, tok, image_processor = lease.value
        if model.config.model_type not in self.model_types:
            lease.release()
            raise ValueError(
                f"{self.model_id}: model_type {model.config.model_type!r} is not served by {type(self).__name__} "
                f"(serves {', '.join(self.model_types)})"
            )
        self._lease, self._model, self.tok, self.image_processor = lease, model, tok, image_processor
        self.config = model.config
        self.chat_template = load_chat_template(src, tok)
        self.template_takes_parts = takes_parts(tok, self.chat_template)
        self.setup()

    def close(self) -> None:
        if self._lease is not None:
            self._lease.release()
        self._lease = self._model = self.tok = self.image_processor = None

    @property
    def model(self) -> Any:
        self.load()
        return self._model

    @property
    def image_size(self) -> tuple[int, int]:  # type: ignore[override]
        self.load()
        return self.fixed_image_size

    # ---- loss ---------------------------------------------------------------------------------------------------

    def loss(self, pixels: Any, prompts: list[str], targets: list[str], prompt_noise: list[Any] | None = None,
             systems: list[str | None] | None = None) -> Any:
        """Mean NLL of ``targets[i]`` as the answer to ``prompts[i]`` with image ``pixels[i]``; (B,) tensor.
        ``prompt_noise[i]`` (``prompt_noise_shape(prompts[i])``, or ``None``) is added to the embeddings of the
        prompt's tokens, differentiably: the text side of cross-prompt attacks. ``systems[i]``: row i's system
        prompt, as a sample's ``system`` is in ``generate`` (``None``: the target's own)."""
        model = self.model
        if pixels.dim() != 4 or pixels.shape[0] != len(prompts) or len(prompts) != len(targets):
            raise ValueError(
                f"loss needs pixels (B,3,H,W) and B prompts and targets; got {tuple(pixels.shape)}, "
                f"{len(prompts)} prompts, {len(targets)} targets"
            )
        if tuple(pixels.shape[-2:]) != tuple(self.image_size):
            raise ValueError(f"pixels are {tuple(pixels.shape[-2:])}, this target takes image_size {self.image_size}")
        texts = [self.prompt_text(p, True, s) for p, s in zip(prompts, systems or [None] * len(prompts))]
        input_ids, mask, labels = self.encode(texts, targets)
        dev = model.device
        input_ids, mask, labels = input_ids.to(dev), mask.to(dev), labels.to(dev)
        # Left padding puts every answer at the end: only the last (longest answer + 1) logits are needed.
        keep = int((labels != -100).sum(1).max()) + 1
        with self.prompt_noise_added(texts, prompts, prompt_noise, input_ids, mask):
            out = model(
                attention_mask=mask,
                **self.model_inputs(input_ids, pixels.to(dev, model.dtype)),
                **self.token_inputs(input_ids, labels, True),
                use_cache=False,
                logits_to_keep=keep,
            )
        return sequence_nll(out.logits[:, :-1], labels[:, -(keep - 1):])

    # ---- generation ---------------------------------------------------------------------------------------------

    def _generate_batch(self, texts: list[str], pixels: Any | None) -> list[tuple[str, int, int]]:
        import torch

        model = self.model
        input_ids, mask, _ = self.encode(texts)
        dev = model.device
        input_ids, mask = input_ids.to(dev), mask.to(dev)
        kwargs = generation_kwargs(self.tok, self.max_new_tokens, self.temperature, self.seed)
        kwargs.update(self.token_inputs(input_ids, None, pixels is not None))
        with torch.inference_mode():
            inputs = self.model_inputs(input_ids, None if pixels is None else pixels.to(dev, model.dtype))
            # with inputs_embeds too, the ids make generate return the prompt first, as it does without
            inputs.setdefault("input_ids", input_ids)
            out = model.generate(attention_mask=mask, **inputs, **kwargs)
        return decode_until_eos(model, self.tok, out[:, input_ids.shape[1]:].tolist(), mask.tolist())

    def generate(self, samples: list[Sample]) -> list[Response]:
        """One image per sample (resized to ``image_size``, as the loss path sees it) or none; text-only samples
        run as their own batch. A sample that fails gets an error ``Response``; its batch-mates still run."""
        import torch

        self.load()
        responses: list[Response | None] = [None] * len(samples)
        groups: dict[bool, list[tuple[int, str, Any]]] = {True: [], False: []}
        for i, s in enumerate(samples):
            if len(s.images) > 1:
                responses[i] = Response(
                    error=f"{type(self).__name__} takes at most one image per sample, got {len(s.images)}"
                )
                continue
            try:
                px = self.to_pixels(load_image(s.images[0])) if s.images else None
                groups[bool(s.images)].append((i, self.prompt_text(s.prompt, bool(s.images), s.system), px))
            except (ImageError, ValueError) as e:
                responses[i] = Response(error=str(e))
        for has_image, group in groups.items():
            if not group:
                continue

            def run(items: list[tuple[int, str, Any]]) -> list[tuple[str, int, int]]:
                px = torch.stack([g[2] for g in items]) if has_image else None
                return self._generate_batch([g[1] for g in items], px)

            t0 = time.perf_counter()
            outs = each_or_alone(group, run)
            share = (time.perf_counter() - t0) / len(group)
            for (i, _, _), out in zip(group, outs):
                responses[i] = generated(out, share, {"batch": len(group),
                                                      "image_size": list(self.image_size) if has_image else None})
        return [r if r is not None else Response(error="no response") for r in responses]
