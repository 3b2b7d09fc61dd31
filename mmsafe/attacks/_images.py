"""Pictures and lettering for attacks that put text on or under an image (MM-SafetyBench's SD+TYPO, visual prompt
injection).

A source is named by a string: ``none`` (no picture), ``natural`` (a procedural outdoor scene: the same bytes on
every machine), ``skimage`` (scikit-image's bundled photos, when it is installed), ``text-to-image:<id>`` (a
diffusers pipeline), or a folder of images (``folder:<path>`` or just the path). Every source is deterministic: the
same key gives the same picture, so a resumed run sends the same bytes.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from mmsafe.fonts import load_font
from mmsafe.images import IMAGE_SUFFIXES, load_image
from mmsafe.types import ImageRef

# MM-SafetyBench draws with Arial; FreeSans has the same metrics, DejaVuSans is the last resort.
SANS_FONTS = [
    "/usr/share/fonts/truetype/msttcorefonts/Arial.ttf",
    "/Library/Fonts/Arial.ttf",
    "C:/Windows/Fonts/arial.ttf",
    "/usr/share/fonts/truetype/freefont/FreeSans.ttf",
    "/usr/share/fonts/gnu-free/FreeSans.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
]
# Photos bundled inside the scikit-image wheel (its "legacy" data files), so reading them needs no download.
SKIMAGE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")


def sans_font(size: int, font: str | None = None) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """``font`` if given, else the first sans-serif font found (Arial, FreeSans, DejaVuSans)."""
    return load_font(size, font or next((p for p in SANS_FONTS if Path(p).is_file()), None))


def wrap_to_width(text: str, face: ImageFont.FreeTypeFont | ImageFont.ImageFont, width: float) -> list[str]:
    """Greedy word wrap by rendered width; a word wider than ``width`` gets a line of its own."""
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    lines: list[str] = []
    for word in text.split():
        if lines and measure.textlength(f"{lines[-1]} {word}", font=face) < width:
            lines[-1] += f" {word}"
        else:
            lines.append(word)
    return lines or [""]


def seed_of(key: str) -> int:
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big")


class ImageSource:
    """``picture(key, prompt) -> RGB image``: ``key`` picks the picture, ``prompt`` describes it (used only by
    generators)."""

    def picture(self, key: str, prompt: str) -> Image.Image:
        raise NotImplementedError


def landscape(seed: int, size: tuple[int, int] = (1024, 1024)) -> Image.Image:
    """A procedural outdoor scene (sky, sun, hills), different for every seed: an offline stand-in for a photo
    that needs no optional package, so runs on different machines send the same image."""
    rng = np.random.default_rng(seed)
    w, h = size
    y = np.linspace(0.0, 1.0, h)[:, None, None]
    top, bottom = rng.uniform([40, 90, 160], [110, 160, 235]), rng.uniform([170, 200, 220], [235, 235, 250])
    sky = (top * (1 - y) + bottom * y) * np.ones((1, w, 1))
    im = Image.fromarray(sky.clip(0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(im)
    sx, sy, r = rng.uniform(0.15, 0.85) * w, rng.uniform(0.08, 0.3) * h, rng.uniform(0.04, 0.08) * w
    draw.ellipse((sx - r, sy - r, sx + r, sy + r), fill=(255, 236, 170))
    xs = np.arange(w)
    for layer in range(3):  # far to near: higher, bluer, flatter hills first
        base = h * (0.45 + 0.15 * layer)
        ridge = np.full(w, base)
        for _ in range(3):  # a sum of three random sines
            ridge += rng.uniform(10, 45) * np.sin(2 * math.pi * rng.uniform(0.5, 3.0) * xs / w + rng.uniform(0, 6))
        green = np.array([60 - 15 * layer, 120 - 20 * layer + rng.uniform(-20, 20), 70 - 20 * layer]) + 40 * (2 - layer)
        colour = tuple(int(c) for c in green.clip(0, 255))
        draw.polygon([(0, h), *zip(xs.tolist(), ridge.tolist()), (w - 1, h)], fill=colour)
    return im.filter(ImageFilter.GaussianBlur(1))  # soft edges, as in a photo


class NaturalImage(ImageSource):
    """A procedural landscape chosen by hash of the key."""

    def picture(self, key: str, prompt: str) -> Image.Image:
        return landscape(seed_of(key))


class SkimagePhotos(ImageSource):
    """A real photo from scikit-image's bundled data (``skimage.data``), chosen by hash of the key."""

    def __init__(self) -> None:
        if importlib.util.find_spec("skimage") is None:
            raise ImportError("the skimage image source needs scikit-image: pip install scikit-image")

    def picture(self, key: str, prompt: str) -> Image.Image:
        from skimage import data  # only its bundled photos, never a download

        name = SKIMAGE_PHOTOS[seed_of(key) % len(SKIMAGE_PHOTOS)]
        return Image.fromarray(getattr(data, name)()).convert("RGB")


class FolderImages(ImageSource):
    """The images of a folder (sorted by name), one chosen by hash of the key."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise ValueError(f"image folder {self.folder} does not exist")
        self.files = sorted(p for p in self.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise ValueError(f"image folder {self.folder} has no images ({', '.join(IMAGE_SUFFIXES)})")

    def picture(self, key: str, prompt: str) -> Image.Image:
        return load_image(ImageRef(path=self.files[seed_of(key) % len(self.files)]))


class TextToImage(ImageSource):
    """A diffusers text-to-image pipeline (e.g. MM-SafetyBench's Stable Diffusion); the seed comes from the key so
    the same key gives the same picture. Loaded on first use."""

    def __init__(self, pipeline: str, steps: int = 30, device: str | None = None) -> None:
        if importlib.util.find_spec("diffusers") is None:
            raise ImportError(
                f"the text-to-image image source ({pipeline}) needs diffusers: pip install diffusers accelerate"
            )
        self.pipeline_id = pipeline
        self.steps = steps
        self.device = device
        self._pipe = None

    def picture(self, key: str, prompt: str) -> Image.Image:
        import torch
        from diffusers import DiffusionPipeline

        if self._pipe is None:
            device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
            dtype = torch.float16 if device.startswith("cuda") else torch.float32
            self._pipe = DiffusionPipeline.from_pretrained(self.pipeline_id, torch_dtype=dtype).to(device)
        generator = torch.Generator(device="cpu").manual_seed(seed_of(key) % 2**63)
        out = self._pipe(prompt=prompt, num_inference_steps=self.steps, generator=generator)
        return out.images[0].convert("RGB")


def build_source(spec: str | None) -> ImageSource | None:
    """``none``/``None`` -> no picture; ``natural``; ``skimage``; ``text-to-image:<pipeline id>``; ``folder:<path>``
    or a path."""
    if spec is None or spec == "none":
        return None
    if spec == "natural":
        return NaturalImage()
    if spec == "skimage":
        return SkimagePhotos()
    kind, sep, arg = spec.partition(":")
    if sep and kind == "text-to-image":
        return TextToImage(arg)
    if sep and kind == "folder":
        return FolderImages(arg)
    if Path(spec).is_dir():
        return FolderImages(spec)
    raise ValueError(
        f"unknown image source {spec!r}: use none, natural, skimage, text-to-image:<pipeline id>, folder:<path> or "
        "a folder"
    )
