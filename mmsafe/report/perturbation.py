"""Terminal table (rich) of the perturbation norms the gradient attacks of a run recorded, per attack."""

from __future__ import annotations

import math
from typing import Any

from rich import box
from rich.table import Table

from mmsafe.metrics.perturbation import NORMS, stored_norms

TITLES = {"linf": "L∞ (×255)", "l2": "L2", "psnr": "PSNR dB", "ssim": "SSIM"}
SCALE = {"linf": 255.0}  # L∞ in pixel levels, the unit budgets are given in


def norms_by_attack(rows: list[dict[str, Any]]) -> dict[str, dict[str, list[float]]]:
    """``{attack: {norm: finite values, in the units of TITLES}}`` (identical images have infinite PSNR)."""
    out: dict[str, dict[str, list[float]]] = {}
    for n in stored_norms(rows):
        per = out.setdefault(n["attack"], {k: [] for k in NORMS})
        for k in NORMS:
            if k in n and math.isfinite(n[k]):
                per[k].append(n[k] * SCALE.get(k, 1.0))
    return dict(sorted(out.items()))


def perturbation_table(rows: list[dict[str, Any]]) -> Table | None:
    found = norms_by_attack(rows)
    if not found:
        return None
    table = Table(title="Perturbation norms recorded by the attacks", box=box.SIMPLE_HEAVY,
                  caption="Between each attacked image and its clean start image, as the attack measured them on the "
                  "8-bit image it sent; infinite PSNR (identical images) is left out of its mean.")
    table.add_column("attack", no_wrap=True)
    for name in ("images", *(f"mean {TITLES[k]}" for k in NORMS), f"max {TITLES['linf']}"):
        table.add_column(name, justify="right", no_wrap=True)
    for attack, values in found.items():
        table.add_row(attack, str(max(len(v) for v in values.values())),
                      *(f"{sum(v) / len(v):.3f}" if v else "-" for v in values.values()),
                      f"{max(values['linf']):.1f}" if values["linf"] else "-")
    return table
