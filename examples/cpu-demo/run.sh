#!/usr/bin/env bash
# The CPU demo: tiny model + arithmetic task -> SFT warm start -> GRPO -> report. Run from the repository root:
#
#     bash examples/cpu-demo/run.sh
#
# OUT=dir picks the output directory (default outputs/cpu-demo; it is rebuilt from scratch). SMOKE=1 runs every
# stage at a tiny size (1-2 rollouts each) to check the wiring in a few minutes; it does not learn. MODEL=moe runs
# the same task with a tiny Qwen3-MoE: two train ranks with expert parallelism 2, and GRPO replays the engine's
# routes (--use-rollout-routing-replay). ALGO=ppo replaces GRPO with PPO: a critic (a value model of the same
# architecture) trains beside the policy and GAE turns its values into advantages (ppo-roles.yaml: its own lr).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OUT="${OUT:-outputs/cpu-demo}"
SMOKE="${SMOKE:-0}"
MODEL="${MODEL:-dense}"
ALGO="${ALGO:-grpo}"

# Flags that shrink each stage for SMOKE=1 (the command line wins over the YAML configs).
SFT_SIZE=()
GRPO_SIZE=()
if [[ "$SMOKE" == "1" ]]; then
  SFT_SIZE=(--num-rollout 1 --rollout-batch-size 16 --global-batch-size 16)
  GRPO_SIZE=(--num-rollout 2 --rollout-batch-size 4 --n-samples-per-prompt 4 --global-batch-size 16 --eval-interval 1)
fi

PREPARE_ARCH=()
SFT_MODEL=()
GRPO_MODEL=()
if [[ "$MODEL" == "moe" ]]; then
  PREPARE_ARCH=(--arch qwen3_moe)
  SFT_MODEL=(--actor-num-gpus-per-node 2 --expert-model-parallel-size 2)
  GRPO_MODEL=("${SFT_MODEL[@]}" --use-rollout-routing-replay)
elif [[ "$MODEL" != "dense" ]]; then
  echo "run.sh: MODEL must be dense or moe, not '$MODEL'" >&2
  exit 2
fi

RL_ALGO=()
if [[ "$ALGO" == "ppo" ]]; then
  # Advantages from the critic's values, whitened; the critic trains alone for 2 rollouts first (as slime's PPO
  # tests do). Checkpoints every 10 rollouts hold the actor and, under checkpoints/critic, the critic.
  RL_ALGO=(--advantage-estimator ppo --normalize-advantages --num-critic-only-steps 2
    --megatron-config-path "$HERE/ppo-roles.yaml" --save "$OUT/ppo/checkpoints" --save-interval 10)
elif [[ "$ALGO" != "grpo" ]]; then
  echo "run.sh: ALGO must be grpo or ppo, not '$ALGO'" >&2
  exit 2
fi

source "$HERE/../common.sh"  # environment, fresh $OUT, stage()

stage prepare uv run python "$HERE/prepare.py" --out "$OUT" "${PREPARE_ARCH[@]}"

# Stage 1: supervised warm start; the final weights are exported as an HF directory for stage 2.
stage sft uv run slime train --config "$HERE/sft.yaml" \
  --hf-checkpoint "$OUT/model" \
  --prompt-data "$OUT/data/sft.jsonl" \
  --eval-prompt-data arith "$OUT/data/eval.jsonl" \
  --save "$OUT/sft/checkpoints" --save-hf "$OUT/sft/hf" \
  --output-dir "$OUT/sft" "${SFT_MODEL[@]}" "${SFT_SIZE[@]}"

# Stage 2: GRPO (or PPO), starting from the SFT export.
stage "$ALGO" uv run slime train --config "$HERE/grpo.yaml" \
  --hf-checkpoint "$OUT/sft/hf" \
  --prompt-data "$OUT/data/train.jsonl" \
  --eval-prompt-data arith "$OUT/data/eval.jsonl" \
  --save-debug-rollout-data "$OUT/$ALGO/rollouts/rollout_{rollout_id}.json" \
  --output-dir "$OUT/$ALGO" "${GRPO_MODEL[@]}" "${GRPO_SIZE[@]}" "${RL_ALGO[@]}"

stage report-sft uv run slime report "$OUT/sft"
stage "report-$ALGO" uv run slime report "$OUT/$ALGO"

uv run python "$HERE/summary.py" "$OUT"
