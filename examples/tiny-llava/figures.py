"""Print the figures of run.sh's and countermeasures.sh's scans: each rate with its count and 95% CI (Wilson at 0 or
1, else bootstrap), clean vs adversarial (per defense for the countermeasures), and the perturbation of each crafted
image. Usage: python figures.py [OUT] (default: runs)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from mmsafe.metrics import summarize
from mmsafe.runner.store import DB_NAME, Store

RUNS = ("refusal16", "hijack16", "hijack16-unknown", "cropa16-unknown", "hijack4-2prompts", "cropa4-2prompts",
        "hijack4-2prompts-100", "cropa4-2prompts-100", "jailbreak32", "tool16")
COUNTERMEASURES = ("cm-clean", "cm-adversarial", "cm-adaptive", "cm-adaptive-purify", "cm-advft-clean",
                   "cm-advft-adversarial", "cm-advft-adaptive")


def rates(folder: Path, label: str) -> None:
    store = Store.open_existing(folder)
    try:
        for s in summarize(list(store.rows())):
            for name, r in (("ASR", s.asr), ("refusal", s.refusal), ("over-refusal", s.over_refusal)):
                if r.n:
                    # a count only where the rate is one: judges that score in [0, 1] give a mean
                    hits = r.value * r.n
                    count = f"{round(hits)}/{r.n}" if abs(hits - round(hits)) < 1e-6 else f"n={r.n}"
                    print(f"  {label:12} {s.group['defense']:16} {s.judge:42} {name:13} {count:>7} {r}")
    finally:
        store.close()


def main(out: Path) -> None:
    for run in RUNS:
        if not all((out / f"{run}-{kind}" / DB_NAME).is_file() for kind in ("clean", "adversarial")):
            print(f"{run}: not run yet")
            continue
        print(f"== {run}")
        for kind in ("clean", "adversarial"):
            rates(out / f"{run}-{kind}", kind)
        image(out / run)
    for run in COUNTERMEASURES:
        if (out / run / DB_NAME).is_file():
            print(f"== {run}")
            rates(out / run, run.removeprefix("cm-"))
    if all((out / run / DB_NAME).is_file() for run in ("cm-clean", "cm-advft-clean")):
        same = same_answers(out / "cm-clean", out / "cm-advft-clean")
        print(f"== clean answers of the fine-tuned model equal to the original's: {same}")
    for craft in ("refusal16-through-noise", "refusal16-through-purify", "refusal16-against-advft"):
        if (out / craft / "adversarial.jsonl").is_file():
            print(f"== {craft}")
            image(out / craft)


def same_answers(original: Path, tuned: Path) -> str:
    """How many undefended answers on the clean image the fine-tuned model gives word for word: what adversarial
    fine-tuning kept of the original behaviour (tiny-llava's vision is untrained, so it has no accuracy to keep)."""
    answers = []
    for folder in (original, tuned):
        store = Store.open_existing(folder)
        answers.append({r["sample_id"]: r["response"] for r in store.rows() if r["defense"] == "none"})
        store.close()
    shared = sorted(set(answers[0]) & set(answers[1]))
    return f"{sum(answers[0][k] == answers[1][k] for k in shared)}/{len(shared)}"


def image(folder: Path) -> None:
    row = json.loads((folder / "adversarial.jsonl").read_text().splitlines()[0])
    print("  image: " + ", ".join(f"{k} {row[k]:.4g}" for k in ("linf", "l2", "psnr", "ssim", "loss_clean",
                                                                  "loss_adv")) + f" (L∞ {row['linf'] * 255:.0f}/255)")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs"))
