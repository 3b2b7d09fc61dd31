from __future__ import annotations

from typing import Any

from mmsafe.targets.base import Target, targets


@targets.register("hf")
class HF(Target):
    """Any supported Hugging Face VLM by hub id or folder (``hf:llava-hf/llava-1.5-7b-hf``): reads the checkpoint's
    ``model_type`` and builds the family target that declares it (hf-llava, ...), with the same arguments."""

    needs_args = "a Hugging Face model id or folder (hf:ID)"

    def __new__(cls, model: str, **kwargs: Any) -> Target:  # type: ignore[misc]
        from transformers import AutoConfig

        try:
            model_type = AutoConfig.from_pretrained(model).model_type
        except (OSError, ValueError) as e:
            raise ValueError(f"hf:{model}: cannot read the model's config: {e}") from e
        families = {name: f for name in targets.names() if getattr(f := targets.get(name), "hub", False)}
        for family in families.values():
            if model_type in getattr(family, "model_types", ()):
                return family(model, **kwargs)
        supported = sorted({t for f in families.values() for t in getattr(f, "model_types", ())})
        raise ValueError(f"hf:{model}: model_type {model_type!r} has no mmsafe target; supported: "
                         f"{', '.join(supported)}")
