"""slime's own launch scripts run on CPU with the real stack (Ray, Megatron, SGLang), pointed at a tiny model of
their architecture (launch_script_on_cpu.py says exactly what changes): run-qwen3-30B-A3B.sh (GRPO on a Qwen3-MoE
with TP=2 and expert parallelism 2 on the same two ranks, sequence parallelism, full recompute, dynamic batches,
balanced data, --colocate, a TP=2 engine; with routing replay of the engine's routes) and the SFT script (--debug-train-only, slime's SFT rollout function).
The dense GRPO scripts (run-qwen3-4B.sh, run-qwen3-32B.sh, run-glm4-9B.sh) run the same way by hand:
docs/status.md has what they gave."""

import subprocess
import sys
from pathlib import Path

import pytest
from launch_script_on_cpu import SCRIPT_MODELS, train_command

sys.path.insert(0, str(Path(__file__).parents[1] / "metrics"))  # the metric tests' sink readers
from readers import read_jsonl  # noqa: E402


# The SFT script is a long test (SLIME_LONG_TESTS=1): CI has no time for a second start of the stack here, and the CPU
# demo's smoke test runs an SFT stage (sft_loss, slime's SFT rollout function) in CI.
@pytest.mark.slow
@pytest.mark.parametrize(
    "script", ["run-qwen3-30B-A3B.sh", pytest.param("run-qwen3-4B-base-sft.sh", marks=pytest.mark.long)]
)
def test_slime_script_runs_on_cpu_pointed_at_a_tiny_model(script, tmp_path):
    # The MoE run also replays the engine's routes (R3), as slime's own R3 test does with this script: the routes go
    # from the TP=2 engine through the rollout manager to the TP=2 x EP=2 trainer with SP and recompute.
    extra = ("--use-rollout-routing-replay",) if script == "run-qwen3-30B-A3B.sh" else ()
    command, env = train_command(script, tmp_path, *extra)
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    metrics = read_jsonl(tmp_path / "out" / "metrics.jsonl")
    steps = [row for row in metrics if "train/loss" in row]
    assert [row["train/step"] for row in steps] == [0]
    saved = (
        tmp_path / "root" / f"{SCRIPT_MODELS[script][1]}_slime"
    )  # the script's --save: the last rollout always saves
    assert (saved / "latest_checkpointed_iteration.txt").read_text().strip() == "0"
    if script == "run-qwen3-30B-A3B.sh":
        # Megatron at TP=2 x EP=2 with SP and recompute scores the TP=2 engine's samples as the engine did.
        assert steps[0]["train/train_rollout_logprob_abs_diff"] < 1e-4
        assert [row["eval/step"] for row in metrics if "eval/aime" in row] == [0]
    else:
        assert steps[0]["train/loss"] > 0  # the SFT loss of a random model over the answers' tokens
