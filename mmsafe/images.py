"""Decode images defensively: a bad file must fail one row with a clear message, never the whole run."""

from __future__ import annotations

import io

from PIL import Image, UnidentifiedImageError

from mmsafe.types import ImageRef

# Above this the decode alone can take gigabytes; FigStep's images are 0.6 MP, LLaVA-NeXT tiles stay under 5 MP.
MAX_PIXELS = 40_000_000
MAX_BYTES = 50 * 1024 * 1024
# The files taken as images when a folder is read (dataset folders, attack picture sources): formats PIL decodes.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp")


class ImageError(ValueError):
    """An image that cannot be used; the message names the file and the reason."""


def load_image(ref: ImageRef, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decode ``ref`` to an RGB PIL image, or raise ``ImageError`` naming the file."""
    where = ref.describe()
    try:
        data = ref.read_bytes()
    except OSError as e:
        raise ImageError(f"{where}: cannot read image: {e.strerror or e}") from e
    if len(data) > MAX_BYTES:
        raise ImageError(f"{where}: image file is {len(data) / 2**20:.0f} MiB, over the {MAX_BYTES // 2**20} MiB limit")
    try:
        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size
            if w * h > max_pixels:
                raise ImageError(f"{where}: image is {w}x{h} = {w * h / 1e6:.0f} MP, over the {max_pixels / 1e6:.0f} MP limit")
            im.load()
            return im.convert("RGB")
    except ImageError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ImageError(f"{where}: not a readable image ({type(e).__name__}: {e})") from e
