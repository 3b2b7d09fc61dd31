from __future__ import annotations

from typing import Any, cast

from mmsafe.attacks._gradient import GradientAttack
from mmsafe.attacks.base import attacks
from mmsafe.attacks.hijack import TRAIN_PROMPTS
from mmsafe.targets.base import PromptEmbeddings, WhiteBox
from mmsafe.types import Sample


@attacks.register("cropa")
class CroPA(GradientAttack):
    """Cross-prompt attack (Luo et al. 2024, "An Image Is Worth 1000 Lies: Adversarial Transferability across
    Prompts on Vision-Language Models", ICLR): one image that forces ``output`` whatever the user asks, made robust
    to prompt variation by an adversary on the text side.

    Threat model: white-box gradients; the attacker controls the image only (L∞ 16/255 by default; the paper uses
    up to 32/255). During crafting every training prompt carries a learnable perturbation of its token embeddings
    that works *against* the image: the image takes a descent step on the target loss each step; each prompt's
    perturbation takes a sign-gradient ascent step the first time the prompt is in a step's batch, then whenever
    it is and ``prompt_every`` steps have passed since its last one, during the first ``prompt_until`` of the
    steps, and then stays fixed while the image goes on (the schedule of the authors' code, which updates the
    text side only in its first 300 iterations), so the image is optimised for the prompt's neighbourhood rather
    than its exact tokens. The prompt perturbations are dropped after crafting: users' prompts are clean.
    ``prompt_step`` and ``prompt_eps`` (the L∞ bound of the prompt perturbation) are in units of the model's
    token-embedding standard deviation, so they mean the same on any model; the defaults (a step of 0.5 and a
    bound of 1) are about the authors' 0.01 step on 7B-scale embeddings, one or two updates per prompt. A stronger
    adversary than the image's budget can answer stops the image from converging at all. Needs a target with
    prompt-embedding perturbations (the ``hf:`` families and ``tiny-llava``).
    """

    requires = (WhiteBox, PromptEmbeddings)

    def __init__(self, output: str = "unknown", prompt_step: float = 0.5, prompt_eps: float = 1.0,
                 prompt_every: int = 10, prompt_until: float = 0.3, **kwargs: Any) -> None:
        if kwargs.get("universal") is False:
            raise ValueError("cropa is universal over prompts by definition: universal cannot be false")
        super().__init__(**kwargs)
        if not output.strip():
            raise ValueError("output (the string to force) must not be empty")
        if prompt_step < 0 or prompt_eps < 0 or prompt_every < 1 or not 0 <= prompt_until <= 1:
            raise ValueError("prompt_step and prompt_eps must be >= 0, prompt_every >= 1, prompt_until in [0, 1]")
        self.output = output
        # the loss is measured against a prompt adversary that grows stronger: its early low values are not better
        # images, so the last image is kept, as the paper's min-max intends
        self.config.keep = "last"
        self.prompt_step, self.prompt_eps, self.prompt_every = prompt_step, prompt_eps, prompt_every
        self.prompt_until = prompt_until
        self._noise: dict[str, Any] = {}
        self._calls = 0
        self._last: dict[str, int] = {}  # prompt -> the step of its last text-adversary update
        self.updates = 0  # prompt-perturbation updates made for the last image crafted
        self._scale: float | None = None

    def target_strings(self) -> list[str]:
        return [self.output]

    def default_judges(self) -> list[str]:
        return [f"contains:{self.output}"]

    def default_prompts(self, samples: list[Sample]) -> list[str]:
        return list(TRAIN_PROMPTS)

    def _craft_units(self, *args: Any, **kwargs: Any) -> Any:
        self._noise, self._last, self._calls, self.updates = {}, {}, 0, 0  # each image gets its own adversary
        return super()._craft_units(*args, **kwargs)

    def pair_loss(self, target: WhiteBox, pixels: Any, pairs: list[tuple[str, str]],
                  systems: list[str | None] | None = None) -> Any:
        import torch

        text_side = cast(PromptEmbeddings, target)  # bind() checked it against ``requires``
        if self._scale is None:
            self._scale = text_side.embedding_std()
        prompts = [p for p, _ in pairs]
        for p in prompts:
            if p not in self._noise:
                self._noise[p] = torch.zeros(text_side.prompt_noise_shape(p), device=pixels.device,
                                             requires_grad=True)
        loss = text_side.loss(pixels, prompts, [t for _, t in pairs], prompt_noise=[self._noise[p] for p in prompts],
                              **({"systems": systems} if systems else {}))
        self._calls += 1
        views = max(1, self.config.eot)  # EOT evaluates the objective several times per step: update on the last
        step, view = divmod(self._calls - 1, views)
        step += 1
        # per prompt, not per step: when a step holds only some of the prompts, a global every-k-steps clock can
        # keep missing the same ones. A prompt's first update is the first step it is seen, so short runs get one.
        live = [p for p in dict.fromkeys(prompts) if p not in self._last or step - self._last[p] >= self.prompt_every]
        if self.prompt_step and view == views - 1 and live and step <= self.prompt_until * self.config.steps:
            self.updates += len(live)
            grads = torch.autograd.grad(loss.sum(), [self._noise[p] for p in live], retain_graph=True)
            bound = self.prompt_eps * self._scale
            for p, g in zip(live, grads):
                # ascent: the text adversary makes the target string less likely. A new leaf, not an in-place
                # update: this step's graph still holds the old one for the image's gradient.
                moved = (self._noise[p].detach() + self.prompt_step * self._scale * g.sign()).clamp(-bound, bound)
                self._noise[p] = moved.requires_grad_(True)
                self._last[p] = step
        return loss
