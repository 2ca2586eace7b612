"""slime's custom functions, written as slime's users write them (slime's signatures and imports), inside the loop on
real Ray with core's small HF train backend and HF engine: each is called where slime calls it, and its effect shows.

Each function appends what it saw to a JSONL file under ``args.output_dir`` (the rollout manager and the trainer are
separate Ray actors, so a file is how the test hears from them).
"""

import json
from pathlib import Path

import pytest
import torch

from slime.config.arguments import parse_args
from slime.loop import train
from slime.rollout.base_types import RolloutFnEvalOutput, RolloutFnTrainOutput
from slime.rollout.filter_hub.base_types import DynamicFilterOutput
from slime.rollout.sglang_rollout import GenerateState, generate, generate_rollout
from slime.utils.types import Sample

pytestmark = pytest.mark.slow


def record(args, hook: str, **seen) -> None:
    with open(Path(args.output_dir) / "slime_calls.jsonl", "a") as f:
        f.write(json.dumps({"hook": hook, **seen}) + "\n")


def calls(output_dir: Path, hook: str) -> list[dict]:
    lines = (output_dir / "slime_calls.jsonl").read_text().splitlines()
    return [c for c in map(json.loads, lines) if c["hook"] == hook]


# ---- slime's rollout-side functions --------------------------------------------------------------------------------


async def custom_generate(args, sample: Sample, sampling_params) -> Sample:
    state = GenerateState(args)
    record(args, "generate", prompt_ids=state.tokenizer(sample.prompt, add_special_tokens=False)["input_ids"])
    sample = await generate(args, sample, sampling_params)
    assert sample.status in (Sample.Status.COMPLETED, Sample.Status.TRUNCATED)
    return sample


def tag_hook(args, sample: Sample, *, rollout_id=None, evaluation=False) -> Sample:
    record(args, "hook", rollout_id=rollout_id, evaluation=evaluation)
    replacement = Sample(**{**sample.__dict__, "metadata": {**sample.metadata, "tagged": True}})
    return replacement  # slime lets a hook hand back another sample


async def count_hook(args, sample: Sample) -> None:
    record(args, "second_hook", tagged=sample.metadata.get("tagged", False))


async def reward(args, sample: Sample) -> float:
    return float(sample.label in sample.response)


def keep_all(args, samples: list[Sample], **kwargs) -> DynamicFilterOutput:
    record(args, "dynamic_filter", group=samples[0].group_index)
    return DynamicFilterOutput(keep=True)


def remove_first_group(args, data: list[list[Sample]]) -> None:
    record(args, "sample_filter", groups=len(data))
    for sample in data[0]:
        sample.remove_sample = True


def process_all(args, all_samples: list[list[Sample]], data_source) -> None:
    record(args, "all_samples", groups=len(all_samples), has_buffer=hasattr(data_source, "buffer"))


def eval_rollout(args, rollout_id, data_source, evaluation=False) -> RolloutFnEvalOutput:
    output = generate_rollout(args, rollout_id, data_source, evaluation=evaluation)
    record(args, "eval_function", evaluation=evaluation, datasets=sorted(output.data))
    return output


def log_rollout(rollout_id, args, samples, rollout_extra_metrics, rollout_time) -> bool:
    record(args, "rollout_log", rollout_id=rollout_id, samples=len(samples), time=rollout_time > 0)
    return rollout_id == 0  # skip the default logging of rollout 0 only


def log_eval(rollout_id, args, data, extra_metrics) -> bool:
    record(args, "eval_log", rollout_id=rollout_id, keys={k: sorted(v) for k, v in data.items()})
    return True


def slime_style_rollout(args, rollout_id, data_source, evaluation=False) -> RolloutFnTrainOutput:
    output = generate_rollout(args, rollout_id, data_source, evaluation=evaluation)
    record(args, "rollout_function", groups=len(output.samples), metrics=sorted(output.metrics))
    return output


# ---- slime's train-side functions ----------------------------------------------------------------------------------


def reinforce_loss(args, batch, reducer):
    record(args, "custom_loss", samples=len(batch.response_lengths))
    loss = reducer(-batch.log_probs * batch.advantages)
    return loss, {"loss": loss.detach(), "custom_term": torch.tensor(7.0)}


def postprocess(args, rollout_id, rollout_data) -> None:
    masks = rollout_data["loss_masks"]
    record(args, "postprocess", rollout_id=rollout_id, mask_sums=[float(m.sum()) for m in masks])
    rollout_data["advantages"] = [torch.ones_like(a) for a in rollout_data["advantages"]]


def run_args(root: Path, model: Path, data: Path, out: str, *extra: str):
    return parse_args(
        [
            "--train-backend", "slime_testkit.hf_trainer.HFTrainer",
            "--rollout-backend", "slime_testkit.hf_engine.HFEngine",
            "--actor-num-gpus-per-node", "1", "--rollout-num-gpus", "1",
            "--hf-checkpoint", str(model), "--prompt-data", str(data), "--input-key", "prompt", "--label-key", "label",
            "--rollout-batch-size", "2", "--n-samples-per-prompt", "2", "--rollout-max-response-len", "4",
            "--update-weight-transport", "disk", "--output-dir", str(root / out), *extra,
        ]
    )  # fmt: skip


def test_slime_rollout_functions_and_hooks_run_where_slime_calls_them(ray_runtime, setup):
    root, model, data = setup
    out = root / "hooks"
    here = __name__
    args = run_args(
        root, model, data, "hooks", "--num-rollout", "2",
        "--rollout-function-path", f"{here}.slime_style_rollout",
        "--custom-generate-function-path", f"{here}.custom_generate",
        "--rollout-sample-hook-path", f"{here}.tag_hook", "--rollout-sample-hook-path", f"{here}.count_hook",
        "--custom-rm-path", f"{here}.reward",
        "--dynamic-sampling-filter-path", f"{here}.keep_all",
        "--rollout-sample-filter-path", f"{here}.remove_first_group",
        "--rollout-all-samples-process-path", f"{here}.process_all",
        "--rollout-data-postprocess-path", f"{here}.postprocess",
        "--loss-type", "custom_loss", "--custom-loss-function-path", f"{here}.reinforce_loss",
        "--custom-rollout-log-function-path", f"{here}.log_rollout",
        "--eval-function-path", f"{here}.eval_rollout", "--eval-interval", "2",
        "--eval-prompt-data", "heldout", str(data),
        "--custom-eval-rollout-log-function-path", f"{here}.log_eval",
    )  # fmt: skip
    train(args)

    assert calls(out, "rollout_function") == [{"hook": "rollout_function", "groups": 2, "metrics": []}] * 2
    generated = calls(out, "generate")
    assert len(generated) == 2 * 4 + 2 * 8  # two rollouts of 4 samples, evals before and after of 8
    assert generated[0]["prompt_ids"]  # GenerateState's tokenizer is the one prompts are encoded with
    hooks = calls(out, "hook")
    assert [h["rollout_id"] for h in hooks if not h["evaluation"]] == [0] * 4 + [1] * 4
    assert sum(h["evaluation"] for h in hooks) == 16
    assert all(h["tagged"] for h in calls(out, "second_hook"))  # the second hook got the first one's replacement
    assert len(calls(out, "dynamic_filter")) == 4
    assert [c["groups"] for c in calls(out, "sample_filter")] == [2, 2]
    assert calls(out, "all_samples") == [{"hook": "all_samples", "groups": 2, "has_buffer": True}] * 2
    # The rollout-sample filter's removed group reaches the trainer with all-zero loss masks.
    for seen in calls(out, "postprocess"):
        assert seen["mask_sums"][:2] == [0.0, 0.0] and all(s > 0 for s in seen["mask_sums"][2:])
    assert [c["rollout_id"] for c in calls(out, "postprocess")] == [0, 1]
    assert [c["rollout_id"] for c in calls(out, "rollout_log")] == [0, 1]
    assert all(c["samples"] == 4 and c["time"] for c in calls(out, "rollout_log"))
    eval_calls = calls(out, "eval_function")
    assert eval_calls == [{"hook": "eval_function", "evaluation": True, "datasets": ["heldout"]}] * 2
    assert [c["keys"] for c in calls(out, "eval_log")] == [{"heldout": ["rewards", "samples", "truncated"]}] * 2

    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    rollout_steps = [r["rollout/step"] for r in records if "rollout/raw_reward" in r]
    assert rollout_steps == [1]  # rollout 0's default logging was skipped by the custom log function
    assert not any("eval/step" in r for r in records)  # every eval logged by the custom eval log function
    steps = [r for r in records if "train/step" in r]
    # The custom loss trained with the advantages the rollout-data hook set (ones): a positive -log-prob loss.
    assert len(steps) == 2 and all(r["train/custom_term"] == 7.0 and r["train/loss"] > 0 for r in steps)
    assert calls(out, "custom_loss") == [{"hook": "custom_loss", "samples": 4}] * 2
