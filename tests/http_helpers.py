"""Shared by the HTTP tests: a cheap deterministic target to serve (a real ``Target``, so the real server, batcher
and client run around it) and a context manager serving a target on a free 127.0.0.1 port."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import time
from collections.abc import Iterator

from PIL import Image

from mmsafe.images import load_image
from mmsafe.serve.app import create_app
from mmsafe.serve.faults import Faults
from mmsafe.serve.server import BackgroundServer
from mmsafe.targets import Target
from mmsafe.types import Response, Sample


class Echo(Target):
    """Answers from what it was sent (prompt, system prompt, each image's size and hash): deterministic, so a run
    with faults can be compared with a fault-free one. ``delay_s`` per generate call lets requests overlap."""

    def __init__(self, batch_size: int = 8, delay_s: float = 0.02, text: str | None = None) -> None:
        self.batch_size, self.delay_s, self.text = batch_size, delay_s, text

    def generate(self, samples: list[Sample]) -> list[Response]:
        time.sleep(self.delay_s)
        return [self._answer(s) for s in samples]

    def _answer(self, s: Sample) -> Response:
        if self.text is not None:
            return Response(text=self.text)
        images = [f"{'x'.join(map(str, load_image(im).size))}:{hashlib.sha256(im.read_bytes()).hexdigest()[:8]}"
                  for im in s.images]
        text = f"echo: {s.prompt} | images: {', '.join(images) or 'none'} | system: {s.system}"
        return Response(text=text, prompt_tokens=len(s.prompt.split()), completion_tokens=len(text.split()))


@contextlib.contextmanager
def served(target: Target, name: str = "echo", **kwargs) -> Iterator[tuple[str, object]]:
    """``(base URL up to /v1, app)`` of ``target`` served on a free port; ``kwargs`` go to ``create_app``."""
    kwargs.setdefault("faults", Faults())
    app = create_app(target, name, **kwargs)
    with BackgroundServer(app) as server:
        yield f"{server.url}/v1", app


def png_url(image: Image.Image) -> str:
    """``image`` as a base64 PNG data URL."""
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def user_messages(text: str, *image_urls: str) -> list[dict]:
    """One user message: the images, then the text (plain text content when there is no image)."""
    parts = [{"type": "image_url", "image_url": {"url": u}} for u in image_urls]
    return [{"role": "user", "content": [*parts, {"type": "text", "text": text}] if parts else text}]
