"""Give a LLaVA-architecture model (by default the offline ``tiny-llava``) visual grounding on synthetic pictures.

    python -m mmsafe.train.tiny_llava --out DIR [--model tiny-llava] [--steps 300] [--batch 8]

Pictures are drawn here: a background of one colour and a shape (circle, square or triangle) of another. Questions
ask for the background colour, the shape, or the shape's colour, with one-word or short answers. The language
model stays frozen (it keeps SmolLM2's text behaviour); the vision tower and projector are trained on the answer's
negative log-likelihood, which is the white-box target's own ``loss``. Before and after training the script asks
held-out pictures (another seed) the three questions and prints the accuracy of each (an answer is right when it
names the right colour or shape). The result is a normal LLaVA folder: scan or attack it as ``hf:DIR``.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path
from typing import Any

COLOURS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220), "yellow": (240, 220, 40),
           "black": (20, 20, 20), "white": (245, 245, 245), "orange": (245, 140, 30), "purple": (140, 60, 180)}
SHAPES = ("circle", "square", "triangle")
QUESTIONS = {
    "background": ("What colour is the background?", "The background is {background}."),
    "shape": ("What shape is in the picture?", "A {shape}."),
    "colour": ("What colour is the shape?", "The {shape} is {colour}."),
}


def picture(rng: random.Random, size: int = 224) -> tuple[Any, dict[str, str]]:
    """One synthetic picture and its facts (background, shape, colour); the two colours always differ."""
    from PIL import Image, ImageDraw

    background, colour = rng.sample(sorted(COLOURS), 2)
    shape = rng.choice(SHAPES)
    im = Image.new("RGB", (size, size), COLOURS[background])
    draw = ImageDraw.Draw(im)
    r = rng.randint(size // 6, size // 3)
    cx, cy = rng.randint(r, size - r), rng.randint(r, size - r)
    box = (cx - r, cy - r, cx + r, cy + r)
    if shape == "circle":
        draw.ellipse(box, fill=COLOURS[colour])
    elif shape == "square":
        draw.rectangle(box, fill=COLOURS[colour])
    else:
        draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=COLOURS[colour])
    return im, {"background": background, "shape": shape, "colour": colour}


def correct(kind: str, facts: dict[str, str], answer: str) -> bool:
    """The answer names the asked fact and no other colour/shape of its kind first."""
    words = [w.strip(".,!").lower() for w in answer.split()]
    vocab = SHAPES if kind == "shape" else tuple(COLOURS)
    named = [w for w in words if w in vocab]
    return bool(named) and named[0] == facts["shape" if kind == "shape" else kind]


def evaluate(target: Any, pictures: list[tuple[Any, dict[str, str]]]) -> dict[str, float]:
    """Accuracy per question kind on ``pictures`` with greedy answers."""
    from mmsafe.batching import in_batches
    from mmsafe.types import ImageRef, Sample

    scores = {}
    for kind, (question, _) in QUESTIONS.items():
        samples = [Sample(id=str(i), prompt=question, images=(ImageRef.from_pil(im),))
                   for i, (im, _) in enumerate(pictures)]
        answers = in_batches(samples, target.batch_size, target.generate)
        scores[kind] = sum(correct(kind, f, a.text) for (_, f), a in zip(pictures, answers)) / len(pictures)
    return scores


def train(target: Any, steps: int, batch: int, lr: float, seed: int, log: Any = print) -> list[float]:
    """Train the vision tower and projector of a loaded LLaVA ``target`` in place; returns the loss per step."""
    import torch

    params = vision_side(target)
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=lr)
    rng = random.Random(seed)
    history = []
    for step in range(1, steps + 1):
        images, prompts, answers = [], [], []
        for _ in range(batch):
            im, facts = picture(rng, target.image_size[0])
            question, answer = QUESTIONS[rng.choice(sorted(QUESTIONS))]
            images.append(target.to_pixels(im))
            prompts.append(question)
            answers.append(answer.format(**facts))
        loss = target.loss(torch.stack(images), prompts, answers).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(float(loss.detach()))
        if step % 10 == 0 or step == steps:
            log(f"step {step}/{steps}  loss {sum(history[-10:]) / len(history[-10:]):.4f}")
    for p in params:
        p.requires_grad_(False)
    return history


def vision_side(target: Any) -> list[Any]:
    """The parameters of a loaded LLaVA target's vision tower and projector: what this module's scripts train."""
    inner = target.model.model
    return [*inner.vision_tower.parameters(), *inner.multi_modal_projector.parameters()]


def arguments(doc: str, what: str) -> argparse.ArgumentParser:
    """The command line shared by the scripts that train a LLaVA's vision side: ``--out`` and ``--model``."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help=f"folder for the {what} model (hf:OUT loads it)")
    ap.add_argument("--model", default="tiny-llava", help="tiny-llava, or hf:<LLaVA id or folder>")
    return ap


def load_llava(spec: str) -> Any:
    """Build and load the LLaVA target ``spec`` as a private copy (training changes its weights, so not the copy
    other components share); exits with a message when it is not a LLaVA."""
    from mmsafe.targets import targets
    from mmsafe.targets.hf_llava import HFLlava

    target = targets.build(spec)
    if not isinstance(target, HFLlava):
        raise SystemExit(f"{spec}: not a LLaVA target; this script trains LLaVA's vision tower and projector")
    target.shared = False
    target.load()
    return target


def main(argv: list[str] | None = None) -> None:
    ap = arguments(__doc__, "trained")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--eval", type=int, default=48, help="held-out pictures asked each question")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)

    from mmsafe.models import save_atomically

    target = load_llava(a.model)
    target.max_new_tokens = 12  # the answers checked are a few words
    held_out = [picture(random.Random(f"eval-{a.seed}-{i}"), target.image_size[0]) for i in range(a.eval)]
    print("before:", {k: f"{v:.0%}" for k, v in evaluate(target, held_out).items()})
    train(target, a.steps, a.batch, a.lr, a.seed)
    print("after: ", {k: f"{v:.0%}" for k, v in evaluate(target, held_out).items()})
    if a.out.exists():
        raise SystemExit(f"{a.out} exists; give a new folder")
    save_atomically(target.model, target.tok, a.out)
    print(f"saved to {a.out}; use it as --target hf:{a.out}")


if __name__ == "__main__":
    main()
