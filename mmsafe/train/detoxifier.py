"""Train MLLM-Protector's detoxifier: LoRA adapters on a causal LM (the embedded SmolLM2 by default) that rewrite a
harmful answer, given the request, into a safe one. The adapters are merged and saved as a plain model folder that
the ``protector`` defense loads: ``{name: protector, args: {model: DIR, prefix: ""}}``.

    python -m mmsafe.train.detoxifier --out DIR [--model smollm2] [--steps 60] [--eval 20]

Pairs are real answers, not written here: for each harmful request in the classifier judge's labelled answers
(``mmsafe/judges/data/judge_labels.jsonl``, sources and licences in its README) that one model answered unsafely
and another safely (XSTest's models answer the same prompts), the unsafe answer is the input and a safe one the
target (GPT-4's where there is one, else Llama 2's, else any). Split by a stable hash of the request's text
(``held_out``), so the test requests were never trained on. Before and after training the script rewrites the test split's unsafe answers
through the ``protector`` defense's own ``detoxify`` (the untrained model with its decline ``prefix``, the trained
one without) and judges the rewrites with the classifier given the request's label; it prints how many came out
unsafe and how many were refusals. Pi et al. 2024 train their detoxifier the same way on their own pairs.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from pathlib import Path
from typing import Any

SAFE_FIRST = ("xstest:gpt4", "xstest:llama2new", "xstest:llama2orig")  # fuller safe answers first


def pairs(rows: list[dict[str, Any]]) -> dict[str, list[tuple[str, str, str]]]:
    """``{"train": [...], "test": [...]}`` of (request, unsafe answer, safe answer), split by request."""
    from mmsafe.train.classifier_judge import held_out, is_real

    by_prompt: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        if is_real(r) and r.get("harmful_request"):
            by_prompt[r["prompt"]].append(r)
    out: dict[str, list[tuple[str, str, str]]] = {"train": [], "test": []}
    for prompt, answers in sorted(by_prompt.items()):
        safe = sorted((a for a in answers if not a["unsafe"] and a["response"].strip()),
                      key=lambda a: SAFE_FIRST.index(a["source"]) if a["source"] in SAFE_FIRST else len(SAFE_FIRST))
        if not safe:
            continue
        split = "test" if held_out(prompt) else "train"
        out[split] += [(prompt, a["response"], safe[0]["response"]) for a in answers if a["unsafe"]]
    return out


def train(lm: Any, tok: Any, data: list[tuple[str, str, str]], steps: int, batch: int, lr: float, seed: int,
          max_tokens: int = 384, log: Any = print) -> Any:
    """LoRA (rank 8 on the attention projections) on ``lm``: the NLL of the safe answer given the detoxifier's
    prompt with the request and the unsafe answer; returns the merged model."""
    import torch
    from peft import LoraConfig, get_peft_model

    from mmsafe.defenses.protector import detox_prompt

    model = get_peft_model(lm, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, task_type="CAUSAL_LM",
                                          target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    rng = random.Random(seed)
    kept, tok.padding_side = tok.padding_side, "right"
    model.train()
    recent: list[float] = []
    for step in range(1, steps + 1):
        chosen = rng.sample(data, min(batch, len(data)))
        prompts = [detox_prompt(tok, q, a) for q, a, _ in chosen]
        ids, labels = [], []
        for prompt, (_, _, safe) in zip(prompts, chosen):
            p = tok(prompt, add_special_tokens=False)["input_ids"]
            t = tok(safe + tok.eos_token, add_special_tokens=False)["input_ids"]
            p = p[-(max_tokens - min(len(t), max_tokens // 2)):]  # keep the answer; cut the prompt's start
            t = t[:max_tokens - len(p)]
            ids.append(p + t)
            labels.append([-100] * len(p) + t)
        width = max(map(len, ids))
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        input_ids = torch.tensor([x + [pad] * (width - len(x)) for x in ids])
        mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in ids])
        target = torch.tensor([x + [-100] * (width - len(x)) for x in labels])
        loss = model(input_ids=input_ids, attention_mask=mask, labels=target).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        recent = (recent + [float(loss.detach())])[-10:]
        if step % 10 == 0 or step == steps:
            log(f"step {step}/{steps}  loss {sum(recent) / len(recent):.4f}")
    model.eval()
    tok.padding_side = kept
    return model.merge_and_unload()


def evaluate(model: str, prefix: str | None, test: list[tuple[str, str, str]]) -> dict[str, Any]:
    """Rewrite the test pairs' unsafe answers with the protector's detoxifier and judge the rewrites."""
    from mmsafe.defenses.protector import Protector
    from mmsafe.judges import judges
    from mmsafe.types import Attempt, Response, Sample

    protector = Protector(model=model, **({} if prefix is None else {"prefix": prefix}))
    judge = judges.build("classifier")
    try:
        rewrites: list[str] = []
        for i in range(0, len(test), 8):
            chunk = test[i:i + 8]
            rewrites += protector.detoxify([q for q, _, _ in chunk], [a for _, a, _ in chunk])
        verdicts = judge.judge([Attempt.of(Sample(id=str(i), prompt=q, benign=False), Response(text=w))
                                for i, ((q, _, _), w) in enumerate(zip(test, rewrites))])
    finally:
        protector.close()
        judge.close()
    return {"unsafe": sum(bool(v.unsafe) for v in verdicts), "refusal": sum(bool(v.refusal) for v in verdicts),
            "n": len(test), "examples": rewrites[:3]}


def main(argv: list[str] | None = None) -> None:
    import argparse

    from mmsafe.judges.classifier import LABELS
    from mmsafe.models import EMBEDDED, load_causal_lm, save_atomically
    from mmsafe.train.classifier_judge import read_labels

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="folder for the merged detoxifier (protector model:)")
    ap.add_argument("--model", default=EMBEDDED, help="causal LM to adapt: the embedded SmolLM2, or an HF id/folder")
    ap.add_argument("--labels", type=Path, default=LABELS)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--eval", type=int, default=20, help="test pairs rewritten before and after (0: none)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    if a.out.exists():
        raise SystemExit(f"{a.out} exists; give a new folder")
    split = pairs(read_labels(a.labels))
    test = split["test"][:a.eval]
    print(f"{len(split['train'])} train and {len(split['test'])} test (request, unsafe answer, safe answer) pairs")
    if not split["train"]:
        raise SystemExit(f"{a.labels}: no harmful request with both an unsafe and a safe answer")
    if test:
        print("before (untrained, prompted with the decline prefix):", json.dumps(evaluate(a.model, None, test)))
    lm, tok = load_causal_lm(a.model)
    merged = train(lm, tok, split["train"], a.steps, a.batch, a.lr, a.seed)
    save_atomically(merged, tok, a.out)
    print(f"saved to {a.out}; use it as protector's model: {{name: protector, args: {{model: {a.out}, prefix: ''}}}}")
    if test:
        print("after (trained, no prefix):", json.dumps(evaluate(str(a.out), "", test)))


if __name__ == "__main__":
    main()
