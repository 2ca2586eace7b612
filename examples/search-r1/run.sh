#!/usr/bin/env bash
# The search-r1 example: a made-up world's facts as a BM25-searched corpus + questions about them + a tiny model ->
# GRPO whose generate function searches -> report. Run from the repository root:
#
#     bash examples/search-r1/run.sh
#
# OUT=dir picks the output directory (default outputs/search-r1; it is rebuilt from scratch). SMOKE=1 runs at a tiny
# size (2 rollouts) to check the wiring.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OUT="${OUT:-outputs/search-r1}"
SMOKE="${SMOKE:-0}"

# The custom functions are dotted paths into this folder (generate_with_search.generate), imported by slime train
# and by the rollout manager, which inherits this environment.
export PYTHONPATH="$HERE${PYTHONPATH:+:$PYTHONPATH}"

SIZE=()
if [[ "$SMOKE" == "1" ]]; then
  SIZE=(--num-rollout 2 --rollout-batch-size 2 --n-samples-per-prompt 4 --global-batch-size 8 --eval-interval 1)
fi

source "$HERE/../common.sh"  # environment, fresh $OUT, stage()

stage prepare uv run python "$HERE/prepare.py" --out "$OUT"

stage grpo uv run slime train --config "$HERE/grpo.yaml" \
  --custom-config-path "$OUT/search.yaml" \
  --hf-checkpoint "$OUT/model" \
  --prompt-data "$OUT/data/train.jsonl" \
  --eval-prompt-data facts "$OUT/data/eval.jsonl" \
  --save-debug-rollout-data "$OUT/grpo/rollouts/rollout_{rollout_id}.json" \
  --output-dir "$OUT/grpo" "${SIZE[@]}"

stage report uv run slime report "$OUT/grpo"

uv run python "$HERE/summary.py" "$OUT"
