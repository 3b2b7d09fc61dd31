"""Projected gradient descent on image pixels, shared by every gradient attack.

The objective is passed in: a callable from pixels (B, 3, H, W) in [0, 1] to one loss per row (B,), to be
minimised. The engine knows nothing about models or prompts, so one implementation serves hijacking, jailbreak and
refusal attacks alike (the design torchattacks' users ask for). Budgets are in [0, 1] pixel units.

Steps follow Madry et al. 2018 ("Towards Deep Learning Models Resistant to Adversarial Attacks"): a signed-gradient
step for L∞, a gradient step normalised to unit L2 length for L2, then projection onto the ε-ball and onto [0, 1].
``adam`` replaces the fixed step with Adam on the perturbation (Kingma & Ba 2015), as Bailey et al. 2023 (Image
Hijacks) do. EOT averages the loss over random transformations (Athalye et al. 2018, "Synthesizing Robust
Adversarial Examples") so the image survives small resizes, crops and noise.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

NORMS = ("linf", "l2")
METHODS = ("sign", "adam")


@dataclass
class PGDConfig:
    """``eps``: radius of the ball in [0, 1] pixel units (L∞: 16/255 = 0.0627; L2: the Euclidean norm over all
    pixels), ``None`` = unconstrained (only the [0, 1] bounds). ``step_size``: the L∞ / L2 step, or Adam's learning
    rate; ``None`` picks 1/255 (L∞ sign), 2.5·eps/steps (L2, Madry et al.) or 0.01 (Adam).
    ``universal``: one perturbation shared by every row (rows must then share the clean image).
    ``eot``: random transformations per step (0 = none). ``stop_loss``: stop once every row's loss is at or below it.
    ``patience``: stop after that many steps without a better loss. ``mask``: (1, 1, H, W) tensor of 0/1, the
    pixels the attack may change (a patch); ``None`` = all. ``keep``: ``best`` returns the point with the lowest
    loss seen (per row, or mean for universal), ``last`` the last one evaluated: for objectives that change as
    they go (an adversary on the other side), where an early low loss was measured against a weaker opponent."""

    eps: float | None = 16 / 255
    norm: str = "linf"
    steps: int = 100
    step_size: float | None = None
    method: str = "sign"
    random_start: bool = False
    universal: bool = False
    eot: int = 0
    stop_loss: float | None = None
    patience: int | None = None
    seed: int = 0
    mask: Any = None
    keep: str = "best"

    def __post_init__(self) -> None:
        if self.keep not in ("best", "last"):
            raise ValueError(f"keep must be best or last, not {self.keep!r}")
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {', '.join(NORMS)}, not {self.norm!r}")
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, not {self.method!r}")
        if self.eps is not None and self.eps <= 0:
            raise ValueError(f"eps must be positive (or None for unconstrained), not {self.eps}")
        if self.steps < 0 or self.eot < 0:
            raise ValueError("steps and eot must be >= 0")

    def step(self) -> float:
        if self.step_size is not None:
            return self.step_size
        if self.method == "adam":
            return 0.01
        if self.norm == "l2" and self.eps is not None:
            return 2.5 * self.eps / max(self.steps, 1)
        return 1 / 255


@dataclass
class PGDResult:
    adv: Any  # (B, 3, H, W) best pixels found, in [0, 1]
    best: list[float]  # lowest loss per row
    history: list[list[float]] = field(default_factory=list)  # per step, the loss per row
    steps: int = 0


def project(delta: Any, clean: Any, eps: float | None, norm: str, mask: Any = None) -> Any:
    """Nearest perturbation inside the ε-ball whose image stays in [0, 1]. The two sets are convex and the box
    clip only shrinks each coordinate towards 0, so clipping after the ball projection stays in the ball; zeroing
    the pixels outside ``mask`` only shrinks the norm too."""
    import torch

    if mask is not None:
        delta = delta * mask.to(delta.device)
    if eps is not None:
        if norm == "linf":
            delta = delta.clamp(-eps, eps)
        else:
            n = delta.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
            delta = delta * torch.clamp(eps / n, max=1.0)
    return (clean + delta).clamp(0, 1) - clean


def random_transform(x: Any, gen: Any) -> Any:
    """One random EOT view, torch only: crop 90-100% of the side at a random place, resize back, add noise."""
    import torch
    import torch.nn.functional as F

    h, w = x.shape[-2:]
    s = 0.9 + 0.1 * torch.rand((), generator=gen).item()
    ch, cw = max(1, round(h * s)), max(1, round(w * s))
    top = int(torch.randint(0, h - ch + 1, (), generator=gen))
    left = int(torch.randint(0, w - cw + 1, (), generator=gen))
    view = F.interpolate(x[..., top:top + ch, left:left + cw], size=(h, w), mode="bilinear", align_corners=False)
    noise = torch.randn(view.shape, generator=gen).to(view.device) * (2 / 255)
    return (view + noise).clamp(0, 1)


def pgd(
    objective: Callable[[Any], Any],
    clean: Any,
    config: PGDConfig,
    progress: Callable[[int, list[float]], None] | None = None,
) -> PGDResult:
    """Minimise ``objective`` over perturbations of ``clean`` (B, 3, H, W) in [0, 1]. ``progress(step, losses)``
    is called after every step with the loss of each row at that step."""
    import torch

    gen = torch.Generator().manual_seed(config.seed)
    clean = clean.detach().float()
    shape = (1, *clean.shape[1:]) if config.universal else tuple(clean.shape)
    delta = torch.zeros(shape)
    if config.random_start:
        if config.eps is None:
            delta = torch.rand(shape, generator=gen).to(clean.device) - clean[:1 if config.universal else None]
        elif config.norm == "linf":
            delta = (torch.rand(shape, generator=gen) * 2 - 1) * config.eps
        else:
            d = torch.randn(shape, generator=gen)
            r = torch.rand((shape[0], 1, 1, 1), generator=gen) * config.eps
            delta = d / d.flatten(1).norm(dim=1).view(-1, 1, 1, 1) * r
    delta = project(delta.to(clean.device), clean[:1] if config.universal else clean, config.eps, config.norm,
                    config.mask)
    delta.requires_grad_(True)
    alpha = config.step()
    opt = torch.optim.Adam([delta], lr=alpha) if config.method == "adam" else None

    def evaluate(d: Any) -> Any:
        x = clean + d
        if config.eot:
            return torch.stack([objective(random_transform(x, gen)) for _ in range(config.eot)]).mean(0)
        return objective(x)

    rows = clean.shape[0]
    best = [math.inf] * rows
    best_mean = math.inf
    adv = clean.clone()
    history: list[list[float]] = []
    stale = 0
    step = 0
    for step in range(1, config.steps + 1):
        losses = evaluate(delta)
        values = [float(v) for v in losses.detach()]
        # record the point this loss belongs to before stepping away from it
        x_now = (clean + delta.detach()).clamp(0, 1)
        if config.keep == "last":
            adv = x_now.expand_as(clean).clone()
        if config.universal:
            mean = sum(values) / rows
            improved = mean < best_mean - 1e-4
            if mean < best_mean:
                best_mean, best = mean, values
                if config.keep == "best":
                    adv = x_now.expand_as(clean).clone()
        else:
            improved = False
            for i, v in enumerate(values):
                if v < best[i]:
                    improved |= v < best[i] - 1e-4
                    best[i] = v
                    if config.keep == "best":
                        adv[i] = x_now[i]
        history.append(values)
        if progress is not None:
            progress(step, values)
        if config.stop_loss is not None and max(values) <= config.stop_loss:
            break
        stale = 0 if improved else stale + 1
        if config.patience is not None and stale >= config.patience or step == config.steps:
            break  # the last step's update would never be evaluated
        if opt is not None:
            opt.zero_grad()
            losses.sum().backward()
            opt.step()
        else:
            (grad,) = torch.autograd.grad(losses.sum(), delta)
            with torch.no_grad():
                if config.norm == "linf":
                    delta -= alpha * grad.sign()
                else:
                    delta -= alpha * grad / grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
        with torch.no_grad():
            delta.copy_(project(delta, clean[:1] if config.universal else clean, config.eps, config.norm,
                                config.mask))
    return PGDResult(adv=adv.detach(), best=best, history=history, steps=step)
