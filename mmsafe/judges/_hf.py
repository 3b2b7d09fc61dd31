"""Greedy generation for judges that are local transformers models (Llama Guard, the HarmBench classifier).

torch and transformers are imported inside functions: importing a judge module must stay cheap (``mmsafe list``).
"""

from __future__ import annotations

from typing import Any

from mmsafe.models import Lease, cannot_load, generation_kwargs, shared_causal_lm


def placement(dtype: str | None, device: str | None) -> tuple[str, str | None]:
    """bfloat16 on a GPU (the guard models ship in bf16), float32 on CPU where bf16 matmuls are slow."""
    import torch

    if device is None and torch.cuda.is_available():
        device = "cuda"
    if dtype is None:
        dtype = "bfloat16" if device and device.startswith("cuda") else "float32"
    return dtype, device


def decode_new(tok: Any, out: Any, prompt_len: int) -> list[str]:
    """The generated part of each row, special tokens dropped."""
    return [tok.decode(row[prompt_len:], skip_special_tokens=True).strip() for row in out.tolist()]


def generate_text(lm: Any, tok: Any, texts: list[str], max_new_tokens: int, bos: bool = False) -> list[str]:
    """Batched greedy generation from formatted prompts (the tokenizer pads on the left). ``bos``: let the
    tokenizer add its special tokens, for raw prompts; chat templates already hold them."""
    import torch

    enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=bos).to(lm.device)
    with torch.inference_mode():
        out = lm.generate(**enc, **generation_kwargs(tok, max_new_tokens))
    return decode_new(tok, out, enc["input_ids"].shape[1])


def load_text_lm(model: str, dtype: str | None, device: str | None) -> Lease[tuple[Any, Any]]:
    """A lease on ``(model, tokenizer)`` of a causal LM from the shared cache, in eval mode, tokenizer padding on
    the left for batched generation; ``release`` it in the judge's ``close``."""
    dtype, device = placement(dtype, device)
    return shared_causal_lm(model, dtype=dtype, device=device)
