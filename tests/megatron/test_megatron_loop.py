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
