"""A generate function written as slime's users write them (search-r1 / retool style: slime's imports, posting to the
router at ``args.sglang_router_ip:port`` itself), inside slime's default rollout, against the real SGLang deployment."""

import json

import pytest

from slime.config.arguments import parse_args
from slime.data.data_source import RolloutDataSource
from slime.rollout import event_loop
from slime.rollout.default import generate_rollout_async
from slime.rollout.sglang_rollout import GenerateState
from slime.utils.http_utils import post
from slime.utils.types import Sample

OBSERVATION = "\n<information>42</information>\n"


async def generate_with_tool(args, sample: Sample, sampling_params) -> Sample:
    """Two model turns with a (masked) tool observation between them, as slime's multi-turn examples do."""
    state = GenerateState(args)
    url = f"http://{args.sglang_router_ip}:{args.sglang_router_port}/generate"
    sample.tokens = state.tokenizer(sample.prompt, add_special_tokens=False)["input_ids"]
    params = {**sampling_params, "max_new_tokens": 3}
    for turn in range(2):
        output = await post(url, {"input_ids": sample.tokens, "sampling_params": params, "return_logprob": True})
        if output["meta_info"]["finish_reason"]["type"] == "abort":
            sample.status = Sample.Status.ABORTED
            return sample
        pairs = output["meta_info"]["output_token_logprobs"]
        sample.append_response_tokens(
            args,
            tokens=[p[1] for p in pairs],
            log_probs=[p[0] for p in pairs],
            trainable=True,
            meta_info=output["meta_info"],
            text=output["text"],
        )
        sample.metadata.setdefault("engine_ids", []).append(output["output_ids"])
        if turn == 0:
            ids = state.tokenizer(OBSERVATION, add_special_tokens=False)["input_ids"]
            sample.append_response_tokens(args, tokens=ids, trainable=False, text=OBSERVATION)
            sample.metadata["observation_ids"] = ids
    return sample


async def one(args, sample: Sample) -> float:
    return 1.0


@pytest.fixture(scope="module")
def prompts(tmp_path_factory):
    path = tmp_path_factory.mktemp("slime-generate") / "train.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"{i}+{i}=", "label": str(2 * i)}) + "\n" for i in range(4)))
    return str(path)


def test_a_slime_generate_function_posting_to_the_router_runs_in_the_rollout(tiny_model, engine, prompts):
    args = parse_args(
        [
            "--hf-checkpoint", str(tiny_model), "--prompt-data", prompts, "--input-key", "prompt",
            "--rollout-batch-size", "2", "--n-samples-per-prompt", "2", "--rollout-max-response-len", "24",
            "--custom-generate-function-path", f"{__name__}.generate_with_tool", "--custom-rm-path", f"{__name__}.one",
            "--output-dir", engine.args.output_dir,
        ]
    )  # fmt: skip
    # What slime's launch does: the rollout's args name the router the engines sit behind (SGLangRolloutEngine.start
    # sets them on the rollout manager's args; the e2e run checks that inside `slime train`).
    args.sglang_router_ip, args.sglang_router_port = engine.args.sglang_router_ip, engine.args.sglang_router_port
    output = event_loop.run(generate_rollout_async(args, 0, RolloutDataSource(args), engine))
    assert len(output.samples) == 4
    for sample in output.samples:
        first, second = sample.metadata["engine_ids"]
        observation = sample.metadata["observation_ids"]
        # The response is what the engine produced plus the tool's ids, in order; only the engine's tokens train.
        assert sample.tokens[sample.prompt_length :] == first + observation + second
        assert sample.loss_mask == [1] * len(first) + [0] * len(observation) + [1] * len(second)
        assert sample.rollout_log_probs[len(first) : len(first) + len(observation)] == [0.0] * len(observation)
        assert sample.status in (Sample.Status.COMPLETED, Sample.Status.TRUNCATED)
        assert sample.weight_versions  # meta_info's weight version was recorded
        assert sample.reward == 1.0
