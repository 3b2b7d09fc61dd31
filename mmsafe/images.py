"""Decode images defensively: a bad file must fail one row with a clear message, never the whole run."""

from __future__ import annotations

import io
from collections.abc import Iterable

from PIL import Image, UnidentifiedImageError

from mmsafe.types import ImageRef

# Above this the decode alone can take gigabytes; FigStep's images are 0.6 MP, LLaVA-NeXT tiles stay under 5 MP.
MAX_PIXELS = 40_000_000
MAX_BYTES = 50 * 1024 * 1024
# The files taken as images when a folder is read (dataset folders, attack picture sources): formats PIL decodes.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp")


class ImageError(ValueError):
    """An image that cannot be used; the message names the file and the reason."""


def _open(ref: ImageRef, max_pixels: int, decode: bool) -> Image.Image | None:
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
            if not decode:
                im.verify()  # checks the file's structure and checksums without decoding the pixels
                return None
            im.load()
            return im.convert("RGB")
    except ImageError:
        raise
    except UnidentifiedImageError as e:  # its own message is a repr of our in-memory buffer
        raise ImageError(f"{where}: not a readable image (unknown format or corrupt header)") from e
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ImageError(f"{where}: not a readable image ({type(e).__name__}: {e})") from e


def load_image(ref: ImageRef, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decode ``ref`` to an RGB PIL image, or raise ``ImageError`` naming the file."""
    im = _open(ref, max_pixels, decode=True)
    assert im is not None
    return im


def check_image(ref: ImageRef, max_pixels: int = MAX_PIXELS) -> None:
    """Raise the ``ImageError`` that ``load_image`` would for an unreadable, corrupt or oversize file, cheaply: the
    header and the file's structure are checked, the pixels are not decoded (a truncated JPEG body can still pass)."""
    _open(ref, max_pixels, decode=False)


def check_images(refs: Iterable[ImageRef]) -> tuple[int, int, list[str]]:
    """``(readable, missing, problems)`` over the distinct ``refs``: a missing file is counted (its loader already
    reported it), an unreadable, corrupt or oversize one is a problem message naming the file."""
    readable = missing = 0
    problems = []
    for ref in dict.fromkeys(refs):
        if ref.path is not None and not ref.path.is_file():
            missing += 1
            continue
        try:
            check_image(ref)
            readable += 1
        except ImageError as e:
            problems.append(str(e))
    return readable, missing, problems
