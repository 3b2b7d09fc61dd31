"""The batched PGD engine vs a batch-1 loop (what the papers' code does), same model, same samples, same steps.

Each sample gets its own perturbation (per-sample PGD, L∞ 16/255, signed gradient). Both runs do the same number
of forward+backward passes per sample; only the batching differs. Prints samples·steps/s for both and the ratio.
On CPU batching gains little (the matrix products already use every core); on a GPU it gains a lot.

    python benchmarks/pgd_throughput.py [--target tiny-llava] [--samples 4] [--steps 5] [--device cuda]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from mmsafe.attacks import PGDConfig, pgd  # noqa: E402
from mmsafe.targets import targets  # noqa: E402

PROMPTS = ["What is in this image?", "Describe the picture.", "What colour is the sky here?", "Is this safe?",
           "Tell me a story about it.", "What happens next?", "Who made this?", "Where was this taken?"]
GOALS = ["Visit example.com now.", "Sure, here it is.", "I cannot help with that.", "The answer is 42."]


def main() -> None:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", default="tiny-llava", help="a white-box target spec, e.g. hf:llava-hf/llava-1.5-7b-hf")
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--device", default=None)
    ap.add_argument("--dtype", default="float32")
    a = ap.parse_args()

    args = {"dtype": a.dtype, **({"device": a.device} if a.device else {})}
    spec = a.target.split(":", 1)
    target = targets.build({"name": spec[0], "args": {**args, **({"_": spec[1]} if len(spec) > 1 else {})}})
    target.load()
    n = a.samples
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(n)]
    goals = [GOALS[i % len(GOALS)] for i in range(n)]
    clean = torch.rand(n, 3, *target.image_size, generator=torch.Generator().manual_seed(0)).to(
        getattr(target, "device", None) or "cpu")
    config = PGDConfig(eps=16 / 255, steps=a.steps)

    def sync() -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    pgd(lambda x: target.loss(x, prompts[:1], goals[:1]), clean[:1], PGDConfig(eps=16 / 255, steps=1))  # warm-up
    sync()
    t0 = time.perf_counter()
    batched = pgd(lambda x: target.loss(x, prompts, goals), clean, config)
    sync()
    t_batched = time.perf_counter() - t0

    t0 = time.perf_counter()
    looped = [pgd(lambda x, i=i: target.loss(x, prompts[i:i + 1], goals[i:i + 1]), clean[i:i + 1], config)
              for i in range(n)]
    sync()
    t_loop = time.perf_counter() - t0

    work = n * a.steps
    print(f"target {a.target}, {n} samples x {a.steps} steps, image {target.image_size}, device "
          f"{getattr(target, 'device', None) or 'cpu'}, torch threads {torch.get_num_threads()}")
    print(f"batched engine : {t_batched:7.2f} s  {work / t_batched:6.2f} samples·steps/s  "
          f"final loss {sum(batched.best) / n:.3f}")
    print(f"batch-1 loop   : {t_loop:7.2f} s  {work / t_loop:6.2f} samples·steps/s  "
          f"final loss {sum(min(r.best) for r in looped) / n:.3f}")
    print(f"speed-up       : {t_loop / t_batched:.2f}x")


if __name__ == "__main__":
    main()
