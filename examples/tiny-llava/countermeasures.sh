#!/usr/bin/env bash
# MLLM-Refusal's countermeasures on tiny-llava: the universal refusal image (10 shadow questions, 16/255, 100 steps),
# crafted plainly and adaptively through Gaussian noise (BPDA + EOT), scanned on the 40 held-out questions without a
# defense and behind input purifiers. bash examples/tiny-llava/countermeasures.sh [OUT]
set -euo pipefail
cd "$(dirname "$0")"
OUT=${1:-runs}
SCAN=(-t tiny-llava --max-new-tokens 40 --batch-size 8 -a none -j keywords)
DEFENSES=none,gaussian-noise,jpeg,tv-purify
mmsafe attack -t tiny-llava -a refusal --prompts shadow.txt -d jsonl:heldout.jsonl -o "$OUT/refusal16" --eps 16 --steps 100 --batch 8
mmsafe attack -t tiny-llava -a refusal --prompts shadow.txt -d jsonl:heldout.jsonl -o "$OUT/refusal16-through-noise" --eps 16 --steps 100 --batch 8 --through gaussian-noise
mmsafe scan "${SCAN[@]}" -d "jsonl:$OUT/refusal16/clean.jsonl" --defense "$DEFENSES" -o "$OUT/cm-clean" >/dev/null
mmsafe scan "${SCAN[@]}" -d "jsonl:$OUT/refusal16/adversarial.jsonl" --defense "$DEFENSES" -o "$OUT/cm-adversarial" >/dev/null
mmsafe scan "${SCAN[@]}" -d "jsonl:$OUT/refusal16-through-noise/adversarial.jsonl" --defense none,gaussian-noise -o "$OUT/cm-adaptive" >/dev/null
for r in cm-clean cm-adversarial cm-adaptive; do mmsafe report "$OUT/$r" --no-by-category; done
