#!/usr/bin/env bash
# On-policy distillation on the real stack (Megatron + SGLang on CPU), run from the repository root:
#
#     bash examples/on-policy-distillation/run.sh
#
# The CPU demo's SFT and GRPO stages make a student (the SFT model: sums, plainly answered) and a teacher (the GRPO
# model: boxed answers); the teacher becomes a Megatron checkpoint (slime convert) and the student is distilled from
# it on its own samples with no task reward (--use-opd --opd-type megatron). Eval scores boxed answers, as the demo's.
# OUT=dir picks the output directory (default outputs/on-policy-distillation; rebuilt from scratch).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DEMO="$HERE/../cpu-demo"
OUT="${OUT:-outputs/on-policy-distillation}"
source "$HERE/../common.sh"  # environment, fresh $OUT, stage()
export PYTHONPATH="$HERE${PYTHONPATH:+:$PYTHONPATH}"  # no_task_reward.py

stage prepare uv run python "$DEMO/prepare.py" --out "$OUT"
stage student uv run slime train --config "$DEMO/sft.yaml" \
  --hf-checkpoint "$OUT/model" --prompt-data "$OUT/data/sft.jsonl" \
  --eval-prompt-data arith "$OUT/data/eval.jsonl" \
  --save "$OUT/student/checkpoints" --save-hf "$OUT/student/hf" --output-dir "$OUT/student"
stage teacher uv run slime train --config "$DEMO/grpo.yaml" \
  --hf-checkpoint "$OUT/student/hf" --prompt-data "$OUT/data/train.jsonl" \
  --eval-prompt-data arith "$OUT/data/eval.jsonl" \
  --save "$OUT/teacher/checkpoints" --save-interval 1000 --save-hf "$OUT/teacher/hf" --output-dir "$OUT/teacher"
stage convert uv run slime convert hf-to-megatron "$OUT/teacher/hf" "$OUT/teacher/megatron"
# Eval scores the student's greedy answers with the demo's reward (boxed sums), not the training reward (none).
cat >"$OUT/eval.yaml" <<YAML
eval:
  datasets:
    - {name: arith, path: $OUT/data/eval.jsonl, custom_rm_path: math}
YAML
stage distill uv run slime train --config "$HERE/opd.yaml" \
  --hf-checkpoint "$OUT/student/hf" --opd-teacher-load "$OUT/teacher/megatron" \
  --prompt-data "$OUT/data/train.jsonl" --eval-config "$OUT/eval.yaml" \
  --output-dir "$OUT/distill"

uv run python "$HERE/summary.py" "$OUT"
