"""How far an attacked image is from the clean one: L∞, L2, PSNR and SSIM, with numpy only.

Images are arrays (or anything ``numpy.asarray`` takes, PIL images included) of shape HxW or HxWxC: integer arrays
are read as 0-255, float arrays as already in [0, 1]. Every distance is on the [0, 1] scale, the one gradient attacks
state their budgets in: an L∞ budget of 16/255 reads 0.0627 here.

SSIM follows Wang et al. 2004 (Image Quality Assessment: From Error Visibility to Structural Similarity): an 11x11
Gaussian window with sigma 1.5, K1 = 0.01, K2 = 0.03, statistics weighted by the window (no sample-size
correction), the mean over the positions where the window fits inside the image, then over channels.

``row_perturbations`` applies them to a run's stored rows (PIL only opens the files).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

WINDOW = 11
SIGMA = 1.5
K1, K2 = 0.01, 0.03


def as_unit(image: Any) -> np.ndarray:
    """float64 array in [0, 1], HxWxC (a grayscale image gets C = 1)."""
    x = np.asarray(image)
    if x.dtype == bool:
        raise ValueError("boolean arrays are not images")
    if np.issubdtype(x.dtype, np.integer):
        x = x.astype(np.float64) / 255.0
    else:
        x = x.astype(np.float64)
    if x.ndim == 2:
        x = x[:, :, None]
    if x.ndim != 3:
        raise ValueError(f"expected an HxW or HxWxC image, got shape {x.shape}")
    return x


def _pair(clean: Any, attacked: Any) -> tuple[np.ndarray, np.ndarray]:
    a, b = as_unit(clean), as_unit(attacked)
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: clean {a.shape}, attacked {b.shape}")
    return a, b


def linf(clean: Any, attacked: Any) -> float:
    a, b = _pair(clean, attacked)
    return float(np.max(np.abs(a - b))) if a.size else 0.0


def l2(clean: Any, attacked: Any) -> float:
    a, b = _pair(clean, attacked)
    return float(np.sqrt(np.sum((a - b) ** 2)))


def psnr(clean: Any, attacked: Any) -> float:
    """Peak signal-to-noise ratio in dB for a peak of 1; infinite for identical images."""
    a, b = _pair(clean, attacked)
    mse = float(np.mean((a - b) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def _gaussian() -> np.ndarray:
    r = np.arange(WINDOW) - WINDOW // 2
    g = np.exp(-(r ** 2) / (2 * SIGMA ** 2))
    return g / g.sum()


def _filter(x: np.ndarray) -> np.ndarray:
    """Weighted window means at every position where the window fits ('valid'), per channel: separable."""
    g = _gaussian()
    rows = np.lib.stride_tricks.sliding_window_view(x, WINDOW, axis=0) @ g
    return np.lib.stride_tricks.sliding_window_view(rows, WINDOW, axis=1) @ g


def ssim(clean: Any, attacked: Any) -> float:
    a, b = _pair(clean, attacked)
    if min(a.shape[:2]) < WINDOW:
        raise ValueError(f"SSIM needs images of at least {WINDOW}x{WINDOW} pixels, got {a.shape[0]}x{a.shape[1]}")
    c1, c2 = (K1 * 1.0) ** 2, (K2 * 1.0) ** 2
    mu_a, mu_b = _filter(a), _filter(b)
    var_a = _filter(a * a) - mu_a ** 2
    var_b = _filter(b * b) - mu_b ** 2
    cov = _filter(a * b) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return float(s.mean())


def perturbation(clean: Any, attacked: Any) -> dict[str, float]:
    """All four norms, for a report row."""
    return {"linf": linf(clean, attacked), "l2": l2(clean, attacked), "psnr": psnr(clean, attacked),
            "ssim": ssim(clean, attacked)}


def row_perturbations(
    rows: list[dict[str, Any]], run_dir: str | Path, clean_attack: str = "none"
) -> list[dict[str, Any]]:
    """Norms between the images each attacked row sent and the images its clean row sent (same dataset, sample,
    defense and target under ``clean_attack``), image by image. Rows whose clean counterpart sent no image, a
    different number of images or images of another size are skipped: there is no clean image to compare with."""
    from PIL import Image

    def load(ref: dict[str, Any]) -> np.ndarray:
        path = Path(ref["path"])
        with Image.open(path if path.is_absolute() else Path(run_dir) / path) as im:
            return np.asarray(im.convert("RGB"))

    clean = {(r["dataset"], r["sample_id"], r["defense"], r["target"]): r
             for r in rows if r["attack"] == clean_attack}
    out = []
    for r in rows:
        c = clean.get((r["dataset"], r["sample_id"], r["defense"], r["target"]))
        if r["attack"] == clean_attack or c is None or not r["images"] or len(r["images"]) != len(c["images"]):
            continue
        for i, (ref_c, ref_a) in enumerate(zip(c["images"], r["images"])):
            a, b = load(ref_c), load(ref_a)
            if a.shape == b.shape:
                out.append({"dataset": r["dataset"], "sample_id": r["sample_id"], "attack": r["attack"],
                            "defense": r["defense"], "target": r["target"], "image": i, **perturbation(a, b)})
    return out


NORMS = ("linf", "l2", "psnr", "ssim")


def stored_norms(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The norms each row's attack recorded when it sent its image, without opening any image: a gradient attack run
    inside the scan puts them under ``norms`` of the sent sample's fields; a saved adversarial set (``mmsafe attack``,
    read back through ``jsonl``) has them as top-level fields of each row. One entry per row that has them, named by
    the row's attack, or by the crafting attack (``attack_spec``) for a saved set scanned with ``none``."""
    out = []
    for r in rows:
        meta = r.get("sent_metadata") or {}
        norms = meta.get("norms") if isinstance(meta.get("norms"), dict) else meta
        found = {k: norms[k] for k in NORMS if isinstance(norms.get(k), (int, float))}
        if found:
            attack = r["attack"] if r["attack"] != "none" or "attack_spec" not in meta else str(meta["attack_spec"])
            out.append({"dataset": r["dataset"], "sample_id": r["sample_id"], "attack": attack,
                        "defense": r["defense"], "target": r["target"], **found})
    return out
