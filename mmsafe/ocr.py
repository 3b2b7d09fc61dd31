"""Read the text in an image. rapidocr (ONNX models inside the wheel, no download) by default; tesserocr when
installed and asked for (about 6x faster on clean typography)."""

from __future__ import annotations

import hashlib
import logging
import threading

import numpy as np
from PIL import Image

BACKENDS = ("rapidocr", "tesseract")
# Text read per (backend, pixels), shared by every OCR of the process: a scan sends the same attack image once per
# defense and per reader target, and ``ocr-filter`` reads what the reader behind it reads again.
_READ: dict[tuple[str, float, bytes], str] = {}
_READ_LOCK = threading.Lock()
READ_CACHE_SIZE = 4096


def clear_cache() -> None:
    """Forget every text read (a benchmark timing the reading itself)."""
    with _READ_LOCK:
        _READ.clear()


class OCR:
    """Callable ``OCR()(image) -> text``: lines in reading order, joined by newlines; '' when there is no text."""

    def __init__(self, backend: str = "rapidocr", min_score: float = 0.5) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown OCR backend {backend!r}; known: {', '.join(BACKENDS)}")
        self.backend = backend
        self.min_score = min_score
        self._engine = None
        self._lock = threading.Lock()  # neither engine is documented as thread-safe

    def _load(self):
        if self.backend == "rapidocr":
            from rapidocr import RapidOCR

            engine = RapidOCR()
            # rapidocr logs every model path at INFO and warns on every image without text.
            logging.getLogger("RapidOCR").setLevel(logging.ERROR)
            return engine
        try:
            import tesserocr
        except ImportError as e:
            raise ImportError(
                "the tesseract OCR backend needs `pip install tesserocr` and `apt-get install tesseract-ocr-eng`"
            ) from e
        import glob

        found = sorted(glob.glob("/usr/share/tesseract-ocr/*/tessdata/eng.traineddata"))
        path = found[-1].rsplit("/", 1)[0] + "/" if found else None
        return tesserocr.PyTessBaseAPI(path=path, lang="eng") if path else tesserocr.PyTessBaseAPI(lang="eng")

    def __call__(self, image: Image.Image) -> str:
        rgb = image.convert("RGB")
        key = (self.backend, self.min_score, hashlib.sha256(f"{rgb.size}".encode() + rgb.tobytes()).digest())
        with _READ_LOCK:
            text = _READ.get(key)
        if text is None:
            text = self._read(rgb)
            with _READ_LOCK:
                if len(_READ) >= READ_CACHE_SIZE:
                    del _READ[next(iter(_READ))]  # the oldest
                _READ[key] = text
        return text

    def _read(self, rgb: Image.Image) -> str:
        with self._lock:
            if self._engine is None:
                self._engine = self._load()
            if self.backend == "rapidocr":
                result = self._engine(np.asarray(rgb))
                txts, scores = result.txts or (), result.scores or ()
                return "\n".join(t for t, s in zip(txts, scores) if s >= self.min_score).strip()
            self._engine.SetImage(rgb)
            return "\n".join(line for line in self._engine.GetUTF8Text().splitlines() if line.strip())
