from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from mmsafe.component import Loadable
from mmsafe.registry import ComponentError, Registry
from mmsafe.types import Response, Sample


class Target(Loadable):
    """A model that answers samples. ``generate`` gets up to ``batch_size`` samples and returns one ``Response``
    each, in order; a sample the target cannot handle gets a ``Response`` with ``error`` set, never an exception
    that would take its batch-mates down."""

    batch_size: int = 1
    # What the target reads; the runner skips attacks that need more (an image attack on a text-only model).
    modalities: tuple[str, ...] = ("text", "image")

    def generate(self, samples: list[Sample]) -> list[Response]:
        raise NotImplementedError


targets: Registry[Target] = Registry("target", "mmsafe.targets")


def generated(out: tuple[str, int, int] | Exception, latency_s: float, details: dict[str, Any]) -> Response:
    """One generation result, ``(text, prompt tokens, completion tokens)`` or the exception that row raised, as the
    ``Response`` a target returns."""
    if isinstance(out, Exception):
        return Response(error=f"generation failed: {type(out).__name__}: {out}")
    text, n_in, n_out = out
    return Response(text=text, latency_s=latency_s, prompt_tokens=n_in, completion_tokens=n_out, details=details)


@runtime_checkable
class WhiteBox(Protocol):
    """A target whose gradients reach the image: what gradient attacks need.

    ``loss`` takes pixels in [0, 1] image space, before the model's own normalisation (so an attack's epsilon is in
    pixel units, e.g. 16/255), at ``image_size`` = (height, width); resizing and normalisation happen inside the
    graph. It returns one loss per sample: the mean negative log-likelihood of ``targets[i]`` as the assistant's
    answer to ``prompts[i]`` with image ``pixels[i]`` (and system prompt ``systems[i]`` where given, as a sample's
    ``system`` in ``generate``). Lower = the model is more likely to say the target.
    ``to_pixels`` turns a PIL image into the (3, H, W) start point the attack perturbs; ``load`` is called before
    the first of them, and tensors go to ``device`` (``None``: CPU); ``batch_size`` rows are scored together.
    """

    batch_size: int
    device: str | None

    @property
    def image_size(self) -> tuple[int, int]: ...

    def load(self) -> None: ...

    def to_pixels(self, image: Any) -> Any: ...

    def loss(self, pixels: Any, prompts: list[str], targets: list[str],
             systems: list[str | None] | None = None) -> Any: ...  # (B,3,H,W) -> (B,)


@runtime_checkable
class PromptEmbeddings(Protocol):
    """A white-box target that also perturbs a prompt's token embeddings: the text side of cross-prompt attacks.

    ``loss(..., prompt_noise=)`` adds ``prompt_noise[i]`` (shape ``prompt_noise_shape(prompts[i])`` = (prompt
    tokens, hidden size), or ``None``) to the embeddings of row i's prompt tokens, differentiably;
    ``embedding_std`` is the spread of the token embeddings, the unit of perturbation budgets.
    """

    def prompt_noise_shape(self, prompt: str) -> tuple[int, int]: ...

    def embedding_std(self) -> float: ...

    def loss(self, pixels: Any, prompts: list[str], targets: list[str],
             prompt_noise: list[Any] | None = None, systems: list[str | None] | None = None) -> Any: ...


def lacks(obj: object, capability: type) -> list[str]:
    """The members of a capability protocol that ``obj`` lacks. Read from its class and instance dict, never by
    calling a property: a target's ``image_size`` may load its model, and checking must not."""
    members = {*getattr(capability, "__annotations__", {}),
               *(n for n, v in vars(capability).items()
                 if not n.startswith("_") and (callable(v) or isinstance(v, property)))}
    return sorted(m for m in members if not hasattr(type(obj), m) and m not in getattr(obj, "__dict__", {}))


def require(target: object, capabilities: tuple[type, ...], attack: str) -> None:
    """Raise ``ComponentError`` naming the attack, the target and what is missing unless ``target`` has every
    capability."""
    missing = {c.__name__: lacks(target, c) for c in capabilities}
    missing = {c: m for c, m in missing.items() if m}
    if missing:
        spec = getattr(target, "spec", None)
        name = spec.label if spec is not None else getattr(target, "registry_name", type(target).__name__)
        what = "; ".join(f"{c} (no {', '.join(m)})" for c, m in missing.items())
        raise ComponentError(f"attack {attack!r} cannot run on target {name!r}: the target is not {what}. "
                             "Use a white-box target such as tiny-llava or hf:<model id>.")


class WhiteBoxTarget(Target):
    """Base for targets that implement ``WhiteBox``: ``to_pixels`` defaults to a plain bicubic resize."""

    image_size: tuple[int, int] = (224, 224)
    device: str | None = None

    def to_pixels(self, image: Any) -> Any:
        from mmsafe.targets._pixels import to_pixels

        return to_pixels(image, self.image_size)

    def loss(self, pixels: Any, prompts: list[str], targets: list[str],
             systems: list[str | None] | None = None) -> Any:
        raise NotImplementedError
