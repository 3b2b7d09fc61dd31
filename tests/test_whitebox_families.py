"""White-box VLM targets of each family on tiny random models of the exact architecture, built and saved here.

Each test saves a real folder (config + weights + tokenizer + image processor config, the published layout), loads
it through the target class by path, and checks the loss, its gradients to the pixels, that a signed-gradient PGD
lowers it within the epsilon ball, that the torch preprocessing matches the family's own image processor, and that
batched generation answers samples with an image, without one, and isolates an unreadable one.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from conftest import check_prompt_noise  # noqa: E402
from mmsafe.targets import targets  # noqa: E402
from mmsafe.types import ImageRef, Sample  # noqa: E402

GEN_ARGS = {"max_new_tokens": 4, "batch_size": 2}
PROMPTS = ["What is shown in the picture?", "Describe the image briefly."]
TARGETS = ["Sure, here is", "A red square"]

# ChatML as in SmolLM2, with the family's own image marker written where an image part is.
CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}{% if part['type'] == 'image' %}IMAGE_MARKER"
    "{% else %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def tokenizer_with(special: list[str], marker: str | None):
    """The embedded SmolLM2 tokenizer with the family's special tokens added and a chat template using ``marker``."""
    from transformers import AutoTokenizer

    from mmsafe.models import resolve

    tok = AutoTokenizer.from_pretrained(resolve("smollm2"))
    tok.add_special_tokens({"additional_special_tokens": special})
    if marker is not None:
        tok.chat_template = CHATML.replace("IMAGE_MARKER", marker)
    return tok


def image_ref(color: tuple[int, int, int], size: int = 64) -> ImageRef:
    from PIL import Image, ImageDraw

    im = Image.new("RGB", (size, size), color)
    ImageDraw.Draw(im).rectangle([size // 4, size // 4, size // 2, size // 2], fill=(255 - color[0], 200, 30))
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return ImageRef(data=buf.getvalue())


def save(folder: Path, model, tok, image_processor) -> str:
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    image_processor.save_pretrained(folder)
    return str(folder)


def build(name: str, folder: str, **args):
    """The family target for ``folder``; the ``hf`` dispatcher must pick the same class from the config."""
    target = targets.build({"name": name, "args": {"model": folder, **GEN_ARGS, **args}})
    assert type(targets.build({"name": "hf", "args": {"model": folder}})) is type(target)
    return target


def assert_matches_processor(target, image_processor) -> None:
    """The torch preprocessing gives what the model's own (PIL) image processor gives for an image already at
    ``image_size`` (so no resampling differs): same normalisation, patch order and auxiliary inputs."""
    import numpy as np
    from PIL import Image

    h, w = target.image_size
    arr = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    ref = image_processor(images=[Image.fromarray(arr)], return_tensors="pt")
    ours = target.vision_inputs(torch.from_numpy(arr / 255.0).float().permute(2, 0, 1)[None])
    compared = [key for key in ours if key in ref]
    assert "pixel_values" in compared, (list(ours), list(ref))
    for key in compared:
        assert ours[key].shape == ref[key].shape, key
        assert torch.allclose(ours[key].float(), ref[key].float(), atol=1e-5), key


def check_whitebox(target, eps: float = 16 / 255, steps: int = 4) -> None:
    """Loss shape/finiteness/gradients, a short PGD that lowers it within the eps ball, and batched generation."""
    h, w = target.image_size
    gen = torch.Generator().manual_seed(0)
    clean = torch.rand(2, 3, h, w, generator=gen)
    x = clean.clone().requires_grad_(True)
    loss = target.loss(x, PROMPTS, TARGETS)
    assert loss.shape == (2,)
    assert torch.isfinite(loss).all()
    (grad,) = torch.autograd.grad(loss.sum(), x)
    assert grad.abs().sum() > 0, "no gradient reached the pixels"
    with pytest.raises(ValueError, match="image_size"):
        target.loss(torch.rand(2, 3, h + 1, w), PROMPTS, TARGETS)

    start = loss.detach()
    adv = clean.clone()
    alpha = eps / 2
    for _ in range(steps):
        adv.requires_grad_(True)
        (g,) = torch.autograd.grad(target.loss(adv, PROMPTS, TARGETS).sum(), adv)
        adv = adv.detach() - alpha * g.sign()
        adv = (clean + (adv - clean).clamp(-eps, eps)).clamp(0, 1)
    with torch.no_grad():
        end = target.loss(adv, PROMPTS, TARGETS)
    assert (end < start).all(), f"PGD did not lower the loss: {start.tolist()} -> {end.tolist()}"
    assert (adv - clean).abs().max() <= eps + 1e-6
    assert adv.min() >= 0 and adv.max() <= 1
    check_prompt_noise(target, PROMPTS, TARGETS)

    samples = [
        Sample(id="a", prompt=PROMPTS[0], images=(image_ref((200, 20, 20)),)),
        Sample(id="b", prompt=PROMPTS[1], images=(image_ref((20, 20, 200), size=48),)),
        Sample(id="bad", prompt="broken", images=(ImageRef(data=b"not an image"),)),
        Sample(id="text", prompt="Hello there."),
    ]
    out = target.generate(samples)
    assert len(out) == 4
    for r in (out[0], out[1], out[3]):
        assert r.error is None, r.error
        assert r.completion_tokens and 0 < r.completion_tokens <= target.max_new_tokens
        assert r.prompt_tokens and r.prompt_tokens > 0
    assert out[2].error and "<12 bytes in memory>" in out[2].error



@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl"])
def test_qwen2_vl(tmp_path: Path, family: str) -> None:
    import transformers as tf
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    special = ["<|vision_start|>", "<|image_pad|>", "<|vision_end|>"]
    tok = tokenizer_with(special, "".join(special))
    ids = tok.convert_tokens_to_ids(special)
    if family == "qwen2_vl":
        prefix, vision = "Qwen2VL", {"depth": 1, "embed_dim": 32, "hidden_size": 64, "num_heads": 2, "mlp_ratio": 2}
    else:
        prefix, vision = "Qwen2_5_VL", {"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2,
                                        "out_hidden_size": 64, "fullatt_block_indexes": [1]}
    torch.manual_seed(0)
    config = getattr(tf, f"{prefix}Config")(
        text_config={
            "vocab_size": len(tok), "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1,
            "num_attention_heads": 4, "num_key_value_heads": 2,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
            "bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id, "pad_token_id": tok.pad_token_id,
        },
        vision_config=vision,
        vision_start_token_id=ids[0], image_token_id=ids[1], vision_end_token_id=ids[2],
    )
    model = getattr(tf, f"{prefix}ForConditionalGeneration")(config)
    ip = Qwen2VLImageProcessorPil()
    folder = save(tmp_path / family, model, tok, ip)

    target = build("hf-qwen2-vl", folder, image_size=56)
    assert target.image_size == (56, 56)
    assert_matches_processor(target, ip)
    check_whitebox(target)


def llama_text(tok) -> dict:
    return {
        "model_type": "llama", "vocab_size": len(tok), "hidden_size": 64, "intermediate_size": 128,
        "num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 2, "bos_token_id": tok.bos_token_id,
        "eos_token_id": tok.eos_token_id, "pad_token_id": tok.pad_token_id,
    }


@pytest.mark.parametrize("family", ["idefics3", "smolvlm"])
def test_idefics3_smolvlm(tmp_path: Path, family: str) -> None:
    import transformers as tf
    from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil

    special = ["<fake_token_around_image>", "<image>", "<end_of_utterance>", "<global-img>"]
    tok = tokenizer_with(special, "<image>")
    prefix = "Idefics3" if family == "idefics3" else "SmolVLM"
    torch.manual_seed(0)
    config = getattr(tf, f"{prefix}Config")(
        text_config=llama_text(tok),
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                       "image_size": 32, "patch_size": 8},
        scale_factor=2, image_token_id=tok.convert_tokens_to_ids("<image>"),
    )
    model = getattr(tf, f"{prefix}ForConditionalGeneration")(config)
    ip = Idefics3ImageProcessorPil(
        do_image_splitting=False, max_image_size={"longest_edge": 32}, size={"longest_edge": 32}
    )
    folder = save(tmp_path / family, model, tok, ip)

    target = build("hf-idefics3", folder)
    assert target.image_size == (32, 32)
    text = target.prompt_text("hi", True)
    assert text.count("<image>") == 4 and "<global-img>" in text  # (32/8)^2 patches / 2^2 pixel shuffle
    assert_matches_processor(target, ip)
    check_whitebox(target)


def test_paligemma(tmp_path: Path) -> None:
    from transformers import PaliGemmaConfig, PaliGemmaForConditionalGeneration
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

    tok = tokenizer_with(["<image>"], None)  # PaliGemma has no chat template
    torch.manual_seed(0)
    config = PaliGemmaConfig(
        text_config={"model_type": "gemma", "vocab_size": len(tok), "hidden_size": 64, "intermediate_size": 128,
                     "num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 16,
                     "bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id,
                     "pad_token_id": tok.pad_token_id},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                       "image_size": 32, "patch_size": 8, "projection_dim": 64},
        image_token_index=tok.convert_tokens_to_ids("<image>"), projection_dim=64, hidden_size=64,
        vocab_size=len(tok),
    )
    model = PaliGemmaForConditionalGeneration(config)
    ip = SiglipImageProcessorPil(size={"height": 32, "width": 32}, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    folder = save(tmp_path / "paligemma", model, tok, ip)

    target = build("hf-paligemma", folder)
    assert target.image_size == (32, 32)
    assert target.prompt_text("hi", True) == "<image>" * 16 + f"{tok.bos_token}hi\n"
    assert_matches_processor(target, ip)
    check_whitebox(target)


def test_gemma3(tmp_path: Path) -> None:
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration
    from transformers.models.gemma3.image_processing_pil_gemma3 import Gemma3ImageProcessorPil

    special = ["<start_of_image>", "<end_of_image>", "<image_soft_token>"]
    tok = tokenizer_with(special, "<start_of_image>")
    boi, eoi, soft = tok.convert_tokens_to_ids(special)
    torch.manual_seed(0)
    config = Gemma3Config(
        text_config={"vocab_size": len(tok), "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                     "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 16, "query_pre_attn_scalar": 16,
                     "sliding_window": 16, "bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id,
                     "pad_token_id": tok.pad_token_id},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                       "image_size": 32, "patch_size": 8},
        mm_tokens_per_image=4, boi_token_index=boi, eoi_token_index=eoi, image_token_index=soft,
    )
    model = Gemma3ForConditionalGeneration(config)
    # transformers initialises the image projection to zeros (no image signal, no gradient); a trained one is not.
    torch.nn.init.normal_(model.model.multi_modal_projector.mm_input_projection_weight, std=0.2)
    ip = Gemma3ImageProcessorPil(size={"height": 32, "width": 32}, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    folder = save(tmp_path / "gemma3", model, tok, ip)

    target = build("hf-gemma3", folder)
    assert target.image_size == (32, 32)
    assert "\n\n<start_of_image>" + "<image_soft_token>" * 4 + "<end_of_image>\n\n" in target.prompt_text("hi", True)
    assert_matches_processor(target, ip)
    check_whitebox(target)


def test_mllama(tmp_path: Path) -> None:
    from transformers import MllamaConfig, MllamaForConditionalGeneration
    from transformers.models.mllama.image_processing_pil_mllama import MllamaImageProcessorPil

    tok = tokenizer_with(["<|image|>"], "<|image|>")
    torch.manual_seed(0)
    config = MllamaConfig(
        text_config={"vocab_size": len(tok), "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                     "num_attention_heads": 4, "num_key_value_heads": 2, "cross_attention_layers": [1],
                     "bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id,
                     "pad_token_id": tok.pad_token_id},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_global_layers": 1,
                       "attention_heads": 2, "image_size": 32, "patch_size": 8, "max_num_tiles": 4,
                       "intermediate_layers_indices": [0], "vision_output_dim": 64},
        image_token_index=tok.convert_tokens_to_ids("<|image|>"),
    )
    model = MllamaForConditionalGeneration(config)
    # transformers initialises the cross-attention gates to zero (text blind to the image); trained ones are open.
    for name, param in model.named_parameters():
        if name.endswith(("cross_attn_attn_gate", "cross_attn_mlp_gate")):
            torch.nn.init.constant_(param, 1.0)
    ip = MllamaImageProcessorPil(size={"height": 32, "width": 32}, max_image_tiles=4)
    folder = save(tmp_path / "mllama", model, tok, ip)

    target = build("hf-mllama", folder, system_prompt="Be brief.")
    assert target.image_size == (32, 32)
    assert target.prompt_text("hi", True).startswith("<|im_start|>system\nBe brief.<|im_end|>")
    assert_matches_processor(target, ip)
    check_whitebox(target)
