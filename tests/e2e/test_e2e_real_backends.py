"""The whole loop with the real components on CPU: Ray, Megatron-core (train), SGLang behind sglang-router (rollout),
weights through shared memory, --async (generation of the next rollout overlaps training), and every metric
sink (JSONL, W&B offline, TensorBoard) read back."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from slime.config.arguments import parse_args
from slime.loop import train
from slime.rollout.sglang_rollout import GenerateState
from slime.utils.http_utils import post
from slime.utils.types import Sample
from slime_testkit.tiny_model import build_tiny_model

sys.path.insert(0, str(Path(__file__).parents[1] / "metrics"))  # the sink readers of the metric tests
from readers import read_jsonl, read_tensorboard, read_wandb  # noqa: E402

STEP_KEYS = ("train/step", "rollout/step", "eval/step")


async def label_in_response(args, sample) -> float:
    return float(sample.label in sample.response)


# slime's own custom functions, unchanged: they run in the rollout manager and the Megatron train actor and leave a
# line per call in the run's output directory.


async def slime_style_generate(args, sample: Sample, sampling_params) -> Sample:
    """A generate function as slime's users write them: it posts to the router slime started, read from args."""
    url = f"http://{args.sglang_router_ip}:{args.sglang_router_port}/generate"
    prompt_ids = GenerateState(args).tokenizer(sample.prompt, add_special_tokens=False)["input_ids"]
    sample.tokens = list(prompt_ids)
    output = await post(url, {"input_ids": prompt_ids, "sampling_params": sampling_params, "return_logprob": True})
    pairs = output["meta_info"]["output_token_logprobs"]
    tokens, log_probs = [p[1] for p in pairs], [p[0] for p in pairs]
    sample.append_response_tokens(
        args, tokens=tokens, log_probs=log_probs, trainable=True, meta_info=output["meta_info"], text=output["text"]
    )
    with open(Path(args.output_dir) / "slime_generate_calls.jsonl", "a") as f:
        f.write(json.dumps({"url": url, "ids": output["output_ids"], "tokens": tokens}) + "\n")
    return sample


_TRAIN_OUTPUT_DIR: list[str] = []  # set in the train actor by the hook that gets args, for the one that does not


def record_rollout_data(args, rollout_id, rollout_data) -> None:
    _TRAIN_OUTPUT_DIR[:] = [args.output_dir]
    with open(Path(args.output_dir) / "postprocess_calls.jsonl", "a") as f:
        f.write(json.dumps({"rollout_id": rollout_id, "samples": len(rollout_data["loss_masks"])}) + "\n")


def slime_sample_mean(total_lengths, response_lengths, loss_masks, calculate_per_token_loss=False):
    """slime's default reduction, as a custom pg-loss reducer: the run's loss is the same as without it."""
    with open(Path(_TRAIN_OUTPUT_DIR[0]) / "reducer_calls.jsonl", "a") as f:
        f.write(json.dumps({"total_lengths": total_lengths, "response_lengths": response_lengths}) + "\n")

    def reduce(x):
        return sum(
            (x_i * m).sum() / m.sum().clamp(min=1) for x_i, m in zip(x.split(response_lengths), loss_masks, strict=True)
        )

    return reduce


@pytest.mark.slow
def test_three_rollouts_with_megatron_sglang_and_every_sink(ray_runtime, tmp_path):
    model = build_tiny_model(tmp_path / "model")
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"{i}+1=", "label": str(i + 1)}) + "\n" for i in range(12)))
    out = tmp_path / "out"
    args = parse_args(
        [
            "--train-backend", "megatron", "--rollout-backend", "sglang",
            "--actor-num-gpus-per-node", "1", "--rollout-num-gpus", "1", "--sglang-device", "cpu",
            "--hf-checkpoint", str(model), "--prompt-data", str(data), "--input-key", "prompt", "--label-key", "label",
            "--rollout-batch-size", "2", "--n-samples-per-prompt", "4", "--rollout-max-response-len", "6",
            "--custom-rm-path", f"{__name__}.label_in_response", "--lr", "1e-3",
            "--num-rollout", "3", "--eval-interval", "2", "--eval-prompt-data", "heldout", str(data),
            "--n-samples-per-eval-prompt", "2", "--save", str(tmp_path / "ckpt"), "--save-interval", "2",
            "--use-wandb", "--wandb-mode", "offline", "--wandb-project", "e2e", "--use-tensorboard",
            "--tb-experiment-name", "e2e", "--log-passrate", "--output-dir", str(out),
            "--async", "--save-debug-rollout-data", str(tmp_path / "rollouts" / "{rollout_id}.json"),
            "--custom-generate-function-path", f"{__name__}.slime_style_generate",
            "--rollout-data-postprocess-path", f"{__name__}.record_rollout_data",
            "--custom-pg-loss-reducer-function-path", f"{__name__}.slime_sample_mean",
            "--keep-old-actor", "--get-mismatch-metrics",
        ]
    )  # fmt: skip
    train(args)

    lines = read_jsonl(out)
    order = [(next(k for k in STEP_KEYS if k in line), line[next(k for k in STEP_KEYS if k in line)]) for line in lines]
    rollout_lines = [line for line in lines if "rollout/raw_reward" in line]
    assert order[0] == ("eval/step", 0)  # eval before training
    assert [line["rollout/step"] for line in rollout_lines] == [0, 1, 2]
    assert [step for key, step in order if key == "train/step"] == [0, 1, 2]
    assert [step for key, step in order if key == "eval/step"] == [0, 1]  # rollout 0 and after rollout 1 (interval 2)
    assert all("passrate/pass@4" in line for line in rollout_lines)
    trainer_lines = [line for line in lines if "perf/train_time" in line]  # what the train backend measured
    assert [line["rollout/step"] for line in trainer_lines] == [0, 1, 2]
    assert all(
        {"rollout/advantages", "rollout/returns", "rollout/log_probs", "rollout/rollout_log_probs"} <= set(line)
        for line in trainer_lines
    )
    first_step = next(line for line in lines if "train/step" in line)
    assert first_step["train/ppo_kl"] == 0.0 and first_step["train/pg_clipfrac"] == 0.0  # on-policy first step
    # --keep-old-actor: the old log-probs come from the weights each rollout was generated with, also for the
    # rollouts --async generated one version behind, so Megatron's and SGLang's log-probs of the same tokens agree
    # (--get-mismatch-metrics) on every rollout, and the stale rollouts start off-policy.
    train_lines = [line for line in lines if "train/step" in line]
    assert all(line["train/train_rollout_logprob_abs_diff"] < 1e-4 for line in train_lines), train_lines
    assert all(abs(line["train/mis_k3_kl"]) < 1e-6 for line in train_lines)
    assert train_lines[1]["train/ppo_kl"] != 0.0  # rollout 1 came from the first weights, trained once since

    # The same rows in W&B's offline file, with slime's step-metric definitions, and in TensorBoard.
    run = read_wandb(out / "wandb")
    assert run.history == lines
    assert run.step_metrics["train/*"] == "train/step" and run.step_metrics["eval/*"] == "eval/step"
    scalars = read_tensorboard(out / "tensorboard" / "slime" / "e2e")
    for line in lines:
        step_key = next(k for k in STEP_KEYS if k in line)
        for key, value in line.items():
            if key != step_key:
                assert (line[step_key], pytest.approx(float(np.float32(value)))) in [
                    (step, pytest.approx(v)) for step, v in scalars[key]
                ], key

    # --async: rollout 1 was generated while rollout 0 trained, so with the first weights; rollout 2 with the
    # weights trained on rollout 0 (one version behind, which the staleness guard allows).
    versions = [json.loads((tmp_path / "rollouts" / f"{r}.json").read_text())["samples"] for r in range(3)]
    assert [{v for s in samples for v in s["weight_versions"]} for samples in versions] == [{"0"}, {"0"}, {"1"}]

    # Weights went through shared memory (the CPU engine is on the trainer's host): the engine's log shows each of
    # the 4 updates (before rollout 0, after each rollout) arrive as shared tensors, none as a broadcast or from disk.
    engine_log = (out / "sglang" / "engine_0.log").read_text()
    assert engine_log.count('"POST /begin_weight_update HTTP/1.1" 200') == 4
    assert engine_log.count('"POST /update_weights_from_tensor HTTP/1.1" 200') >= 4
    for other in ("/init_weights_update_group", "/update_weights_from_distributed", "/update_weights_from_disk"):
        assert other not in engine_log, other

    # slime's own functions ran unchanged: the generate function posted every sample (3 rollouts of 8, 2 evals of
    # 12 x 2) to the router slime started, and its responses are what was trained on; the Megatron actor called the
    # rollout-data hook once per rollout and the pg-loss reducer once per micro-batch.
    generated = [json.loads(line) for line in (out / "slime_generate_calls.jsonl").read_text().splitlines()]
    assert len(generated) == 3 * 8 + 2 * 24
    assert all(call["ids"] == call["tokens"] and call["url"].endswith("/generate") for call in generated)
    trained = {tuple(s["tokens"][-s["response_length"] :]) for samples in versions for s in samples}
    assert trained <= {tuple(call["ids"]) for call in generated}
    postprocessed = [json.loads(line) for line in (out / "postprocess_calls.jsonl").read_text().splitlines()]
    assert postprocessed == [{"rollout_id": r, "samples": 8} for r in range(3)]
    assert (out / "reducer_calls.jsonl").read_text().count("\n") >= 3

    # Checkpoint at rollout 1 (interval) and 2 (last), with the data position of each.
    assert (tmp_path / "ckpt" / "latest_checkpointed_iteration.txt").read_text().strip() == "2"
    assert json.loads((tmp_path / "ckpt" / "rollout" / "data_source_2.json").read_text())["sample_offset"] == 6
