"""Chat formatting and tokenisation of the Hugging Face VLM targets: the prompt text with its image span, token
ids, and the label masking that makes the loss cover the answer's tokens only."""

from __future__ import annotations

import json
from typing import Any


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


def takes_parts(tok: Any, chat_template: str | None) -> bool:
    """Whether the chat template renders message content given as a list of parts (multimodal templates) or only a
    plain string (a text LM's template, as in tiny-llava): a string template prints the list or fails on it."""
    if not chat_template:
        return True
    probe = [{"role": "user", "content": [{"type": "text", "text": "probe"}]}]
    try:
        text = tok.apply_chat_template(probe, chat_template=chat_template, tokenize=False)
    except Exception:  # noqa: BLE001 - jinja raises whatever the template's string operations raise
        return False
    return "'type'" not in text


class ChatPrompts:
    """Prompt text and token ids for a target with ``tok``, ``chat_template``, ``template_takes_parts``,
    ``system_prompt``, ``model_id`` and an ``image_text()`` that expands one image's span."""

    tok: Any
    model_id: str
    chat_template: str | None
    template_takes_parts: bool
    system_prompt: str | None
    # What the chat template writes for one image; ``image_text`` replaces it with the model's full image span.
    image_marker: str = "<image>"
    # Chat templates differ on whether a system message's content may be a list of parts (Llama 3.2's may not).
    system_as_text: bool = False

    def image_text(self) -> str:
        """The text that stands for one image in the prompt, placeholders expanded as the processor would."""
        raise NotImplementedError

    def prompt_encoding(self, text: str, offsets: bool = False) -> tuple[list[int], list[tuple[int, int]]]:
        """Token ids of a prompt text (special tokens as the chat template wrote them) and, with ``offsets``, each
        token's character span in ``text`` (fast tokenizers only; empty otherwise)."""
        enc = self.tok(text, add_special_tokens=False, return_offsets_mapping=offsets)
        return enc["input_ids"], [tuple(o) for o in enc.get("offset_mapping", [])]

    def prompt_text(self, prompt: str, has_image: bool, system: str | None = None) -> str:
        """The text before the answer: chat template with the generation prompt, image span expanded. ``system``
        (a sample's own system prompt, e.g. from the safety-prompt defense) wins over the target's
        ``system_prompt``."""
        system = system if system is not None else self.system_prompt
        if not self.chat_template:
            raise ValueError(f"{self.model_id}: no chat template in the tokenizer or processor files")
        content: Any = [{"type": "image"}] if has_image else []
        content.append({"type": "text", "text": prompt})
        if not self.template_takes_parts:
            content = f"{self.image_marker}\n{prompt}" if has_image else prompt
        messages: list[dict[str, Any]] = [{"role": "user", "content": content}]
        if system is not None:
            plain = self.system_as_text or not self.template_takes_parts
            sys_content: Any = system if plain else [{"type": "text", "text": system}]
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


def sequence_nll(logits: Any, labels: Any) -> Any:
    """Mean next-token NLL per sample over the positions where ``labels`` != -100; ``logits`` (B,T,V) are the
    predictions for ``labels`` (B,T) already aligned (logit t predicts label t)."""
    import torch.nn.functional as F

    nll = F.cross_entropy(logits.float().transpose(1, 2), labels, ignore_index=-100, reduction="none")
    mask = labels != -100
    return (nll * mask).sum(1) / mask.sum(1).clamp(min=1)
