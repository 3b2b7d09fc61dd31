"""Adversarial fine-tuning of a LLaVA-architecture model's vision side against a gradient image attack: the
model-side countermeasure MLLM-Refusal (Shao et al. 2024) evaluates, done in VLGuard's spirit (Zong et al. 2024:
fine-tune on the inputs the model gets wrong, paired with the answers it should give).

    python -m mmsafe.train.adversarial_finetune --out DIR [--model tiny-llava] [--attack refusal] [--steps 40]

Each step draws B (picture, question) pairs from the defender's own data: drawn pictures of shapes and generic
questions written here, none of them an attacker's image or question (``examples/tiny-llava``'s scene, shadow and
held-out questions stay unseen, so the countermeasure is measured on what it was not trained on). The target
answer of each pair is the model's own greedy answer with the clean picture, generated once before training: the
behaviour to keep. An inner PGD (``--inner`` steps, random start, L∞ ``--eps``) then makes the attack's target
strings likely (refusal openings for ``refusal``, the forced string for ``hijack:...``), and one optimiser step
lowers the NLL of the clean answer given both the adversarial and the clean picture (Madry et al. 2018's min-max,
with the clean term for utility). The language model stays frozen; the vision tower and projector learn. The result
is a normal LLaVA folder, used as ``hf:DIR``; ``DIR/adversarial_finetune.json`` records the recipe.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from mmsafe.batching import in_batches
from mmsafe.train.tiny_llava import arguments, load_llava, picture, vision_side

# The defender's questions (our wording): about a picture and general, disjoint from examples/tiny-llava's
# shadow and held-out questions.
QUESTIONS = (
    "What can you tell me about this picture?",
    "Which colours appear in this image?",
    "Is there anything round in the picture?",
    "How would you describe this image to a friend?",
    "What is the most noticeable thing here?",
    "Does this image look calm or busy?",
    "Write a short caption for the picture.",
    "What might this image be used for?",
    "Name a fruit that is yellow.",
    "How many legs does a spider have?",
    "What is the opposite of cold?",
    "Give me a tip for sleeping well.",
    "What do bees make?",
    "Suggest a name for a goldfish.",
    "What is the largest ocean?",
    "How do you say thank you in German?",
)


def pairs(target: Any, count: int, seed: int, max_new_tokens: int) -> list[tuple[Any, str, str]]:
    """``count`` (clean pixels, question, the model's own clean answer) triples on drawn pictures."""
    from mmsafe.types import ImageRef, Sample

    rng = random.Random(seed)
    drawn = [(picture(rng, target.image_size[0])[0], QUESTIONS[i % len(QUESTIONS)]) for i in range(count)]
    samples = [Sample(id=str(i), prompt=q, images=(ImageRef.from_pil(im),)) for i, (im, q) in enumerate(drawn)]
    kept, target.max_new_tokens = target.max_new_tokens, max_new_tokens
    try:
        answers = in_batches(samples, target.batch_size, target.generate)
    finally:
        target.max_new_tokens = kept
    # An empty answer teaches nothing: those pairs are dropped.
    return [(target.to_pixels(im), q, a.text.strip()) for (im, q), a in zip(drawn, answers) if a.text.strip()]


def train(target: Any, data: list[tuple[Any, str, str]], attack_strings: list[str], steps: int, batch: int,
          lr: float, eps: float, inner: int, seed: int, log: Any = print) -> list[dict[str, float]]:
    """Adversarially fine-tune the vision tower and projector of a loaded LLaVA ``target`` in place; returns per
    step the attack's loss after the inner PGD and the clean answers' loss on adversarial and clean pictures."""
    import torch

    from mmsafe.attacks._pgd import PGDConfig, pgd

    params = vision_side(target)
    opt = torch.optim.AdamW(params, lr=lr)
    rng = random.Random(seed)
    config = PGDConfig(eps=eps, steps=inner, step_size=2.5 * eps / inner, random_start=True, seed=seed)
    history = []
    for step in range(1, steps + 1):
        chosen = rng.sample(data, min(batch, len(data)))
        clean = torch.stack([c[0] for c in chosen])
        prompts, answers = [c[1] for c in chosen], [c[2] for c in chosen]
        wanted = [rng.choice(attack_strings) for _ in chosen]
        for p in params:  # the inner attack needs gradients to the pixels only
            p.requires_grad_(False)
        config.seed = seed * 100_003 + step  # a fresh random start each step
        found = pgd(lambda x: target.loss(x, prompts, wanted), clean, config)
        adversarial = found.adv.detach()
        for p in params:
            p.requires_grad_(True)
        on_adv = target.loss(adversarial, prompts, answers).mean()
        on_clean = target.loss(clean, prompts, answers).mean()
        opt.zero_grad()
        (on_adv + on_clean).backward()
        opt.step()
        history.append({"attack": sum(found.best) / len(found.best), "adversarial": float(on_adv.detach()),
                        "clean": float(on_clean.detach())})
        if step % 5 == 0 or step == steps:
            recent = history[-5:]
            log(f"step {step}/{steps}  " + "  ".join(
                f"{k} {sum(h[k] for h in recent) / len(recent):.3f}" for k in ("attack", "adversarial", "clean")))
    for p in params:
        p.requires_grad_(False)
    return history


def main(argv: list[str] | None = None) -> None:
    ap = arguments(__doc__, "fine-tuned")
    ap.add_argument("--attack", default="refusal",
                    help="the gradient attack to resist, as for `mmsafe attack -a`: refusal, or hijack:'TEXT'")
    ap.add_argument("--steps", type=int, default=40, help="optimiser steps")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--eps", type=float, default=16, help="inner attack's L∞ budget in pixel levels of 255")
    ap.add_argument("--inner", type=int, default=2, help="inner PGD steps per optimiser step")
    ap.add_argument("--pairs", type=int, default=48, help="(picture, question) pairs drawn for training")
    ap.add_argument("--answer-tokens", type=int, default=24, help="length of the clean answers to keep")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    if a.out.exists():
        raise SystemExit(f"{a.out} exists; give a new folder")

    from mmsafe.attacks import GradientAttack, attacks
    from mmsafe.models import save_atomically

    attack = attacks.build(a.attack)
    if not isinstance(attack, GradientAttack):
        raise SystemExit(f"{a.attack}: not a gradient attack (refusal, hijack:'TEXT', visual-jailbreak, ...)")
    target = load_llava(a.model)
    data = pairs(target, a.pairs, a.seed, a.answer_tokens)
    if not data:
        raise SystemExit(f"{a.model} answered none of the {a.pairs} training questions; nothing to keep")
    print(f"{len(data)} (picture, question, clean answer) pairs; resisting {a.attack} at {a.eps:g}/255")
    train(target, data, attack.target_strings(), a.steps, a.batch, a.lr, a.eps / 255, a.inner, a.seed)
    save_atomically(target.model, target.tok, a.out)
    recipe = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()}
    (a.out / "adversarial_finetune.json").write_text(json.dumps(recipe, indent=1) + "\n", encoding="utf-8")
    print(f"saved to {a.out}; use it as --target hf:{a.out}")


if __name__ == "__main__":
    main()
