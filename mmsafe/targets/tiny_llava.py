"""An offline LLaVA: real SmolLM2-135M-Instruct as the language model, a small random CLIP vision tower.

The vision side is untrained, so the model cannot describe images; what it offers is the real architecture (vision
tower -> projector -> image tokens in a real chat LM) for testing white-box attacks and the scan end to end with no
download. Built once from the embedded SmolLM2 and cached under ``mmsafe.models.cache_dir()/models``.
``python -m mmsafe.train.tiny_llava --out DIR`` trains its vision side on drawn pictures (``hf:DIR``).
"""

from __future__ import annotations

import logging
from typing import Any
from pathlib import Path

from mmsafe.models import EMBEDDED, cache_dir, resolve, save_atomically
from mmsafe.targets.base import targets
from mmsafe.targets.hf_llava import HFLlava

log = logging.getLogger(__name__)

FOLDER = "tiny-llava-v1"  # bump the version when the recipe below changes: old caches are then ignored
IMAGE_TOKEN = "<image>"
SEED = 0


def build_tiny_llava(target: Path) -> Path:
    """Write the tiny LLaVA to ``target`` (atomically) unless it is there already."""
    if (target / "config.json").is_file():
        return target
    import torch
    from transformers import (AutoModelForCausalLM, AutoTokenizer, CLIPVisionConfig, LlavaConfig,
                              LlavaForConditionalGeneration)

    log.warning("building the offline tiny-llava model in %s (once)", target)
    src = resolve(EMBEDDED)
    tok = AutoTokenizer.from_pretrained(src)
    lm = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32)
    tok.add_special_tokens({"additional_special_tokens": [IMAGE_TOKEN]})
    # 224 px in patches of 16 -> 196 image tokens: LLaVA's layout at a size two CPU cores can optimise.
    vision = CLIPVisionConfig(image_size=224, patch_size=16, hidden_size=256, intermediate_size=1024,
                              num_hidden_layers=4, num_attention_heads=4)
    config = LlavaConfig(vision_config=vision, text_config=lm.config,
                         image_token_id=tok.convert_tokens_to_ids(IMAGE_TOKEN))
    torch.manual_seed(SEED)
    model = LlavaForConditionalGeneration(config)
    model.model.language_model.load_state_dict(lm.model.state_dict())
    model.lm_head.load_state_dict(lm.lm_head.state_dict())
    model.resize_token_embeddings(len(tok), mean_resizing=False)
    model.generation_config = lm.generation_config
    return save_atomically(model, tok, target)


@targets.register("tiny-llava")
class TinyLlava(HFLlava):
    """Offline white-box VLM: LLaVA architecture with the real SmolLM2-135M-Instruct as its language model and a
    small random CLIP vision tower (224 px, seed 0). For testing gradient attacks without a download."""

    needs_args = None  # the checkpoint is built here

    hub = False  # never picked by ``hf:``: it is not a hub checkpoint

    def __init__(self, **kwargs: Any) -> None:
        """The arguments of ``HFLlava`` except ``model``: the checkpoint is always the one built here."""
        super().__init__("tiny-llava", **kwargs)

    def source(self) -> str:
        return str(build_tiny_llava(cache_dir() / "models" / FOLDER))
