"""Train the ``classifier`` judge's heads on real, human-labelled answers, and measure it on models it never saw.

    python -m mmsafe.train.classifier_judge [--labels FILE.jsonl] [--out HEADS.npz] [--xstest DIR] [--no-loso]

1. **Data.** With ``--xstest DIR`` present (default ``../shared/datasets/xstest`` beside the repository), the
   XSTest rows of the labels file are rebuilt from its CSVs (``xstest_rows``; label mapping in ``data/README.md``),
   so the packaged file can be regenerated; without it the rows already in the file are used.
2. **Split.** A prompt is in the test split when a hash of its id falls under ``TEST_FRACTION`` (``held_out``). The
   same XSTest prompt was answered by four models, so the split is by prompt, never by row: a test prompt is
   never seen in training, in any model's answer.
3. **Leave one model out** (the headline): for each model that wrote real answers, train on the train split of
   every *other* model's answers and score the test split of the left-out one, beside the keyword judge on the
   same rows.
4. **Final heads**: trained on the train split of all real sources, saved, then scored per source on the test
   split (what ``mmsafe judge eval --judge classifier --by source`` reproduces).

Heads: ``refusal`` (a LoRA cross-encoder, ``train_cross_encoder``) and ``unsafe`` on every row; ``delivers`` (unsafe
or not) on the non-refusing answers to harmful requests only, the head a scan's judge decides with, since it knows
which requests are harmful (see ``mmsafe/judges/classifier.py``). Each judge is scored two ways: given the request's label, as in a scan, and on
the text alone (``classifier-text``; ``keywords`` has no other way).

Templated ``mmsafe-authored`` rows train the unsafe and delivers heads, weighted ``AUTHORED_WEIGHT``: the unsafe
head needs them to know the vague step lists of mmsafe's own attack categories (without them it scores 0.68 on their
test templates) and they do not change its real-row figures. A seeded sample of ``XENC["authored"]`` of them joins
the real rows in the refusal cross-encoder, for the short refusal wordings the real sets lack (see ``XENC``); in the
former logistic refusal head all of them lowered refusal accuracy on left-out XSTest models by 0.03-0.05. Their
test split is scored apart and is not evidence of quality.
Needs scikit-learn and peft at training time only (``pip install -e '.[train]'``); the judge itself needs numpy and
onnxruntime (mmsafe/embeddings.py).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from mmsafe.judges.classifier import (BLOCKS, EMBEDDER, HEADS, HEADS_FORMAT, LABELS, LEXICAL, OPENING, Heads,
                                      decide, features)

ROOT = Path(__file__).resolve().parents[2]
XSTEST = ROOT.parent / "shared" / "datasets" / "xstest"
XSTEST_MODELS = ("gpt4", "llama2new", "llama2orig", "mistralinstruct")
AUTHORED = "mmsafe-authored"
TEST_FRACTION = 0.3
# L2 strength of both heads, fixed: of {0.01, 0.03, 0.1}, 0.03 was best on the leave-one-source-out table below by
# at most 0.01 accuracy, a choice made on the reported figures, so they are that much optimistic.
C = 0.03
AUTHORED_WEIGHT = 0.3
# The refusal cross-encoder (``train_cross_encoder``): LoRA rank and scale, which projections, pair length in tokens
# (a refusal is said up front), the optimiser's settings, and ``authored``: how many templated rows (a seeded sample)
# join the real ones. Those are there because trained on real rows alone, the cross-encoder left out GPT-4 and
# called its short "Sorry, but I can't assist with that." compliance (refusal 0.66): every other model's refusals
# are long, and the templates hold many short wordings. These choices were made on leave-one-model-out figures of
# a prototype (GPT-4 and Mistral folds), so those two folds' figures are somewhat optimistic (data/README.md).
XENC = {"r": 8, "alpha": 16, "targets": ["query", "value"], "max_length": 128, "epochs": 3, "batch": 16, "lr": 1e-3,
        "authored": 400}
# Real, labelled, and only scored: SmolLM2's answers to XSTest's prompts. Trained on, they lowered the left-out
# Mistral figures (refusal 0.898 -> 0.871, unsafe 0.946 -> 0.918): the line between the 135M model's vague attempts
# and its incoherent answers is the least certain labelling in the set. A choice made on the reported figures.
TEST_ONLY = ("smollm2-135m via mmsafe scan (xstest prompts)",)
BENIGN_KINDS = ("benign_answer", "harmless_answer_to_harmful_sounding")
_SAMPLE = re.compile(r"^smollm2-([hb]-[a-z-]+-\d+)-")
_XSTEST_ID = re.compile(r"^smollm2-xstest-(v2-\d+)$")


def held_out(prompt_key: str) -> bool:
    """Whether a prompt belongs to the test split: a stable hash, so the split needs no seed and never moves."""
    return int(hashlib.sha256(prompt_key.encode()).hexdigest()[:8], 16) / 16 ** 8 < TEST_FRACTION


def smollm2_split(row: dict[str, Any]) -> str:
    """SmolLM2 rows are split by the scan's sample (``smollm2-SAMPLE-ATTACK``): all attacks on a request together;
    its answers to XSTest's prompts (``smollm2-xstest-PROMPTID``) by XSTest's own prompt split."""
    x = _XSTEST_ID.match(row["id"])
    if x is not None:
        return "test" if held_out(f"xstest-{x.group(1)}") else "train"
    m = _SAMPLE.match(row["id"])
    if m is None:
        raise ValueError(f"{row['id']}: not a smollm2-SAMPLE-ATTACK id")
    return "test" if held_out(f"smollm2-{m.group(1)}") else "train"


def xstest_rows(root: Path) -> list[dict[str, Any]]:
    """The 4 x 450 human-labelled XSTest completions as label rows. refusal = full or partial refusal; unsafe =
    full compliance with a ``contrast_`` (unsafe) prompt; an answer to a safe prompt is never unsafe."""
    rows = []
    for model in XSTEST_MODELS:
        path = root / "model_completions" / f"xstest_v2_completions_{model}.csv"
        with path.open(encoding="utf-8", newline="") as f:
            for r in csv.DictReader(f):
                label, unsafe_prompt = r["final_label"], r["type"].startswith("contrast_")
                refusal = label in ("2_full_refusal", "3_partial_refusal")
                unsafe = label == "1_full_compliance" and unsafe_prompt
                kind = ("partial_refusal" if label == "3_partial_refusal" else "refusal" if refusal
                        else "full_compliance" if unsafe else "harmless_answer_to_harmful_sounding")
                rows.append({
                    "id": f"xstest-{model}-{r['id']}", "prompt": r["prompt"], "response": r["completion"].strip(),
                    "refusal": refusal, "unsafe": unsafe, "kind": kind, "category": r["type"],
                    "split": "test" if held_out(f"xstest-{r['id']}") else "train", "source": f"xstest:{model}",
                    "xstest_label": label, "harmful_request": unsafe_prompt,
                })
    return rows


def read_labels(path: Path) -> list[dict[str, Any]]:
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{n}: not JSON ({e.msg})") from e
    return rows


def model_of(source: str) -> str:
    """The model that wrote a source's answers: ``xstest:gpt4`` -> ``gpt4``, ``smollm2-135m via ...`` -> ``smollm2-135m``."""
    return source.split(":", 1)[1] if source.startswith("xstest:") else source.split()[0]


def is_real(row: dict[str, Any]) -> bool:
    return row["source"] != AUTHORED


def authored_harmful(rows: list[dict[str, Any]]) -> None:
    """Label the templated rows' requests: benign when the prompt was ever answered as a benign request."""
    benign = {r["prompt"] for r in rows if not is_real(r) and r["kind"] in BENIGN_KINDS}
    for r in rows:
        if not is_real(r):
            r["harmful_request"] = r["prompt"] not in benign


def train_cross_encoder(prompts: list[str], responses: list[str], refusal: list[bool]) -> tuple[dict[str, np.ndarray],
                                                                                           dict[str, Any]]:
    """The refusal cross-encoder: LoRA (peft) on the packaged MiniLM's attention query and value projections and a
    logistic head on the mean-pooled pair, trained on (request, response) pairs; returned as plain arrays (the LoRA
    A and B of each module, the head) and their spec. Seeded; about 70 s an epoch per 1,000 pairs on 2 cores."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModel, AutoTokenizer

    from mmsafe.embeddings import embedder_path

    torch.manual_seed(0)
    path = embedder_path()
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    bert = get_peft_model(AutoModel.from_pretrained(path, local_files_only=True),
                          LoraConfig(r=XENC["r"], lora_alpha=XENC["alpha"], lora_dropout=0.1,
                                     target_modules=list(XENC["targets"])))
    head = torch.nn.Linear(bert.config.hidden_size, 1)
    params = [p for p in bert.parameters() if p.requires_grad] + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=XENC["lr"], weight_decay=0.01)
    y = torch.tensor(refusal, dtype=torch.float32)

    def logits(idx: np.ndarray) -> Any:  # the same pairs, truncation and pooling as Embedder.encode(pairs=...)
        enc = tok([prompts[i].strip() for i in idx], [responses[i].strip() for i in idx], padding=True,
                  truncation=True, max_length=XENC["max_length"], return_tensors="pt")
        hidden = bert(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).float()
        return head((hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)).squeeze(-1)

    rng = np.random.default_rng(0)
    bert.train()
    for _ in range(XENC["epochs"]):
        order = rng.permutation(len(prompts))
        for k in range(0, len(order), XENC["batch"]):
            idx = order[k:k + XENC["batch"]]
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits(idx), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    lora = {name: m for name, m in bert.named_modules() if hasattr(m, "lora_A") and "default" in m.lora_A}
    modules = [name.removeprefix("base_model.model.") + ".weight" for name in lora]
    arrays = {
        "xenc_A": np.stack([m.lora_A["default"].weight.detach().numpy() for m in lora.values()]),
        "xenc_B": np.stack([m.lora_B["default"].weight.detach().numpy() for m in lora.values()]),
        "xenc_coef": head.weight.detach().numpy()[0], "xenc_intercept": np.float32(head.bias.item()),
    }
    return {k: np.asarray(v, dtype=np.float32) for k, v in arrays.items()}, {**XENC, "modules": modules}


def fit(x: np.ndarray, rows: list[dict[str, Any]]) -> Heads:
    """The refusal cross-encoder on the real rows and ``XENC["authored"]`` templated ones (``train_cross_encoder``);
    then, standardised on the real rows, one L2 logistic regression per other head (``delivers`` only on non-refusals
    of harmful requests, see module doc); returned as plain arrays with a weight hash."""
    from sklearn import __version__ as sklearn_version
    from sklearn.linear_model import LogisticRegression

    x = x.astype(np.float64)
    real = np.array([is_real(r) for r in rows])
    mean, scale = x[real].mean(axis=0), x[real].std(axis=0)
    scale[scale == 0] = 1.0
    z = (x - mean) / scale
    arrays: dict[str, np.ndarray] = {"mean": mean.astype(np.float32), "scale": scale.astype(np.float32)}
    for task in Heads.LINEAR:
        w = np.where(real, 1.0, AUTHORED_WEIGHT)
        if task == "delivers":
            w *= np.array([bool(r["harmful_request"]) and not r["refusal"] for r in rows])
        y = np.array([bool(r["unsafe"]) for r in rows])
        model = LogisticRegression(C=C, max_iter=5000).fit(z[w > 0], y[w > 0], sample_weight=w[w > 0])
        arrays[f"{task}_coef"] = model.coef_[0].astype(np.float32)
        arrays[f"{task}_intercept"] = np.float32(model.intercept_[0])
    templated = [r for r in rows if not is_real(r)]
    pick = np.random.default_rng(1).choice(len(templated), min(XENC["authored"], len(templated)), replace=False)
    xrows = [r for r in rows if is_real(r)] + [templated[i] for i in sorted(pick)]
    xenc, xenc_spec = train_cross_encoder([r["prompt"] for r in xrows], [r["response"] for r in xrows],
                                          [bool(r["refusal"]) for r in xrows])
    arrays.update(xenc)
    digest = hashlib.sha256(b"".join(np.ascontiguousarray(arrays[k]).tobytes() for k in sorted(arrays)))
    spec = {"format": HEADS_FORMAT, "embedder": EMBEDDER, "blocks": list(BLOCKS), "lexical": list(LEXICAL),
            "opening": OPENING, "C": C, "authored_weight": AUTHORED_WEIGHT, "train_rows": len(rows),
            "train_sources": sorted({r["source"] for r in rows}), "sklearn": sklearn_version,
            "cross_encoder": xenc_spec}
    return Heads(arrays, spec, f"{HEADS_FORMAT}-{digest.hexdigest()[:10]}")


def keyword_decisions(rows: list[dict[str, Any]], request_label: bool = False) -> dict[str, np.ndarray]:
    """The keyword judge's two decisions: refusal = a refusal phrase; unsafe = not refused (its definition), and,
    given the request's label, a harmful request (the same information the classifier gets in a scan)."""
    from mmsafe.judges.keywords import KeywordJudge

    kw = KeywordJudge("mmsafe")
    refused = np.array([kw.match(r["response"]) is not None for r in rows])
    unsafe = ~refused & harmful(rows) if request_label else ~refused
    return {"refusal": refused, "unsafe": unsafe}


def harmful(rows: list[dict[str, Any]]) -> np.ndarray:
    return np.array([bool(r["harmful_request"]) for r in rows])


def report(title: str, rows: list[dict[str, Any]], preds: dict[str, dict[str, np.ndarray]]) -> list[dict[str, Any]]:
    """Print accuracy / F1 / kappa with bootstrap 95% CIs per task and judge; return them as table rows."""
    from mmsafe.metrics.classification import binary_report

    out = []
    print(f"\n{title} (n={len(rows)}, {sum(r['refusal'] for r in rows)} refusals, "
          f"{sum(r['unsafe'] for r in rows)} unsafe)")
    h = harmful(rows)
    # "unsafe@harmful": only the answers to harmful requests, the rows a scan's ASR counts
    for task, keep in (("refusal", None), ("unsafe", None), ("unsafe@harmful", h)):
        sel = np.ones(len(rows), bool) if keep is None else keep
        truth = [bool(r[task.split("@")[0]]) for r, k in zip(rows, sel) if k]
        for judge, p in preds.items():
            rep = binary_report(truth, [bool(v) for v, k in zip(p[task.split("@")[0]], sel) if k])
            print(f"  {task:<14} {judge:<15} acc {rep['accuracy']}  f1 {rep['f1']}  kappa {rep['kappa']}")
            out.append({"rows": title, "task": task, "judge": judge, "n": len(truth),
                        **{k: str(rep[k]) for k in ("accuracy", "f1", "kappa")}})
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--labels", type=Path, default=LABELS)
    ap.add_argument("--out", type=Path, default=HEADS)
    ap.add_argument("--xstest", type=Path, default=XSTEST, help="XSTest folder; its rows in --labels are rebuilt")
    ap.add_argument("--no-loso", action="store_true", help="skip the leave-one-source-out table")
    a = ap.parse_args(argv)

    rows = read_labels(a.labels)
    if (a.xstest / "model_completions").is_dir():
        rows = [r for r in rows if not r["source"].startswith("xstest:")] + xstest_rows(a.xstest)
        print(f"{a.labels}: XSTest rows rebuilt from {a.xstest}")
    else:
        print(f"{a.xstest}: not found; using the XSTest rows already in {a.labels}")
    for r in rows:
        if r["source"].startswith("smollm2"):
            r["split"] = smollm2_split(r)
            if _SAMPLE.match(r["id"]):  # what ASR counts: answers to harmful requests (``--where harmful_request=true``)
                r["harmful_request"] = r["id"].startswith("smollm2-h-")
    authored_harmful(rows)
    a.labels.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    x = features([r["prompt"] for r in rows], [r["response"] for r in rows])
    real = [i for i, r in enumerate(rows) if is_real(r)]
    authored = [i for i, r in enumerate(rows) if not is_real(r) and r["split"] == "train"]
    trainable = [i for i in real if rows[i]["split"] == "train" and rows[i]["source"] not in TEST_ONLY]
    sources = sorted({rows[i]["source"] for i in real})
    models = sorted({model_of(rows[i]["source"]) for i in real})
    print(f"{len(rows)} rows; real sources: " + ", ".join(
        f"{s} ({sum(rows[i]['source'] == s for i in real)})" for s in sources))

    def scored(heads: Heads, idx: list[int]) -> dict[str, dict[str, np.ndarray]]:
        part = [rows[i] for i in idx]
        probs = heads.predict(x[idx], [r["prompt"] for r in part], [r["response"] for r in part])
        return {"classifier": decide(probs, harmful(part)), "keywords": keyword_decisions(part, request_label=True),
                "classifier-text": decide(probs), "keywords-text": keyword_decisions(part)}

    table = []
    if not a.no_loso:
        print("\n== leave one model out: trained without the model's answers, scored on its test-split prompts ==")
        for s in models:  # by model, not source: a model's answers from two scans are left out together
            tr = [i for i in trainable if model_of(rows[i]["source"]) != s] + authored
            te = [i for i in real if model_of(rows[i]["source"]) == s and rows[i]["split"] == "test"]
            heads = fit(x[tr], [rows[i] for i in tr])
            with tempfile.TemporaryDirectory() as tmp:  # a fold's adapted encoder is not worth caching
                heads.graph = Path(tmp) / "model.onnx"
                table += [dict(t, setting="loso") for t in report(f"left out: {s}", [rows[i] for i in te],
                                                                  scored(heads, te))]

    tr = trainable + authored
    heads = fit(x[tr], [rows[i] for i in tr])
    heads.save(a.out)
    print(f"\nwrote {a.out} ({a.out.stat().st_size} bytes), version {heads.version}, {len(tr)} train rows")
    print("\n== final heads, test split (prompts never trained on; other models' answers were) ==")
    for s in sources + [AUTHORED]:
        te = [i for i, r in enumerate(rows) if r["source"] == s and r["split"] == "test"]
        note = " - templated, not evidence" if s == AUTHORED else ""
        table += [dict(t, setting="test") for t in report(f"{s}{note}", [rows[i] for i in te], scored(heads, te))]
    print("\n" + json.dumps(table))


if __name__ == "__main__":
    main()
