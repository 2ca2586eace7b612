"""Rollout and eval metrics are computed in one place, the rollout manager, where the samples are: both event hooks
run there, and what leaves it for the driver is plain numbers, never the samples."""

import json
import os

import pytest

from slime.config.arguments import parse_args
from slime.hookspecs import hookimpl
from slime.plugins import register_plugin, unregister_plugin
from slime.ray.rollout_manager import RolloutManager
from slime_testkit.tiny_model import build_tiny_model


async def response_is_nonempty(args, sample) -> float:
    return float(bool(sample.response))


class RecordsWhereHooksRun:
    @hookimpl
    def slime_on_rollout_end(self, args, rollout_id, samples, metrics):
        metrics["rollout/hook_pid"] = os.getpid()
        metrics["rollout/hook_samples"] = len(samples)

    @hookimpl
    def slime_on_eval_end(self, args, rollout_id, results, metrics):
        metrics["eval/hook_pid"] = os.getpid()
        metrics["eval/hook_samples"] = sum(len(result.samples) for result in results.values())


@pytest.fixture
def hooks():
    register_plugin(RecordsWhereHooksRun(), "test-records-where-hooks-run")
    yield
    unregister_plugin("test-records-where-hooks-run")


def test_rollout_and_eval_metrics_come_from_the_rollout_manager(ray_runtime, hooks, tmp_path):
    model = build_tiny_model(tmp_path / "model")
    data = tmp_path / "prompts.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"{i}+1=", "label": str(i + 1)}) + "\n" for i in range(4)))
    args = parse_args(
        [
            "--rollout-backend", "slime_testkit.hf_engine.HFEngine", "--actor-num-gpus-per-node", "1",
            "--rollout-num-gpus", "1", "--hf-checkpoint", str(model), "--prompt-data", str(data),
            "--input-key", "prompt", "--label-key", "label", "--rollout-batch-size", "2",
            "--n-samples-per-prompt", "2", "--rollout-max-response-len", "3",
            "--eval-prompt-data", "heldout", str(data), "--n-samples-per-eval-prompt", "3",
            "--custom-rm-path", f"{__name__}.response_is_nonempty", "--output-dir", str(tmp_path / "out"),
        ]
    )  # fmt: skip
    manager = RolloutManager(args)
    manager.start()
    try:
        rollout = manager.generate(0)
        evaluation = manager.eval(0)
    finally:
        manager.shutdown()

    assert rollout.metrics["rollout/hook_pid"] == os.getpid()
    assert rollout.metrics["rollout/hook_samples"] == 4  # 2 prompts x 2 samples
    assert evaluation["eval/hook_pid"] == os.getpid()  # the same process as the rollout's hook
    assert evaluation["eval/hook_samples"] == 12  # 4 prompts x 3 samples
    # The tiny model always answers something within 3 tokens: every eval sample scores 1.
    assert evaluation["eval/heldout"] == 1.0
    assert evaluation["eval/heldout-truncated_ratio"] == 1.0  # 3 new tokens never reach end-of-text
    # Only numbers leave the rollout manager for the driver: no Sample crosses Ray to be averaged there.
    assert all(isinstance(value, int | float) for value in evaluation.values()), evaluation
