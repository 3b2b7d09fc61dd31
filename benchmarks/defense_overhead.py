"""What each defense adds per request: the same rows through the undefended reader and through each defense, in one
run, on one loaded model.

Rows: ``--samples`` mini samples (harmful and benign, spread over categories) under the attacks none and figstep.
Each defense's time includes everything it does (OCR, its own model calls, purification) and the target's answer
when it lets the request through; a block skips the answer, so a blocking defense can cost less than none.
Printed per defense: seconds per request, added over the undefended target, the ratio, and the share of requests
it blocked or rewrote.

    python benchmarks/defense_overhead.py [--samples 6] [--max-new-tokens 32] [--defenses jpeg,ocr-filter,...]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from mmsafe.attacks import attacks  # noqa: E402
from mmsafe.datasets import datasets  # noqa: E402
from mmsafe.defenses import defenses  # noqa: E402
from mmsafe.defenses.defended import DefendedTarget  # noqa: E402
from mmsafe.runner.scan import spread  # noqa: E402
from mmsafe.targets import targets  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=6, help="mini samples; rows = samples x 2 attacks")
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--defenses", default=",".join(n for n in defenses.names() if n != "none"))
    a = ap.parse_args()

    reader = targets.build({"name": "reader", "args": {"max_new_tokens": a.max_new_tokens, "batch_size": a.batch_size}})
    reader.load()
    samples = spread(datasets.build("mini").load(), a.samples)
    rows = [attacks.build(name).apply(s) for name in ("none", "figstep") for s in samples]

    def timed(spec: str) -> tuple[float, dict[str, int]]:
        defended = DefendedTarget(reader, spec)
        defended.run(rows[:1])  # warm-up outside the clock: first-call costs (OCR session, embedder, models)
        actions: dict[str, int] = {}
        t0 = time.perf_counter()
        for i in range(0, len(rows), a.batch_size):
            for _, resp in defended.run(rows[i:i + a.batch_size]):
                for d in resp.details["defenses"]:
                    actions[d["action"]] = actions.get(d["action"], 0) + 1
        elapsed = (time.perf_counter() - t0) / len(rows)
        defended.close()
        return elapsed, actions

    # The reader reads an image once per process: read every row's image before any clock starts, so the baseline
    # does not pay OCR that the defenses after it skip (a defense that changes the image still pays for its own).
    reader.generate(rows)
    base, _ = timed("none")
    print(f"rows: {len(rows)}  max_new_tokens: {a.max_new_tokens}  batch size: {a.batch_size}")
    print(f"{'defense':<18} {'s/request':>9} {'added s':>8} {'ratio':>6}  decisions")
    print(f"{'none':<18} {base:9.2f} {0:8.2f} {1:6.2f}")
    for spec in a.defenses.split(","):
        try:
            t, actions = timed(spec)
        except ValueError as e:  # e.g. activation-steering needs a white-box target; the reader is not one
            print(f"{spec:<18} skipped: {e}")
            continue
        said = ", ".join(f"{k} {v}" for k, v in sorted(actions.items()))
        print(f"{spec:<18} {t:9.2f} {t - base:+8.2f} {t / base:6.2f}  {said}", flush=True)


if __name__ == "__main__":
    main()
