from __future__ import annotations

import time
from typing import Any

from mmsafe.batching import each_or_alone
from mmsafe.images import ImageError, load_image
from mmsafe.models import EMBEDDED, Lease, decode_until_eos, generation_kwargs, shared_causal_lm
from mmsafe.ocr import OCR
from mmsafe.targets.base import Target, generated, targets
from mmsafe.types import Response, Sample


def compose(prompt: str, image_texts: list[str]) -> str:
    """What the language model sees: the text read from each image, then the user's prompt."""
    parts = []
    for i, text in enumerate(image_texts):
        which = "The image" if len(image_texts) == 1 else f"Image {i + 1}"
        if text:
            parts.append(f'{which} contains this text:\n"""\n{text}\n"""')
        else:
            parts.append(f"{which} contains no readable text.")
    return "\n\n".join([*parts, prompt])


@targets.register("reader")
class Reader(Target):
    """Embedded offline VLM: OCR reads the text in each image, a causal LM (SmolLM2-135M-Instruct by default)
    answers. Real models end to end, no download; typographic attacks reach the LM the way they reach a VLM."""

    def __init__(
        self,
        model: str = EMBEDDED,
        max_new_tokens: int = 128,
        batch_size: int = 16,
        temperature: float = 0.0,
        seed: int = 0,
        system_prompt: str | None = None,
        ocr: str = "rapidocr",
        device: str | None = None,
    ) -> None:
        """``model``: ``smollm2`` (embedded) or any Hugging Face causal-LM id or folder. ``temperature`` 0 is
        greedy. ``system_prompt`` replaces the chat template's default one."""
        self.model_id = model
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        self.temperature = temperature
        self.seed = seed
        self.system_prompt = system_prompt
        self.device = device
        self.ocr = OCR(ocr)
        self._lease: Lease[tuple[Any, Any]] | None = None
        self._lm: Any = None
        self._tok: Any = None

    def load(self) -> None:
        if self._lease is None:
            self._lease = shared_causal_lm(self.model_id, device=self.device)
            self._lm, self._tok = self._lease.value

    def chat_text(self, content: str, system: str | None = None) -> str:
        """The chat-formatted model input; ``system`` (a sample's own system prompt) wins over ``system_prompt``."""
        messages = [{"role": "user", "content": content}]
        system = system if system is not None else self.system_prompt
        if system is not None:
            messages.insert(0, {"role": "system", "content": system})
        if getattr(self._tok, "chat_template", None):
            return self._tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return "\n\n".join(m["content"] for m in messages) + "\n\n"

    def _generate_texts(self, texts: list[str]) -> list[tuple[str, int, int]]:
        """Batched generation: ``(text, prompt_tokens, completion_tokens)`` per input."""
        import torch

        enc = self._tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        enc = enc.to(self._lm.device)
        kwargs = generation_kwargs(self._tok, self.max_new_tokens, self.temperature, self.seed)
        with torch.inference_mode():
            out = self._lm.generate(**enc, **kwargs)
        return decode_until_eos(self._lm, self._tok, out[:, enc["input_ids"].shape[1]:].tolist(),
                                enc["attention_mask"].tolist())

    def generate(self, samples: list[Sample]) -> list[Response]:
        self.load()
        responses: list[Response | None] = [None] * len(samples)
        pending: list[tuple[int, str, float, list[str]]] = []
        for i, s in enumerate(samples):
            t0 = time.perf_counter()
            try:
                read = [self.ocr(load_image(img)) for img in s.images]
            except ImageError as e:
                responses[i] = Response(error=str(e))
                continue
            pending.append((i, self.chat_text(compose(s.prompt, read), s.system), time.perf_counter() - t0, read))
        if pending:
            t0 = time.perf_counter()
            outs = each_or_alone([p[1] for p in pending], self._generate_texts)
            share = (time.perf_counter() - t0) / len(pending)
            for (i, _, ocr_s, read), out in zip(pending, outs):
                responses[i] = generated(out, ocr_s + share, {"ocr": read, "ocr_s": round(ocr_s, 4),
                                                               "batch": len(pending)})
        return [r if r is not None else Response(error="no response") for r in responses]

    def close(self) -> None:
        if self._lease is not None:
            self._lease.release()
        self._lease = self._lm = self._tok = None
