"""Shared machinery for the white-box Hugging Face VLM targets (LLaVA / LLaVA-NeXT, Qwen2-VL, Idefics3/SmolVLM,
PaliGemma, Gemma 3, Llama 3.2 Vision).

Each family file says only what differs: how its image becomes model inputs (in torch, so gradients reach the
pixels), how many placeholder tokens an image takes in the text, and any extra per-token inputs. Loading, chat
formatting, padding, label masking, the per-sample loss, prompt-embedding perturbations (for cross-prompt attacks)
and batched generation live here.

The image processors of these families are not used on the loss path: their default ("fast") versions need
torchvision and all of them work in numpy, outside the graph. Each family re-implements its processor's resize,
rescale, normalise and patchify in torch from the processor's own config values.
"""

from __future__ import annotations

import json
import time
from typing import Any

from mmsafe.images import ImageError, load_image
from mmsafe.models import decode_until_eos, generation_kwargs
from mmsafe.targets.base import WhiteBoxTarget
from mmsafe.types import Response, Sample


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


def load_chat_template(src: str, tok: Any) -> str | None:
    """The chat template: the tokenizer's, else the processor's (``chat_template.jinja`` or ``chat_template.json``)."""
    if getattr(tok, "chat_template", None):
        return tok.chat_template
    from transformers.utils import cached_file

    for name in ("chat_template.jinja", "chat_template.json"):
        path = cached_file(src, name, _raise_exceptions_for_missing_entries=False)
        if path:
            text = open(path, encoding="utf-8").read()
            return json.loads(text)["chat_template"] if name.endswith(".json") else text
    return None


def sequence_nll(logits: Any, labels: Any) -> Any:
    """Mean next-token NLL per sample over the positions where ``labels`` != -100; ``logits`` (B,T,V) are the
    predictions for ``labels`` (B,T) already aligned (logit t predicts label t)."""
    import torch.nn.functional as F

    nll = F.cross_entropy(logits.float().transpose(1, 2), labels, ignore_index=-100, reduction="none")
    mask = labels != -100
    return (nll * mask).sum(1) / mask.sum(1).clamp(min=1)


class HFVisionTarget(WhiteBoxTarget):
    """Base of the white-box Hugging Face VLM targets; a family subclass fills in the hooks below."""

    model_types: tuple[str, ...] = ()
    # False for targets that build their own checkpoint (tiny-llava): ``hf:`` never dispatches to them.
    hub: bool = True
    # Families that can run on the CLIP defaults when a checkpoint has no image processor config (LLaVA).
    needs_image_processor: bool = True
    # What the chat template writes for one image; ``image_text`` replaces it with the model's full image span.
    image_marker: str = "<image>"
    # Chat templates differ on whether a system message's content may be a list of parts (Llama 3.2's may not).
    system_as_text: bool = False

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

    def image_text(self) -> str:
        """The text that stands for one image in the prompt, placeholders expanded as the processor would."""
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

    def prompt_encoding(self, text: str, offsets: bool = False) -> tuple[list[int], list[tuple[int, int]]]:
        """Token ids of a prompt text (special tokens as the chat template wrote them) and, with ``offsets``, each
        token's character span in ``text`` (fast tokenizers only; empty otherwise)."""
        enc = self.tok(text, add_special_tokens=False, return_offsets_mapping=offsets)
        return enc["input_ids"], [tuple(o) for o in enc.get("offset_mapping", [])]

    def prompt_text(self, prompt: str, has_image: bool) -> str:
        """The text before the answer: chat template with the generation prompt, image span expanded."""
        if not self.chat_template:
            raise ValueError(f"{self.model_id}: no chat template in the tokenizer or processor files")
        content: Any = [{"type": "image"}] if has_image else []
        content.append({"type": "text", "text": prompt})
        if not self.template_takes_parts:
            content = f"{self.image_marker}\n{prompt}" if has_image else prompt
        messages: list[dict[str, Any]] = [{"role": "user", "content": content}]
        if self.system_prompt is not None:
            plain = self.system_as_text or not self.template_takes_parts
            sys_content: Any = self.system_prompt if plain else [{"type": "text", "text": self.system_prompt}]
            messages.insert(0, {"role": "system", "content": sys_content})
        text = self.tok.apply_chat_template(
            messages, chat_template=self.chat_template, tokenize=False, add_generation_prompt=True
        )
        if has_image:
            if text.count(self.image_marker) != 1:
                raise ValueError(
                    f"{self.model_id}: the chat template wrote {text.count(self.image_marker)} image markers "
                    f"{self.image_marker!r} for one image"
                )
            text = text.replace(self.image_marker, self.image_text())
        return text

    # ---- loading ------------------------------------------------------------------------------------------------

    def source(self) -> str:
        """What ``from_pretrained`` loads; a target that builds its own checkpoint returns its folder."""
        return self.model_id

    def load(self) -> None:
        if self._model is not None:
            return
        import torch
        from transformers import AutoImageProcessor, AutoModelForImageTextToText, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        src = self.source()
        try:
            tok = AutoTokenizer.from_pretrained(src)
            # Without torchvision transformers falls back to the PIL processor; we only read its config values.
            try:
                image_processor = AutoImageProcessor.from_pretrained(src)
            except (OSError, ValueError):
                if self.needs_image_processor:
                    raise
                image_processor = None
            model = AutoModelForImageTextToText.from_pretrained(src, dtype=getattr(torch, self.dtype))
        except OSError as e:
            raise OSError(
                f"cannot load model {self.model_id!r}: {e}\nOffline? Use a folder saved with save_pretrained."
            ) from e
        if model.config.model_type not in self.model_types:
            raise ValueError(
                f"{self.model_id}: model_type {model.config.model_type!r} is not served by {type(self).__name__} "
                f"(serves {', '.join(self.model_types)})"
            )
        if self.device:
            model.to(self.device)
        model.eval()
        model.requires_grad_(False)  # attacks need gradients for the pixels only
        tok.padding_side = "left"
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        self._model, self.tok, self.image_processor = model, tok, image_processor
        self.config = model.config
        self.chat_template = load_chat_template(src, tok)
        self.template_takes_parts = self._takes_parts()
        self.setup()

    def _takes_parts(self) -> bool:
        """Whether the chat template renders message content given as a list of parts (multimodal templates) or
        only a plain string (a text LM's template, as in tiny-llava): a string template prints the list or fails
        on it."""
        if not self.chat_template:
            return True
        probe = [{"role": "user", "content": [{"type": "text", "text": "probe"}]}]
        try:
            text = self.tok.apply_chat_template(probe, chat_template=self.chat_template, tokenize=False)
        except Exception:  # noqa: BLE001 - jinja raises whatever the template's string operations raise
            return False
        return "'type'" not in text

    @property
    def model(self) -> Any:
        self.load()
        return self._model

    @property
    def image_size(self) -> tuple[int, int]:  # type: ignore[override]
        self.load()
        return self.fixed_image_size

    def close(self) -> None:
        self._model = self.tok = self.image_processor = None

    # ---- prompt-embedding perturbations -------------------------------------------------------------------------

    def prompt_positions(self, text: str, prompt: str) -> list[int]:
        """Indices in ``prompt_encoding(text)`` of the tokens that overlap the user's ``prompt`` (its last
        occurrence in ``text``, which follows any system prompt)."""
        start = text.rfind(prompt) if prompt else -1
        if start < 0:
            raise ValueError(f"{self.model_id}: the prompt {prompt[:40]!r} is not in the chat text")
        end = start + len(prompt)
        try:
            _, offsets = self.prompt_encoding(text, offsets=True)
        except NotImplementedError as e:  # slow (Python) tokenizers have no offsets
            raise ValueError(f"{self.model_id}: prompt perturbations need a fast tokenizer ({e})") from e
        return [i for i, (a, b) in enumerate(offsets) if a < end and b > start and b > a]

    def prompt_noise_shape(self, prompt: str) -> tuple[int, int]:
        """(tokens, hidden size) of the perturbation ``loss`` accepts for ``prompt`` (with an image)."""
        text = self.prompt_text(prompt, True)
        return len(self.prompt_positions(text, prompt)), self.model.get_input_embeddings().embedding_dim

    def embedding_std(self) -> float:
        """Spread of the token embeddings the model sees (after any scaling inside the embedding layer): the unit
        of prompt-perturbation budgets."""
        import torch

        emb = self.model.get_input_embeddings()
        with torch.no_grad():
            ids = torch.arange(min(emb.num_embeddings, 4096), device=self.model.device)
            return float(emb(ids).float().std())

    def _add_to_embeddings(self, add: Any) -> Any:
        """A handle for a forward hook that adds ``add`` (B, T, D) to the token embeddings, once per forward."""
        calls = {"n": 0}

        def hook(module: Any, args: Any, out: Any) -> Any:
            if calls["n"] or tuple(out.shape) != tuple(add.shape):
                return out
            calls["n"] += 1
            return out + add.to(out.dtype)

        return self.model.get_input_embeddings().register_forward_hook(hook)

    # ---- batching -----------------------------------------------------------------------------------------------

    def token_ids(self, text: str) -> list[int]:
        return self.tok(text, add_special_tokens=False)["input_ids"]

    def encode(self, texts: list[str], answers: list[str] | None = None) -> tuple[Any, Any, Any]:
        """Left-padded ``input_ids``, ``attention_mask`` and ``labels`` (the answer tokens only; -100 elsewhere).
        Prompt and answer are tokenized apart so the labels cover exactly the answer's tokens."""
        import torch

        rows, labels = [], []
        for i, text in enumerate(texts):
            ids = self.prompt_encoding(text)[0]
            ans = self.token_ids(answers[i]) if answers is not None else []
            if answers is not None and not ans:
                raise ValueError(f"target {i} is empty: nothing to score")
            rows.append(ids + ans)
            labels.append([-100] * len(ids) + ans)
        width = max(len(r) for r in rows)
        pad = self.tok.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows])
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
        lab = torch.tensor([[-100] * (width - len(r)) + r for r in labels])
        return input_ids, mask, lab

    def loss(self, pixels: Any, prompts: list[str], targets: list[str], prompt_noise: list[Any] | None = None) -> Any:
        """Mean NLL of ``targets[i]`` as the answer to ``prompts[i]`` with image ``pixels[i]``; (B,) tensor.
        ``prompt_noise[i]`` (``prompt_noise_shape(prompts[i])``, or ``None``) is added to the embeddings of the
        prompt's tokens, differentiably: the text side of cross-prompt attacks."""
        model = self.model
        if pixels.dim() != 4 or pixels.shape[0] != len(prompts) or len(prompts) != len(targets):
            raise ValueError(
                f"loss needs pixels (B,3,H,W) and B prompts and targets; got {tuple(pixels.shape)}, "
                f"{len(prompts)} prompts, {len(targets)} targets"
            )
        if tuple(pixels.shape[-2:]) != tuple(self.image_size):
            raise ValueError(f"pixels are {tuple(pixels.shape[-2:])}, this target takes image_size {self.image_size}")
        texts = [self.prompt_text(p, True) for p in prompts]
        input_ids, mask, labels = self.encode(texts, targets)
        dev = model.device
        input_ids, mask, labels = input_ids.to(dev), mask.to(dev), labels.to(dev)
        hook = None
        if prompt_noise is not None and any(n is not None for n in prompt_noise):
            hook = self._add_to_embeddings(self._noise_tensor(texts, prompts, prompt_noise, input_ids, mask))
        # Left padding puts every answer at the end: only the last (longest answer + 1) logits are needed.
        keep = int((labels != -100).sum(1).max()) + 1
        try:
            out = model(
                attention_mask=mask,
                **self.model_inputs(input_ids, pixels.to(dev, model.dtype)),
                **self.token_inputs(input_ids, labels, True),
                use_cache=False,
                logits_to_keep=keep,
            )
        finally:
            if hook is not None:
                hook.remove()
        return sequence_nll(out.logits[:, :-1], labels[:, -(keep - 1):])

    def _noise_tensor(self, texts: list[str], prompts: list[str], noise: list[Any], input_ids: Any, mask: Any) -> Any:
        """(B, T, D) zeros with ``noise[i]`` at row i's prompt tokens (left padding shifts them by the pad)."""
        import torch

        dim = self.model.get_input_embeddings().embedding_dim
        add = torch.zeros((*input_ids.shape, dim), device=input_ids.device)
        for i, (text, prompt, n) in enumerate(zip(texts, prompts, noise)):
            if n is None:
                continue
            pad = int((mask[i] == 0).sum())
            pos = [pad + p for p in self.prompt_positions(text, prompt)]
            if tuple(n.shape) != (len(pos), dim):
                raise ValueError(f"prompt_noise[{i}] is {tuple(n.shape)}; prompt {prompt[:40]!r} takes "
                                 f"{(len(pos), dim)} (prompt_noise_shape)")
            rows = torch.full((len(pos),), i, device=add.device)
            add = add.index_put((rows, torch.tensor(pos, device=add.device)), n.to(add.device, add.dtype))
        return add

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
        decoded = decode_until_eos(model, self.tok, out[:, input_ids.shape[1]:].tolist())
        return [(text, int(sum(m)), n) for (text, n), m in zip(decoded, mask.tolist())]

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
                groups[bool(s.images)].append((i, self.prompt_text(s.prompt, bool(s.images)), px))
            except (ImageError, ValueError) as e:
                responses[i] = Response(error=str(e))
        for has_image, group in groups.items():
            if not group:
                continue

            def run(items: list[tuple[int, str, Any]]) -> list[tuple[str, int, int]]:
                px = torch.stack([g[2] for g in items]) if has_image else None
                return self._generate_batch([g[1] for g in items], px)

            t0 = time.perf_counter()
            try:
                outs: list[tuple[str, int, int] | Exception] = list(run(group))
            except Exception:  # noqa: BLE001 - one bad sample must not fail its batch-mates: retry one by one
                outs = []
                for g in group:
                    try:
                        outs.extend(run([g]))
                    except Exception as e:  # noqa: BLE001
                        outs.append(e)
            share = (time.perf_counter() - t0) / len(group)
            for (i, _, _), out in zip(group, outs):
                if isinstance(out, Exception):
                    responses[i] = Response(error=f"generation failed: {type(out).__name__}: {out}")
                    continue
                text, n_in, n_out = out
                responses[i] = Response(
                    text=text, latency_s=share, prompt_tokens=n_in, completion_tokens=n_out,
                    details={"batch": len(group), "image_size": list(self.image_size) if has_image else None},
                )
        return [r if r is not None else Response(error="no response") for r in responses]
