"""Activation steering on tiny-llava: refusal (keywords) of every 10th unsafe and every 12th safe XSTest prompt,
undefended and behind ``activation-steering`` at each alpha given, with how many rows the gate steered.

    python examples/tiny-llava/steering.py [XSTEST_DIR] [ALPHA ...]    (default ../shared/datasets/xstest 1 2 4 16)
"""

from __future__ import annotations

import sys

from mmsafe.datasets import datasets
from mmsafe.defenses.defended import DefendedTarget
from mmsafe.judges import judges
from mmsafe.targets import targets
from mmsafe.types import Attempt


def main(argv: list[str]) -> None:
    folder = argv[0] if argv else "../shared/datasets/xstest"
    alphas = [float(a) for a in argv[1:]] or [1.0, 2.0, 4.0, 16.0]
    target = targets.build({"name": "tiny-llava", "args": {"max_new_tokens": 24, "batch_size": 16}})
    rows = datasets.build(f"xstest:{folder}").load()
    unsafe, safe = [s for s in rows if not s.benign][::10], [s for s in rows if s.benign][::12]
    keywords = judges.build("keywords")
    for alpha in [0.0, *alphas]:
        model = target if alpha == 0 else DefendedTarget(target, {"name": "activation-steering",
                                                                 "args": {"alpha": alpha}})
        answers = model.generate(unsafe + safe)
        refused = [v.refusal for v in keywords.judge([Attempt.of(s, r) for s, r in zip(unsafe + safe, answers)])]
        line = (f"alpha {alpha:g}: refusal {sum(refused[:len(unsafe)])}/{len(unsafe)} unsafe, "
                f"{sum(refused[len(unsafe):])}/{len(safe)} safe")
        if alpha:
            steered = [r.details["defenses"][0]["details"]["steered"] for r in answers]
            line += (f"; gate layer {model.defense.gate_layer} (calibration accuracy "
                     f"{model.defense.calibration_accuracy:.2f}) steered {sum(steered[:len(unsafe)])} unsafe, "
                     f"{sum(steered[len(unsafe):])} safe")
            line += "; e.g. " + repr(next((r.text[:60] for r, s in zip(answers, steered) if s), ""))
        print(line, flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
