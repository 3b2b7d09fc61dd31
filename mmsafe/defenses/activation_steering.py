"""Model-side defense: activation steering in the manner of InferAligner (Wang et al. 2024, "InferAligner:
Inference-Time Alignment for Harmlessness through Cross-Model Guidance", EMNLP 2024).

InferAligner takes safety steering vectors (mean activation of harmful minus harmless prompts) and, at inference,
adds them to the residual stream only when a guidance gate, the projection of the input's last-token activation on
the safety direction, says the input is harmful, so harmless requests run untouched. The paper takes the vectors
from a separately aligned model; here they come from the target itself (it has no aligned twin offline), computed
once on a calibration dataset's harmful and benign requests (default the built-in ``mini`` suite, 52 + 52), so
evaluate it on other prompts (XSTest's, below in the README). The gate layer is the one whose projection separates
the calibration prompts best; its threshold the midpoint of the two classes' mean projections.

White-box Hugging Face targets only (``hf:``, ``tiny-llava``): the hooks sit on the language model's decoder
layers, and only while the defended target generates (``during_generation``), since a scan shares one loaded model
between its defended and undefended rows.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from mmsafe.defenses.base import Decision, Defense, defenses
from mmsafe.types import Sample


def decoder_layers(model: Any) -> Any:
    """The language model's decoder layers (a ModuleList) of a transformers VLM or LM."""
    for path in ("model.language_model.layers", "language_model.model.layers", "model.layers",
                 "model.text_model.layers", "language_model.layers"):
        obj = model
        for name in path.split("."):
            obj = getattr(obj, name, None)
            if obj is None:
                break
        if obj is not None and hasattr(obj, "__len__") and len(obj) > 0:
            return obj
    raise ValueError(f"{type(model).__name__}: no decoder layers found for activation steering")


@defenses.register("activation-steering")
class ActivationSteering(Defense):
    """Model-side (white-box HF targets): InferAligner-style steering, a safety direction added to the middle layers'
    activations when a gate on the input's own activations says it is harmful."""

    stages = ("input",)

    def __init__(self, alpha: float = 4.0, layers: str | None = None, calibration: str = "mini",
                 batch_size: int = 16) -> None:
        """``alpha``: multiple of the mean harmful-minus-benign activation difference added at each steered layer.
        ``layers``: ``"FIRST-LAST"`` (0-based, inclusive) to steer; default the middle third. ``calibration``: the
        dataset spec whose harmful and benign requests give the directions (text only)."""
        if alpha <= 0:
            raise ValueError(f"alpha must be > 0, got {alpha}")
        self.alpha = alpha
        self.layers_spec = layers
        self.calibration = calibration
        self.batch_size = batch_size
        self.directions: Any = None  # (L, H) harmful-minus-benign means, one per decoder layer
        self.gate_layer = -1
        self.threshold = 0.0
        self.gate_unit: Any = None  # the gate layer's direction, unit length
        self.steered: list[int] = []
        self.calibration_accuracy = 0.0
        self.last_gates: list[bool] = []  # the gate's rows in the last prefill pass

    def bind(self, target: Any) -> None:
        if not all(hasattr(target, a) for a in ("model", "encode", "prompt_text", "model_inputs")):
            raise ValueError(f"activation-steering needs a white-box Hugging Face target (hf:..., tiny-llava), "
                             f"got {type(target).__name__}")
        super().bind(target)

    # ---- calibration --------------------------------------------------------------------------------------------

    def last_token_states(self, samples: list[Sample]) -> Any:
        """(N, L, H) last-prompt-token output of every decoder layer for each sample, its image included (left
        padding: position -1); text-only and image samples run as separate batches, as the target generates."""
        import torch

        from mmsafe.images import load_image

        t = self.target
        model = t.model
        out: list[Any] = [None] * len(samples)
        for has_image in (False, True):
            idx = [i for i, s in enumerate(samples) if bool(s.images) == has_image]
            for k in range(0, len(idx), self.batch_size):
                chunk = idx[k: k + self.batch_size]
                texts = [t.prompt_text(samples[i].prompt, has_image, samples[i].system) for i in chunk]
                pixels = (torch.stack([t.to_pixels(load_image(samples[i].images[0])) for i in chunk]).to(
                    model.device, model.dtype) if has_image else None)
                input_ids, mask, _ = t.encode(texts)
                input_ids, mask = input_ids.to(model.device), mask.to(model.device)
                with torch.inference_mode():
                    res = model(attention_mask=mask, **t.model_inputs(input_ids, pixels),
                                **t.token_inputs(input_ids, None, has_image), output_hidden_states=True,
                                use_cache=False)
                states = torch.stack([h[:, -1].float() for h in res.hidden_states[1:]], dim=1).cpu()
                for j, i in enumerate(chunk):
                    out[i] = states[j]
        return torch.stack(out)

    def projections(self, samples: list[Sample]) -> list[float]:
        """Each sample's gate value: its last-token activation at the gate layer projected on the safety direction."""
        self.load()
        return (self.last_token_states(samples)[:, self.gate_layer] @ self.gate_unit).tolist()

    def load(self) -> None:
        if self.directions is not None:
            return
        import torch

        from mmsafe.datasets import datasets

        samples = datasets.build(self.calibration).load()
        harmful = [Sample(id=s.id, prompt=s.prompt) for s in samples if not s.benign]  # text only
        benign = [Sample(id=s.id, prompt=s.prompt) for s in samples if s.benign]
        if not harmful or not benign:
            raise ValueError(f"{self.calibration}: activation-steering needs harmful and benign requests to "
                             "calibrate on")
        h, b = self.last_token_states(harmful), self.last_token_states(benign)
        self.directions = h.mean(0) - b.mean(0)  # (L, H)
        n_layers = self.directions.shape[0]
        if self.layers_spec:
            first, _, last = self.layers_spec.partition("-")
            self.steered = list(range(int(first), int(last or first) + 1))
            if not self.steered or min(self.steered) < 0 or max(self.steered) >= n_layers:
                raise ValueError(f"layers {self.layers_spec!r}: the model has layers 0-{n_layers - 1}")
        else:
            self.steered = list(range(n_layers // 3, 2 * n_layers // 3))
        # gate: the layer, at or before the first steered one, whose projection separates the classes best
        best = (-1.0, 0, 0.0)
        for layer in range(min(self.steered) + 1):
            unit = self.directions[layer] / self.directions[layer].norm()
            ph, pb = h[:, layer] @ unit, b[:, layer] @ unit
            threshold = float(ph.mean() + pb.mean()) / 2
            acc = float(torch.cat([ph > threshold, pb <= threshold]).float().mean())
            if acc > best[0]:
                best = (acc, layer, threshold)
        self.calibration_accuracy, self.gate_layer, self.threshold = best
        self.gate_unit = self.directions[self.gate_layer] / self.directions[self.gate_layer].norm()

    # ---- the defense --------------------------------------------------------------------------------------------

    def screen(self, samples: list[Sample]) -> list[Decision]:
        """The samples pass unchanged; each row records its gate value and whether generation will be steered (the
        prefill pass recomputes the same projection, so a value within float noise of the threshold may differ)."""
        out = []
        for s, p in zip(samples, self.projections(samples)):
            steer = p > self.threshold
            out.append(Decision(s, "pass", f"gate {p:.2f} {'>' if steer else '<='} {self.threshold:.2f}: "
                                + ("steered" if steer else "not steered"),
                                {"steered": steer, "projection": p, "threshold": self.threshold,
                                 "gate_layer": self.gate_layer, "steered_layers": self.steered, "alpha": self.alpha}))
        return out

    @contextlib.contextmanager
    def during_generation(self) -> Iterator[None]:
        """Hooks on the decoder layers while the defended target generates: the gate layer decides per row on the
        prompt's last token (the prefill pass), the steered layers add ``alpha`` x direction to gated rows at every
        position and step."""
        import torch

        self.load()
        layers = decoder_layers(self.target.model)
        gated: dict[str, Any] = {"rows": None}

        def hidden(output: Any) -> Any:
            return output[0] if isinstance(output, tuple) else output

        def gate(_module: Any, _args: Any, output: Any) -> None:
            h = hidden(output)
            if h.shape[1] > 1:  # prefill: decide once per generate call, on the prompt's last token
                rows = (h[:, -1].float() @ self.gate_unit.to(h.device)) > self.threshold
                gated["rows"] = rows
                self.last_gates = rows.tolist()

        def steer(layer: int) -> Any:
            vec = self.directions[layer] * self.alpha

            def hook(_module: Any, _args: Any, output: Any) -> Any:
                rows = gated["rows"]
                if rows is None or not bool(rows.any()):
                    return output
                h = hidden(output)
                add = vec.to(h.device, h.dtype)[None, None, :] * rows.to(h.dtype)[:, None, None]
                return (h + add, *output[1:]) if isinstance(output, tuple) else h + add
            return hook

        handles = [layers[self.gate_layer].register_forward_hook(gate)]
        handles += [layers[i].register_forward_hook(steer(i)) for i in self.steered]
        try:
            with torch.inference_mode():
                yield
        finally:
            for handle in handles:
                handle.remove()
