#!/usr/bin/env bash
# MLLM-Refusal's countermeasures on tiny-llava: the universal refusal image (10 shadow questions, 16/255, 100 steps)
# scanned on the 40 held-out questions without a defense, behind input purifiers and on an adversarially
# fine-tuned model; each non-adaptively (the image crafted on the undefended model) and adaptively (crafted through
# the purifier with BPDA + EOT, or on the fine-tuned model itself). Steps whose output exists are skipped, so a
# stopped run resumes. bash examples/tiny-llava/countermeasures.sh [OUT]  (about 90 min on 2 CPU cores)
set -euo pipefail
cd "$(dirname "$0")"
OUT=${1:-runs}
CRAFT=(-a refusal --prompts shadow.txt -d jsonl:heldout.jsonl --eps 16 --steps 100 --batch 8)
SCAN=(--max-new-tokens 40 --batch-size 8 -a none -j keywords)
ADVFT="$(realpath -m "$OUT")/tiny-llava-advft"

craft() {  # name, then `mmsafe attack` options
  local name=$1
  shift
  [[ -f "$OUT/$name/adversarial.jsonl" ]] || mmsafe attack "${CRAFT[@]}" -o "$OUT/$name" "$@"
}
scan() {  # name, target, dataset, defenses
  [[ -f "$OUT/$1/results.sqlite" ]] || mmsafe scan "${SCAN[@]}" -t "$2" -d "jsonl:$3" --defense "$4" -o "$OUT/$1" >/dev/null
}

craft refusal16 -t tiny-llava
craft refusal16-through-noise -t tiny-llava --through gaussian-noise
craft refusal16-through-purify -t tiny-llava --through tv-purify
[[ -d "$ADVFT" ]] || python -m mmsafe.train.adversarial_finetune --out "$ADVFT" --attack refusal
craft refusal16-against-advft -t "hf:$ADVFT"

scan cm-clean tiny-llava "$OUT/refusal16/clean.jsonl" none,gaussian-noise,jpeg,tv-purify
scan cm-adversarial tiny-llava "$OUT/refusal16/adversarial.jsonl" none,gaussian-noise,jpeg,tv-purify
scan cm-adaptive tiny-llava "$OUT/refusal16-through-noise/adversarial.jsonl" none,gaussian-noise
scan cm-adaptive-purify tiny-llava "$OUT/refusal16-through-purify/adversarial.jsonl" none,tv-purify
scan cm-advft-clean "hf:$ADVFT" "$OUT/refusal16/clean.jsonl" none
scan cm-advft-adversarial "hf:$ADVFT" "$OUT/refusal16/adversarial.jsonl" none
scan cm-advft-adaptive "hf:$ADVFT" "$OUT/refusal16-against-advft/adversarial.jsonl" none
for r in cm-clean cm-adversarial cm-adaptive cm-adaptive-purify cm-advft-clean cm-advft-adversarial cm-advft-adaptive; do
  mmsafe report "$OUT/$r" --no-by-category
done
