"""slime's default rollout and eval functions against the real SGLang deployment (two CPU engines, one router)."""

import asyncio
import json
import statistics
import time

import pytest
import torch

from slime.config.arguments import parse_args
from slime.data.data_source import RolloutDataSource
from slime.metrics.eval import eval_metrics
from slime.rollout import event_loop
from slime.rollout.default import generate_rollout, generate_rollout_async
from slime.rollout.generate import default_generate
from slime.types import Status


async def mixed_in_groups_0_and_5(args, sample) -> float:
    """Groups 0 and 5 get rewards 1/0 (kept by the std filter); every other group is all 0 (dropped)."""
    return float(sample.group_index in (0, 5) and sample.index % 2 == 0)


async def label_in_response(args, sample) -> float:
    return float(str(sample.label) in sample.response)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("rollout-data")
    paths = {}
    for name, count in (("train", 24), ("eval_a", 3), ("eval_b", 2)):
        path = root / f"{name}.jsonl"
        path.write_text("".join(json.dumps({"prompt": f"{i}+{i}=", "label": str(2 * i)}) + "\n" for i in range(count)))
        paths[name] = str(path)
    return paths


def rollout_args(tiny_model, engine_args, data, *extra):
    return parse_args(
        [
            "--hf-checkpoint", str(tiny_model), "--prompt-data", data["train"], "--input-key", "prompt",
            "--label-key", "label", "--rollout-batch-size", "2", "--n-samples-per-prompt", "4",
            "--rollout-max-response-len", "24", "--actor-num-gpus-per-node", "1",
            "--output-dir", engine_args.output_dir, *extra,
        ]
    )  # fmt: skip


def engines_idle(engine) -> bool:
    import httpx

    loads = [httpx.get(f"{url}/v1/loads", timeout=30).json() for url in engine.engine_urls]
    return all(_running(load) == 0 for load in loads)


def _running(load) -> int:
    entries = load if isinstance(load, list) else load.get("loads", [load])
    return sum(int(e.get("num_reqs", e.get("num_running_reqs", 0)) or 0) for e in entries if isinstance(e, dict))


def test_over_sampling_and_the_std_filter_keep_exactly_the_batch(tiny_model, engine_args, engine, data):
    args = rollout_args(
        tiny_model, engine_args, data,
        "--custom-rm-path", f"{__name__}.mixed_in_groups_0_and_5", "--over-sampling-batch-size", "4",
        "--dynamic-sampling-filter-path", "check_reward_nonzero_std",
    )  # fmt: skip
    output = generate_rollout(args, 0, RolloutDataSource(args), engine)
    # Groups 1-3 must all be dropped before the next over-sampling batch (4-7, with group 5) is fetched.
    assert [g[0].group_index for g in output.groups] == [0, 5]
    for group in output.groups:
        assert len(group) == 4 and statistics.pstdev(s.reward for s in group) > 0
        assert all(s.status in (Status.COMPLETED, Status.TRUNCATED) for s in group)
    assert output.metrics["rollout/dynamic_filter/drop_zero_std_0"] >= 3
    assert engines_idle(engine)  # the remainder was aborted, nothing keeps running


@torch.no_grad()
def teacher_forced_log_probs(model, sample) -> list[float]:
    """HF transformers' log-prob of each response token given every token before it (one forward pass)."""
    log_probs = torch.log_softmax(model(torch.tensor([sample.tokens])).logits[0].float(), dim=-1)
    return [float(log_probs[t - 1, sample.tokens[t]]) for t in range(sample.prompt_length, len(sample.tokens))]


# The aborted groups' length limit: room enough that none of them can finish in the time groups 0 and 1 take to be
# sent, prefilled and decoded (with 32, a loaded machine let them finish first).
LONG_RESPONSE = 256


async def short_for_groups_0_and_1(args, sample, sampling_params, engine):
    """slime's default generation, with 4 new tokens at most for groups 0 and 1, sent only once the other groups'
    16 requests are all decoding: groups 0 and 1 finish first, and the rollout that accepts them aborts the other
    groups mid-response. The other groups ignore EOS, so none of them can finish before it."""
    if sample.group_index < 2:
        sampling_params["max_new_tokens"] = 4
        await wait_until_decoding(engine, 16)
    else:
        sampling_params["ignore_eos"] = True
    return await default_generate(args, sample, sampling_params, engine)


async def wait_until_decoding(engine, count: int, timeout: float = 120.0) -> None:
    """Until the engines' running batches hold ``count`` requests (each has its first token by then). ``/v1/loads``
    reads the load each scheduler last published (the shared deployment publishes every decode step)."""
    import httpx

    start = time.monotonic()
    seen = []  # (seconds, [(running, waiting) per engine]) at each change, for the failure message
    async with httpx.AsyncClient(timeout=30) as http:
        while True:
            loads = [(await http.get(f"{url}/v1/loads")).json()["loads"] for url in engine.engine_urls]
            counts = [(load["num_running_reqs"], load["num_waiting_reqs"]) for per_rank in loads for load in per_rank]
            if not seen or seen[-1][1] != counts:
                seen.append((round(time.monotonic() - start, 2), counts))
            running = sum(r for r, _ in counts)
            if running >= count:
                return
            assert time.monotonic() < start + timeout, (
                f"only {running} of {count} requests decoding after {timeout:.0f} s; (running, waiting) seen: {seen}"
            )
            await asyncio.sleep(0.01)


def test_partial_rollout_continues_the_aborted_responses(tiny_model, engine_args, engine, data, hf_model):
    args = rollout_args(
        tiny_model, engine_args, data,
        "--custom-rm-path", f"{__name__}.label_in_response", "--over-sampling-batch-size", "6", "--partial-rollout",
        "--rollout-max-response-len", str(LONG_RESPONSE),
        "--custom-generate-function-path", f"{__name__}.short_for_groups_0_and_1",
    )  # fmt: skip
    data_source = RolloutDataSource(args)
    first = event_loop.run(generate_rollout_async(args, 0, data_source, engine))
    assert sorted(g[0].group_index for g in first.groups) == [0, 1]
    buffered = [g[0].group_index for g in data_source.buffer]
    assert sorted(buffered) == [2, 3, 4, 5]
    # Responses cut by the abort keep their tokens and wait, reset to pending, in the groups served next.
    kept = {
        s.index: (list(s.tokens), s.response_length, list(s.rollout_log_probs))
        for group in data_source.buffer[:2]
        for s in group
        if s.status is Status.PENDING and s.response_length
    }
    statuses = [(s.group_index, s.status.name, s.response_length) for group in data_source.buffer for s in group]
    assert kept, f"no response was cut mid-generation; (group, status, response length) buffered: {statuses}"
    args.over_sampling_batch_size = 2
    second = event_loop.run(generate_rollout_async(args, 1, data_source, engine))
    assert sorted(g[0].group_index for g in second.groups) == sorted(buffered[:2])  # the buffer is served first
    continued = {s.index: s for s in second.samples if s.index in kept}
    assert sorted(continued) == sorted(kept)
    for index, (tokens, length, log_probs) in kept.items():
        sample = continued[index]
        assert sample.tokens[: len(tokens)] == tokens, index  # continued from the kept tokens, not regenerated
        assert sample.response_length > length and len(sample.tokens) == len(tokens) + sample.response_length - length
        assert sample.rollout_log_probs[:length] == log_probs
        # Each response token's log-prob is the model's given everything before it: the new tokens were generated
        # after the kept ones, not after the prompt alone.
        assert sample.rollout_log_probs == pytest.approx(teacher_forced_log_probs(hf_model, sample), abs=1e-3), index
    assert all(s.status in (Status.COMPLETED, Status.TRUNCATED) for s in second.samples)
    # The kept tokens count against the length limit.
    assert max(s.response_length for s in second.samples) <= LONG_RESPONSE
    assert engines_idle(engine)


def test_eval_runs_two_datasets_with_their_own_n_and_length(tiny_model, engine_args, engine, data, tmp_path):
    config = tmp_path / "eval.yaml"
    config.write_text(
        "eval:\n"
        "  defaults: {max_response_len: 4}\n"
        "  datasets:\n"
        f"    - {{name: a, path: {data['eval_a']}, n_samples_per_eval_prompt: 2}}\n"
        f"    - {{name: b, path: {data['eval_b']}, n_samples_per_eval_prompt: 4, max_response_len: 12}}\n"
    )
    args = rollout_args(
        tiny_model, engine_args, data, "--custom-rm-path", f"{__name__}.label_in_response", "--eval-config", str(config)
    )
    results = generate_rollout(args, 0, None, engine, evaluation=True)
    assert (len(results["a"].samples), len(results["b"].samples)) == (6, 8)
    assert max(s.response_length for s in results["a"].samples) <= 4
    assert max(s.response_length for s in results["b"].samples) <= 12
    metrics = eval_metrics(
        {name: r.samples for name, r in results.items()}, {name: r.n_samples_per_prompt for name, r in results.items()}
    )
    for name, result in results.items():
        rewards = [s.reward for s in result.samples]
        assert metrics[f"eval/{name}"] == pytest.approx(sum(rewards) / len(rewards))
        truncated = [s.status is Status.TRUNCATED for s in result.samples]
        assert metrics[f"eval/{name}-truncated_ratio"] == pytest.approx(sum(truncated) / len(truncated))
