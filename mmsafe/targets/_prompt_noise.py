"""Prompt-embedding perturbations: the ``PromptEmbeddingTarget`` capability (``targets/base.py``) for targets built
on a Hugging Face model, used by cross-prompt attacks (cropa) to put an adversary on the text side."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class PromptNoise:
    """Adds ``prompt_noise`` to the embeddings of a prompt's tokens, differentiably. Needs the target's ``model``
    (with ``get_input_embeddings``), ``model_id``, ``prompt_text`` and ``prompt_encoding`` (offsets from a fast
    tokenizer)."""

    model: Any
    model_id: str

    def prompt_text(self, prompt: str, has_image: bool, system: str | None = None) -> str:
        raise NotImplementedError

    def prompt_encoding(self, text: str, offsets: bool = False) -> tuple[list[int], list[tuple[int, int]]]:
        raise NotImplementedError

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

    @contextmanager
    def prompt_noise_added(self, texts: list[str], prompts: list[str], noise: list[Any] | None, input_ids: Any,
                           mask: Any) -> Iterator[None]:
        """While open, the next forward adds ``noise[i]`` to the embeddings of row i's prompt tokens (rows whose
        noise is ``None``, or no ``noise`` at all, are left as they are)."""
        if noise is None or all(n is None for n in noise):
            yield
            return
        add = self._noise_tensor(texts, prompts, noise, input_ids, mask)
        calls = {"n": 0}

        def hook(module: Any, args: Any, out: Any) -> Any:
            # once per forward: generate-style loops call the embedding again for each new token
            if calls["n"] or tuple(out.shape) != tuple(add.shape):
                return out
            calls["n"] += 1
            return out + add.to(out.dtype)

        handle = self.model.get_input_embeddings().register_forward_hook(hook)
        try:
            yield
        finally:
            handle.remove()

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
