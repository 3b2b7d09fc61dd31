"""Pictures the scenario datasets draw: a document or web page with text on it, a placeholder person with a caption,
a captioned landmark scene. Drawn, never photographed: no real person is shown, and the same case gives the same
bytes on every machine (seeded by the case id)."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from mmsafe.attacks._images import landscape, sans_font, seed_of, wrap_to_width

SIZE = 640
MARGIN = 28
INK = (25, 25, 25)
HEADER_FILL = (228, 231, 236)


def render_page(title: str, lines: list[str], header: str = "", size: int = SIZE, font_size: int = 22) -> Image.Image:
    """A document, e-mail or web page: an optional grey ``header`` bar (a URL, a "From:" line), a bold-sized
    ``title``, then each of ``lines`` as a wrapped paragraph. Text is dark on white at a size OCR reads."""
    im = Image.new("RGB", (size, size), "#FFFFFF")
    draw = ImageDraw.Draw(im)
    y = MARGIN
    if header:
        bar = font_size + 16
        draw.rectangle((0, 0, size, bar), fill=HEADER_FILL)
        draw.text((MARGIN, 8), header, fill=INK, font=sans_font(font_size))
        y = bar + MARGIN // 2
    for text, px in [(title, round(font_size * 1.35)), *((line, font_size) for line in lines)]:
        face = sans_font(px)
        for row in wrap_to_width(text, face, size - 2 * MARGIN) if text else []:
            draw.text((MARGIN, y), row, fill=INK, font=face)
            y += round(px * 1.3)
        y += px // 2
    return im


def render_person(caption: list[str], key: str, size: int = SIZE) -> Image.Image:
    """A drawn placeholder person (head and shoulders in seeded colours) above a name card holding ``caption``."""
    rng = np.random.default_rng(seed_of(key))
    backdrop = tuple(int(c) for c in rng.integers(170, 235, 3))
    im = Image.new("RGB", (size, size), backdrop)
    draw = ImageDraw.Draw(im)
    skin = tuple(int(c) for c in rng.integers([110, 70, 50], [240, 200, 170]))
    shirt = tuple(int(c) for c in rng.integers(30, 200, 3))
    cx, head = size // 2, size // 7
    draw.ellipse((cx - 2 * head, size * 0.42, cx + 2 * head, size * 0.95), fill=shirt)  # shoulders
    draw.ellipse((cx - head, size * 0.14, cx + head, size * 0.14 + 2.3 * head), fill=skin)  # head
    _caption_card(draw, caption, size)
    return im


def render_landmark(caption: list[str], key: str, size: int = SIZE) -> Image.Image:
    """A procedural outdoor scene with a dark tower shape and a plaque holding ``caption``."""
    im = landscape(seed_of(key), (size, size))
    draw = ImageDraw.Draw(im)
    cx = size // 2
    draw.polygon([(cx - size // 9, size * 0.7), (cx, size * 0.12), (cx + size // 9, size * 0.7)], fill=(70, 62, 58))
    _caption_card(draw, caption, size)
    return im


def _caption_card(draw: ImageDraw.ImageDraw, caption: list[str], size: int, font_size: int = 26) -> None:
    """White card across the lower part of the picture with ``caption`` lines on it."""
    face = sans_font(font_size)
    rows = [row for line in caption for row in wrap_to_width(line, face, size - 4 * MARGIN)]
    step = font_size + 10
    top = size - MARGIN - step * len(rows) - 16
    draw.rectangle((MARGIN, top, size - MARGIN, size - MARGIN), fill="#FFFFFF", outline=INK, width=2)
    for i, row in enumerate(rows):
        draw.text((2 * MARGIN, top + 8 + i * step), row, fill=INK, font=face)
