#!/usr/bin/env bash
# Train-inference mismatch metrics on the real stack (Megatron + SGLang on CPU), run from the repository root:
#
#     bash examples/mismatch/run.sh
#
# The engine samples once with the trainer's own weights and once with perturbed ones (--debug-rollout-only, samples
# dumped with the engine's log-probs); the trainer then reads each dump with the original weights
# (--debug-train-only, --get-mismatch-metrics). The metrics are about 0 for the first and grow for the second.
# OUT=dir picks the output directory (default outputs/mismatch; rebuilt from scratch), SCALE the perturbation.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OUT="${OUT:-outputs/mismatch}"
SCALE="${SCALE:-0.1}"
source "$HERE/../common.sh"  # environment, fresh $OUT

uv run python "$HERE/../cpu-demo/prepare.py" --out "$OUT"  # the CPU demo's tiny model and problems
uv run python "$HERE/perturb.py" "$OUT/model" "$OUT/perturbed" --scale "$SCALE"

for run in same perturbed; do
  engine_model="$OUT/model"
  [[ "$run" == perturbed ]] && engine_model="$OUT/perturbed"
  uv run slime train --config "$HERE/mismatch.yaml" --debug-rollout-only \
    --hf-checkpoint "$engine_model" --prompt-data "$OUT/data/train.jsonl" \
    --save-debug-rollout-data "$OUT/rollouts-$run/rollout_{rollout_id}.json" --output-dir "$OUT/rollout-$run"
  uv run slime train --config "$HERE/mismatch.yaml" --debug-train-only \
    --hf-checkpoint "$OUT/model" --prompt-data "$OUT/data/train.jsonl" \
    --load-debug-rollout-data "$OUT/rollouts-$run/rollout_{rollout_id}.json" --output-dir "$OUT/train-$run"
done

uv run python "$HERE/summary.py" "$OUT"
