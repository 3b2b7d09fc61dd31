"""A crafted adversarial set as a library object: ``save`` writes it as a dataset, ``load`` reads it back.

The images are saved as lossless 8-bit PNGs, exactly what ``mmsafe scan -d jsonl:DIR/adversarial.jsonl`` then
sends, so a scan measures the attack as a model receives it (after quantisation), not the float tensor it was
optimised as. ``clean.jsonl`` holds the same rows with the unperturbed start image: the paired baseline.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmsafe.attacks._gradient import Crafted
from mmsafe.registry import ComponentSpec
from mmsafe.types import ImageRef, Sample

ADVERSARIAL = "adversarial.jsonl"
CLEAN = "clean.jsonl"


@dataclass
class AdversarialSet:
    """``samples[i]`` attacked with ``crafted[i]`` (several samples may share one universal image), made by the
    attack ``attack`` against the target spec ``target``."""

    samples: list[Sample]
    crafted: list[Crafted]
    attack: ComponentSpec
    target: str

    def save(self, out: Path) -> None:
        """Write ``out/images/*.png`` (one file per distinct image), ``out/adversarial.jsonl`` (id, prompt, image,
        category, benign, system prompt and metadata, attack, target, norms and losses) and ``out/clean.jsonl``."""
        (out / "images").mkdir(parents=True, exist_ok=True)
        files: dict[Any, str] = {}

        def save_png(image: Any) -> str:
            ref = ImageRef.from_pil(image)  # PNG: lossless, so the scan reads exactly these 8-bit pixels
            name = f"images/{ref.sha256[:16]}.png"
            if name not in files.values():
                (out / name).write_bytes(ref.read_bytes())
            return name

        adversarial, clean = [], []
        for s, c in zip(self.samples, self.crafted):
            if id(c) not in files:
                files[id(c)] = save_png(c.image)
                files[(id(c), "clean")] = save_png(c.clean)
            # the sample's own fields (a scenario's goal, its system prompt) travel too: the judges read them
            base = {**_plain(s.metadata), "id": s.id, "prompt": s.prompt, "category": s.category,
                    "benign": s.benign, **({"system": s.system} if s.system else {})}
            row: dict[str, Any] = {**base, "image": files[id(c)], "attack": self.attack.name,
                                   "attack_spec": self.attack.label, "target": self.target, "source": s.source, "loss_clean": round(c.loss_clean, 6),
                                   "loss_adv": round(c.loss_adv, 6), "steps": c.steps}
            row.update({k: (None if v == float("inf") else round(v, 6)) for k, v in c.norms.items()})
            if self.attack.args.get("through"):  # crafted through a purifier: the report marks these rows adaptive
                row["adaptive"] = self.attack.args["through"]
            adversarial.append(json.dumps(row, ensure_ascii=False))
            clean.append(json.dumps({**base, "image": files[(id(c), "clean")], "source": s.source},
                                    ensure_ascii=False))
        (out / ADVERSARIAL).write_text("\n".join(adversarial) + "\n", encoding="utf-8")
        (out / CLEAN).write_text("\n".join(clean) + "\n", encoding="utf-8")

    @staticmethod
    def load(out: Path, clean: bool = False) -> list[Sample]:
        """The saved samples with their adversarial images (``clean``: with the start images), as a scan reads
        them."""
        from mmsafe.datasets import datasets

        with datasets.build({"name": "jsonl", "args": {"_": str(out / (CLEAN if clean else ADVERSARIAL))}}) as ds:
            return ds.load()


def _plain(metadata: dict[str, Any]) -> dict[str, Any]:
    """The metadata entries that survive a JSON round trip (images and other objects stay behind), less the names
    the JSONL loader reads as the row's own images."""
    out = {}
    for k, v in metadata.items():
        if k in ("image", "images"):
            continue
        try:
            json.dumps(v)
        except (TypeError, ValueError):
            continue
        out[k] = v
    return out
