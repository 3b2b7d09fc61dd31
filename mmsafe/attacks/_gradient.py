"""Base of the gradient (white-box) image attacks: turns (prompt, target string) pairs into a PGD objective.

A subclass says which prompts to train on and which strings to make likely; this base builds the objective from
the target's ``loss``, runs the shared PGD engine, quantises the result to 8-bit PNG (what a model receives in
practice) and measures the perturbation. Budgets are given in pixel levels of 255 for both norms (``eps=16`` is
16/255 in L∞; in L2 it is a Euclidean norm of 16/255 over all pixels in [0, 1] units).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmsafe.attacks._pgd import PGDConfig, pgd
from mmsafe.attacks.base import Attack
from mmsafe.images import load_image
from mmsafe.targets.base import Target, WhiteBox, require
from mmsafe.types import ImageRef, Sample

# (group, groups, step, steps, mean loss at this step)
Progress = Callable[[int, int, int, int, float], None]


@dataclass
class Crafted:
    """One adversarial image and how it was made. Losses are the mean over all training pairs, measured on the
    8-bit image (``loss_adv``) and on the clean one (``loss_clean``)."""

    image: Any  # PIL RGB, 8-bit
    clean: Any  # PIL RGB, the start point at the target's image size
    norms: dict[str, float]
    loss_clean: float
    loss_adv: float
    steps: int
    history: list[float] = field(default_factory=list)  # mean loss per step


class GradientAttack(Attack):
    """Shared options of the gradient attacks. ``target``: the white-box target spec used when ``apply`` has to
    craft (``mmsafe attack`` crafts ahead instead). ``image``: path of the clean start image; by default the
    sample's first image, or mid-grey when it has none. ``batch``: rows per PGD step: for a universal attack the
    (prompt, target) pairs seen per step (a rotating window over all of them; default all), for a per-sample
    attack (``universal: false``) the samples optimised together (default: the target's batch size).
    ``prompts``: what a universal image is optimised over: a list, one prompt, a ``.txt`` (one per line) or
    ``.jsonl`` (``prompt`` fields) file, or ``samples`` for the prompts of the samples sharing the image; the
    default depends on the attack. Prompts the image was not optimised on then measure generalisation.
    ``through``: an input-purifier defense (``gaussian-noise``, ``jpeg+tv-purify``, ...) to optimise through, for an
    adaptive evaluation that credits no defense for gradient masking: each step applies the purifier's own transform
    to the images in the forward pass, with fresh randomness (EOT over the steps), and passes the gradient straight
    back (BPDA, Athalye et al. 2018: exact for additive noise, the usual approximation for JPEG, bit depth, median
    and TV). Crafted images then record ``adaptive: <through>`` in their metadata."""

    universal: bool = True
    modalities = ("text", "image")
    # The target capabilities (protocols in targets/base.py) the attack uses; checked when it is bound to a target.
    requires: tuple[type, ...] = (WhiteBox,)

    def __init__(
        self,
        target: str | None = None,
        eps: float | None = 16,
        norm: str = "linf",
        steps: int = 100,
        step_size: float | None = None,
        method: str = "sign",
        random_start: bool = False,
        eot: int = 0,
        stop_loss: float | None = None,
        patience: int | None = None,
        seed: int = 0,
        image: str | None = None,
        batch: int | None = None,
        universal: bool | None = None,
        prompts: Any = None,
        through: str | None = None,
    ) -> None:
        self.config = PGDConfig(eps=None if eps is None else eps / 255, norm=norm, steps=steps,
                                step_size=step_size, method=method, random_start=random_start, eot=eot,
                                stop_loss=stop_loss, patience=patience, seed=seed)
        self.target_spec = target
        self.image = image
        self.batch = batch
        if batch is not None and batch < 1:
            raise ValueError(f"batch must be >= 1, not {batch}")
        if universal is not None:
            self.universal = universal
        self.prompts = read_prompts(prompts)
        self.through = through
        self._purifiers = _purifiers(through)
        self._target: Target | None = None  # built from ``target`` for ``apply``, owned and closed here
        self._bound: set[int] = set()
        self._cache: dict[str, Crafted] = {}

    # --- what subclasses define ------------------------------------------------------------------------------------

    def target_strings(self) -> list[str]:
        """The strings the attack makes likely as the answer."""
        raise NotImplementedError

    def default_prompts(self, samples: list[Sample]) -> list[str]:
        """Prompts a universal image is optimised over when ``prompts`` is not given: the samples' own."""
        return [s.prompt for s in samples]

    def train_prompts(self, samples: list[Sample]) -> list[str]:
        if self.prompts is None:
            return self.default_prompts(samples)
        return [s.prompt for s in samples] if self.prompts == "samples" else self.prompts

    def pair_loss(self, target: WhiteBox, pixels: Any, pairs: list[tuple[str, str]],
                  systems: list[str | None] | None = None) -> Any:
        """The PGD objective for one step: per-row loss of (prompt, target string) ``pairs`` on ``pixels``, under
        the system prompts ``systems`` (the samples' own; ``None``: the target's)."""
        # only when set: a white-box target written before ``systems`` existed still takes the rest
        extra = {"systems": systems} if systems else {}
        return target.loss(pixels, [p for p, _ in pairs], [t for _, t in pairs], **extra)

    def mask(self, height: int, width: int) -> Any:
        """(1, 1, H, W) tensor of the pixels the attack may change, or ``None`` for the whole image."""
        return None

    # --- binding to a target --------------------------------------------------------------------------------------

    def bind(self, target: Any) -> WhiteBox:
        """Check ``target`` has every capability in ``requires`` (``ComponentError`` naming attack and target if
        not), then load it. Checked before any model is loaded, so a wrong pairing fails at once."""
        if id(target) not in self._bound:
            require(target, self.requires, getattr(self, "registry_name", type(self).__name__))
            self._bound.add(id(target))
        target.load()
        return target

    def load(self) -> None:
        """Build and bind the ``target`` spec's target (what ``apply`` crafts on); nothing without one."""
        if self.target_spec is not None and self._target is None:
            from mmsafe.targets import targets

            target = targets.build(self.target_spec)
            try:
                self.bind(target)
            except Exception:
                target.close()
                raise
            self._target = target

    def close(self) -> None:
        if self._target is not None:
            self._target.close()
            self._target = None

    # --- crafting -------------------------------------------------------------------------------------------------

    def base_image(self, sample: Sample) -> ImageRef | None:
        if self.image:
            return ImageRef(path=Path(self.image))
        return sample.images[0] if sample.images else None

    def _key(self, sample: Sample) -> str:
        ref = self.base_image(sample)
        base = ref.sha256 if ref is not None else "grey"
        if sample.system:  # a universal image is made for one system prompt: the context it is crafted in
            base += ":" + hashlib.sha256(sample.system.encode()).hexdigest()[:16]
        return base if self.universal else f"{base}:{sample.id}:{sample.prompt}"

    def _clean(self, target: WhiteBox, sample: Sample) -> Any:
        import torch

        ref = self.base_image(sample)
        if ref is None:
            h, w = target.image_size
            return torch.full((3, h, w), 0.5)
        return target.to_pixels(load_image(ref))

    def craft(self, target: WhiteBox, samples: list[Sample], progress: Progress | None = None) -> list[Crafted]:
        """One crafted image per sample, in order. Universal attacks make one image per distinct clean image,
        optimised over all prompts of the samples that share it; per-sample attacks optimise one image per sample,
        ``batch`` samples (default: the target's batch size) at a time in one batched PGD run."""
        self.bind(target)
        groups: dict[str, list[Sample]] = {}
        for s in samples:
            if self._key(s) not in self._cache:
                groups.setdefault(self._key(s), []).append(s)
        keys = list(groups)
        if self.universal:
            chunks = [[k] for k in keys]
        else:
            size = self.batch or max(1, target.batch_size)
            chunks = [keys[i:i + size] for i in range(0, len(keys), size)]
        for g, chunk in enumerate(chunks):
            units = [(self._clean(target, groups[k][0]), self._pairs(groups[k]), groups[k][0].system) for k in chunk]
            for k, c in zip(chunk, self._craft_units(target, units, g, len(chunks), progress)):
                self._cache[k] = c
        return [self._cache[self._key(s)] for s in samples]

    def _pairs(self, members: list[Sample]) -> list[tuple[str, str]]:
        prompts = self.train_prompts(members) if self.universal else [members[0].prompt]
        return [(p, t) for p in prompts for t in self.target_strings()]

    def _craft_units(self, target: WhiteBox, units: list[tuple[Any, list[tuple[str, str]], str | None]], g: int,
                     groups: int, progress: Progress | None) -> list[Crafted]:
        """PGD for ``units`` of (clean image, training pairs, system prompt): one universal unit whose rows are its
        pairs, or several per-sample units, one row each."""
        import numpy as np
        import torch
        from PIL import Image

        from mmsafe.metrics.perturbation import perturbation

        clean = torch.stack([u[0] for u in units])
        if target.device:
            clean = clean.to(target.device)  # the perturbation lives where the model does: no copies per step
        universal = len(units) == 1 and self.universal
        pairs = units[0][1]
        rows = min(self.batch or len(pairs), len(pairs)) if universal else len(units)
        systems = [units[0][2]] * rows if universal else [u[2] for u in units]
        calls = 0

        def objective(x: Any) -> Any:
            # a rotating window over the pairs: every pair is seen, deterministically, when a step holds fewer
            nonlocal calls
            if universal:
                chosen = [pairs[(calls * rows + i) % len(pairs)] for i in range(rows)]
            else:
                chosen = [u[1][calls % len(u[1])] for u in units]
            calls += 1
            if self._purifiers:
                x = _through(self._purifiers, x, [self.config.seed, calls])
            # systems only when set, as in pair_loss: an override written before them keeps working
            return self.pair_loss(target, x, chosen, **({"systems": systems} if any(systems) else {}))

        config = PGDConfig(**{**self.config.__dict__, "universal": universal,
                              "mask": self.mask(*clean.shape[-2:])})
        history: list[float] = []

        def step(i: int, losses: list[float]) -> None:
            history.append(sum(losses) / len(losses))
            if progress is not None:
                progress(g, groups, i, config.steps, history[-1])

        result = pgd(objective, clean.expand(rows, -1, -1, -1) if universal else clean, config, step)
        to8 = lambda t: (t.cpu().permute(1, 2, 0).numpy() * 255).round().clip(0, 255).astype(np.uint8)  # noqa: E731
        to_unit = lambda a: torch.from_numpy(a.astype(np.float32) / 255).permute(2, 0, 1)  # noqa: E731
        out = []
        for i, (_, unit_pairs, system) in enumerate(units):
            adv8, clean8 = to8(result.adv[i]), to8(clean[i])
            out.append(Crafted(
                image=Image.fromarray(adv8), clean=Image.fromarray(clean8), norms=perturbation(clean8, adv8),
                loss_clean=self._mean_loss(target, to_unit(clean8), unit_pairs, system),
                loss_adv=self._mean_loss(target, to_unit(adv8), unit_pairs, system), steps=result.steps,
                history=history,
            ))
        return out

    def _mean_loss(self, target: WhiteBox, pixels: Any, pairs: list[tuple[str, str]], system: str | None) -> float:
        import torch

        size = max(1, target.batch_size)
        total = 0.0
        with torch.no_grad():
            for i in range(0, len(pairs), size):
                chunk = pairs[i:i + size]
                x = pixels.unsqueeze(0).expand(len(chunk), -1, -1, -1).to(target.device or "cpu")
                extra = {"systems": [system] * len(chunk)} if system else {}
                total += float(target.loss(x, [p for p, _ in chunk], [t for _, t in chunk], **extra).sum())
        return total / len(pairs)

    # --- Attack ---------------------------------------------------------------------------------------------------

    def apply(self, sample: Sample) -> Sample:
        """The sample with its first image replaced by the crafted one (added when it had none). Crafts on first
        use with the ``target`` spec; the result is cached, so the same sample always gets the same bytes."""
        key = self._key(sample)
        if key not in self._cache:
            if self.target_spec is None:
                raise ValueError(f"attack {getattr(self, 'registry_name', type(self).__name__)!r} is a gradient "
                                 "attack: give it a white-box target (args: {target: tiny-llava}) or craft "
                                 "images first with `mmsafe attack`")
            self.load()
            self.craft(self._target, [sample])  # type: ignore[arg-type] - load() bound it
        image = ImageRef.from_pil(self._cache[key].image)
        rest = sample.images[1:] if sample.images else ()
        return sample.with_(images=(image, *rest), metadata={**sample.metadata, **self.describe(sample)})

    def describe(self, sample: Sample) -> dict[str, Any]:
        c = self._cache[self._key(sample)]
        return {"norms": c.norms, "loss_clean": c.loss_clean, "loss_adv": c.loss_adv,
                **({"adaptive": self.through} if self.through else {})}


def _purifiers(spec: str | None) -> list[Any]:
    """The purifiers of a ``through`` spec, built now so a wrong name fails when the attack is built."""
    if spec is None:
        return []
    from mmsafe.defenses import Purifier, defenses

    built = defenses.build(spec)
    parts = getattr(built, "parts", [built])
    wrong = [getattr(p, "registry_name", type(p).__name__) for p in parts if not isinstance(p, Purifier)]
    if wrong:
        raise ValueError(f"through={spec!r}: {', '.join(wrong)} is not an image purifier; an attack optimises "
                         "through gaussian-noise, jpeg, bit-depth, median, resize-pad or tv-purify")
    return parts


def _through(purifiers: list[Any], x: Any, seed: list[int]) -> Any:
    """BPDA: the purified images in the forward pass, the identity in the backward one."""
    import numpy as np
    import torch

    rng = np.random.default_rng(seed)
    out = []
    for xi in x.detach().cpu().permute(0, 2, 3, 1).numpy():
        for p in purifiers:
            xi = p.purify_array(xi, rng)
        out.append(xi)
    purified = torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).to(x.device, x.dtype)
    return x + (purified - x).detach()


def read_prompts(value: Any) -> Any:
    """``prompts`` as given: ``None``, ``"samples"``, a list, a single prompt, or a .txt / .jsonl file of them."""
    if value is None or value == "samples":
        return value
    if isinstance(value, str):
        if not value.endswith((".txt", ".jsonl")):
            return [value]
        path = Path(value)
        if not path.is_file():
            raise ValueError(f"prompts file {path} does not exist")
        lines = [(n, line.strip()) for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)]
        if value.endswith(".txt"):
            return [line for _, line in lines if line] or _no_prompts(path)
        import json

        out = []
        for n, line in lines:
            if not line:
                continue
            try:
                prompt = json.loads(line)["prompt"]
            except (ValueError, KeyError, TypeError) as e:
                raise ValueError(f"{path}:{n}: expected a JSON object with a 'prompt' field ({e})") from e
            out.append(str(prompt))
        return out or _no_prompts(path)
    prompts = [str(p) for p in value]
    return prompts or _no_prompts("the prompts list")


def target_list(value: Any, default: Any, what: str) -> list[str]:
    """Target strings as given (one string or a list; ``None``: ``default``), checked non-empty."""
    items = [value] if isinstance(value, str) else list(value or default)
    if not items or not all(str(x).strip() for x in items):
        raise ValueError(f"{what} must be a non-empty list of non-empty strings")
    return items


def _no_prompts(where: Any) -> Any:
    raise ValueError(f"{where} holds no prompts")
