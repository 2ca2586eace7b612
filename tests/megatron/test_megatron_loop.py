"""slime's loop on real Ray with the megatron backend (TP=2 over two train actors) and core's small HF engine."""

import json

import pytest

from slime.config.arguments import parse_args
from slime.loop import train
from slime_testkit.tiny_model import build_tiny_model


async def label_in_response(args, sample) -> float:
    return float(sample.label in sample.response)


@pytest.mark.slow
def test_loop_trains_saves_and_syncs_weights_with_megatron(ray_runtime, tmp_path):
    model = build_tiny_model(tmp_path / "model")
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"{i}+1=", "label": str(i + 1)}) + "\n" for i in range(8)))
    args = parse_args(
        [
            "--train-backend", "megatron", "--tensor-model-parallel-size", "2", "--actor-num-gpus-per-node", "2",
            "--rollout-backend", "slime_testkit.hf_engine.HFEngine", "--rollout-num-gpus", "1",
            "--hf-checkpoint", str(model), "--prompt-data", str(data), "--input-key", "prompt", "--label-key", "label",
            "--rollout-batch-size", "2", "--n-samples-per-prompt", "2", "--rollout-max-response-len", "4",
            "--custom-rm-path", f"{__name__}.label_in_response", "--use-kl-loss", "--kl-loss-coef", "0.01",
            "--update-weight-transport", "disk", "--output-dir", str(tmp_path / "out"),
            "--num-rollout", "2", "--save", str(tmp_path / "ckpt"), "--save-interval", "1",
        ]
    )  # fmt: skip
    train(args)
    records = [json.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    steps = [record for record in records if "train/step" in record]
    assert [step["train/step"] for step in steps] == [0, 1]  # one optimizer step per rollout
    assert steps[0]["train/kl_loss"] == 0.0 and steps[0]["train/grad_norm"] > 0  # first step: actor == reference
    assert steps[1]["train/kl_loss"] != 0.0
    assert (tmp_path / "ckpt" / "latest_checkpointed_iteration.txt").read_text() == "1\n"
    # The initial weights and one push per rollout; each push removes the one before once the engines load it.
    assert [p.name for p in (tmp_path / "out" / "weights").iterdir()] == ["weight_v2"]


@pytest.mark.slow
def test_ppo_trains_a_critic_beside_the_actor_and_resumes_both(ray_runtime, tmp_path):
    model = build_tiny_model(tmp_path / "model")
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"{i}+1=", "label": str(i + 1)}) + "\n" for i in range(8)))

    def run(*flags: str) -> list[dict]:
        out = tmp_path / f"out{len(list(tmp_path.glob('out*')))}"
        args = parse_args(
            [
                # Two data-parallel ranks: each critic rank reports the values of its half of the samples.
                "--train-backend", "megatron", "--actor-num-gpus-per-node", "2",
                "--rollout-backend", "slime_testkit.hf_engine.HFEngine", "--rollout-num-gpus", "1",
                "--hf-checkpoint", str(model), "--prompt-data", str(data), "--input-key", "prompt",
                "--label-key", "label", "--rollout-batch-size", "2", "--n-samples-per-prompt", "2",
                "--rollout-max-response-len", "4", "--custom-rm-path", f"{__name__}.label_in_response",
                "--advantage-estimator", "ppo", "--num-critic-only-steps", "1",
                "--update-weight-transport", "disk", "--output-dir", str(out),
                "--save", str(tmp_path / "ckpt"), "--save-interval", "1", *flags,
            ]
        )  # fmt: skip
        train(args)
        return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]

    records = run("--num-rollout", "2")
    steps = [record for record in records if "train/step" in record]
    assert [step["train/step"] for step in steps] == [0, 1]
    # Rollout 0 trains the critic alone (--num-critic-only-steps 1); from rollout 1 both train, critic first.
    assert "train/critic-value_loss" in steps[0] and "train/loss" not in steps[0]
    assert {"train/critic-value_loss", "train/critic-grad_norm", "train/loss", "train/pg_loss"} <= set(steps[1])
    assert steps[1]["train/critic-grad_norm"] > 0 and steps[1]["train/grad_norm"] > 0
    rollout_1 = next(r for r in records if r.get("rollout/step") == 1 and "rollout/values" in r)
    assert rollout_1["rollout/advantages"] != 0.0
    ckpt = tmp_path / "ckpt"
    assert (ckpt / "latest_checkpointed_iteration.txt").read_text() == "1\n"
    assert (ckpt / "critic" / "latest_checkpointed_iteration.txt").read_text() == "1\n"

    # Resumed, both come back at rollout 2 (a critic that did not load would start at 0 and stop the run).
    resumed = run("--num-rollout", "3", "--load", str(ckpt))
    assert [r["train/step"] for r in resumed if "train/step" in r] == [2]
    assert (ckpt / "critic" / "latest_checkpointed_iteration.txt").read_text() == "2\n"
