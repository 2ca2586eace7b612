"""The default rollout and eval functions, generating for real with a tiny HF model (slime_testkit.hf_engine.HFEngine)."""

import statistics

import pytest

from slime.config.arguments import parse_args
from slime.data.data_source import RolloutDataSource
from slime.rollout import event_loop
from slime.rollout.default import generate_rollout, generate_rollout_async
from slime.types import Sample, Status
from slime_testkit.hf_engine import HFEngine


async def mixed_in_every_third_group(args, sample: Sample) -> float:
    """Groups 0, 3, 6, ... get rewards 1/0 (kept by the std filter); every other group is all 0 (dropped)."""
    return float(sample.group_index % 3 == 0 and sample.index % 2 == 0)


async def always_one(args, sample: Sample) -> float:
    return 1.0


def make_args(model, data, *extra):
    return parse_args(
        [
            "--hf-checkpoint", str(model), "--prompt-data", data["train"], "--input-key", "prompt",
            "--label-key", "label", "--rollout-batch-size", "2", "--n-samples-per-prompt", "4",
            "--rollout-max-response-len", "6", "--rollout-temperature", "1.0", *extra,
        ]
    )  # fmt: skip


def test_plain_rollout_returns_rollout_batch_size_groups(tiny_model, arithmetic_data):
    args = make_args(tiny_model, arithmetic_data, "--custom-rm-path", f"{__name__}.always_one")
    engine = HFEngine.from_model(tiny_model, seed=1)
    output = generate_rollout(args, 0, RolloutDataSource(args), engine)
    assert [len(group) for group in output.groups] == [4, 4]
    assert [g[0].group_index for g in output.groups] == [0, 1]
    for sample in output.samples:
        assert sample.status in (Status.COMPLETED, Status.TRUNCATED)
        assert 1 <= sample.response_length <= 6
        assert len(sample.loss_mask) == len(sample.rollout_log_probs) == sample.response_length
        assert all(lp <= 0 for lp in sample.rollout_log_probs)
        assert sample.reward == 1.0 and sample.rollout_id == 0
    assert output.metrics == {}


def test_dynamic_sampling_keeps_exactly_the_batch_and_counts_drops(tiny_model, arithmetic_data):
    args = make_args(
        tiny_model, arithmetic_data,
        "--custom-rm-path", f"{__name__}.mixed_in_every_third_group",
        "--over-sampling-batch-size", "3", "--dynamic-sampling-filter-path", "check_reward_nonzero_std",
    )  # fmt: skip
    engine = HFEngine.from_model(tiny_model, seed=1)
    output = generate_rollout(args, 0, RolloutDataSource(args), engine)
    assert [g[0].group_index for g in output.groups] == [0, 3]
    for group in output.groups:
        assert statistics.pstdev(s.reward for s in group) > 0
    dropped = output.metrics["rollout/dynamic_filter/drop_zero_std_0"]
    assert dropped >= 2  # groups 1 and 2 finish before group 3 can be accepted


def test_partial_rollout_hands_aborted_groups_to_the_next_rollout(tiny_model, arithmetic_data):
    args = make_args(
        tiny_model, arithmetic_data,
        "--custom-rm-path", f"{__name__}.always_one",
        "--over-sampling-batch-size", "4", "--partial-rollout", "--rollout-max-response-len", "16",
    )  # fmt: skip
    data_source = RolloutDataSource(args)
    engine = HFEngine.from_model(tiny_model, seed=1, token_delay=0.01)
    first = event_loop.run(generate_rollout_async(args, 0, data_source, engine))
    accepted = [g[0].group_index for g in first.groups]
    buffered = [group[0].group_index for group in data_source.buffer]
    # All four were submitted in one over-sampling batch; the two not accepted when the target was reached wait.
    assert len(accepted) == 2 and sorted(accepted + buffered) == [0, 1, 2, 3]
    partial = {s.index: list(s.tokens) for group in data_source.buffer for s in group if s.response_length}
    args.over_sampling_batch_size = 2  # take just the buffered groups, no fresh ones to race them
    second = event_loop.run(generate_rollout_async(args, 1, data_source, engine))
    assert sorted(g[0].group_index for g in second.groups) == sorted(buffered)
    for sample in second.samples:
        if sample.index in partial:  # continued from its partial response, not regenerated
            assert sample.tokens[: len(partial[sample.index])] == partial[sample.index]
        assert sample.status in (Status.COMPLETED, Status.TRUNCATED)


def test_abort_returns_every_request_and_the_engine_takes_new_work(tiny_model):
    engine = HFEngine.from_model(tiny_model, seed=1, token_delay=0.02)
    params = {"temperature": 1.0, "max_new_tokens": 50}

    async def run():
        import asyncio

        samples = [Sample(index=i, tokens=[5, 6, 7]) for i in range(3)]
        tasks = [asyncio.create_task(engine.generate(s, params)) for s in samples]
        await asyncio.sleep(0.2)
        await engine.abort()
        done = await asyncio.gather(*tasks)
        fresh = await engine.generate(Sample(index=9, tokens=[5, 6, 7]), {"temperature": 1.0, "max_new_tokens": 2})
        return done, fresh

    done, fresh = event_loop.run(run())
    assert {s.status for s in done} == {Status.ABORTED}
    assert fresh.status in (Status.COMPLETED, Status.TRUNCATED) and fresh.response_length >= 1


@pytest.mark.parametrize("bad", ["--rollout-max-response-len"])
def test_rollout_needs_a_response_length(tiny_model, arithmetic_data, bad):
    from slime.errors import ConfigError

    args = parse_args(
        ["--hf-checkpoint", str(tiny_model), "--prompt-data", arithmetic_data["train"], "--input-key", "prompt",
         "--rollout-batch-size", "1", "--actor-num-gpus-per-node", "1", "--custom-rm-path", f"{__name__}.always_one"]
    )  # fmt: skip
    with pytest.raises(ConfigError, match="--rollout-max-response-len is required to generate"):
        generate_rollout(args, 0, RolloutDataSource(args), HFEngine.from_model(tiny_model))


def test_eval_runs_each_dataset_with_its_own_n_and_length(tiny_model, arithmetic_data, tmp_path):
    config = tmp_path / "eval.yaml"
    config.write_text(
        "eval:\n"
        "  defaults: {max_response_len: 3, temperature: 0.8}\n"
        "  datasets:\n"
        f"    - {{name: short, path: {arithmetic_data['eval_a']}, n_samples_per_eval_prompt: 2}}\n"
        f"    - {{name: long, path: {arithmetic_data['eval_b']}, n_samples_per_eval_prompt: 3, max_response_len: 7}}\n"
    )
    args = make_args(
        tiny_model, arithmetic_data, "--custom-rm-path", f"{__name__}.always_one", "--eval-config", str(config)
    )
    results = generate_rollout(args, 0, None, HFEngine.from_model(tiny_model, seed=2), evaluation=True)
    assert set(results) == {"short", "long"}
    short, long = results["short"], results["long"]
    assert (short.n_samples_per_prompt, len(short.samples)) == (2, 3 * 2)
    assert (long.n_samples_per_prompt, len(long.samples)) == (3, 2 * 3)
    assert max(s.response_length for s in short.samples) <= 3
    assert max(s.response_length for s in long.samples) <= 7
    assert max(s.response_length for s in long.samples) > 3  # its own length, not the default's
    assert [s.group_index for s in long.samples] == [0, 0, 0, 1, 1, 1]
    assert all(s.reward == 1.0 for s in short.samples + long.samples)


@pytest.mark.parametrize(
    "text,message",
    [
        ("eval: {datasets: []}\n", "expected 'eval: {defaults: {...}, datasets: [...]}' with at least one dataset"),
        ("eval: {datasets: [{name: a}]}\n", "eval.datasets[0]: every dataset needs 'path'"),
        ("eval: {datasets: [{name: a, path: x.jsonl, temprature: 1}]}\n", "eval.datasets[0]: unknown key 'temprature'"),
        (
            "eval: {datasets: [{name: a, path: x.jsonl}, {name: a, path: y.jsonl}]}\n",
            "eval dataset name 'a' is used twice",
        ),
    ],
)
def test_eval_config_errors_name_the_file_and_entry(tiny_model, arithmetic_data, tmp_path, text, message):
    from slime.errors import ConfigError
    from slime.eval.datasets import eval_dataset_configs

    config = tmp_path / "eval.yaml"
    config.write_text(text)
    args = make_args(tiny_model, arithmetic_data, "--eval-config", str(config))
    with pytest.raises(ConfigError) as err:
        eval_dataset_configs(args)
    assert str(err.value).startswith(f"{config}: {message}")


def test_eval_settings_resolve_dataset_then_defaults_then_eval_flags_then_rollout_flags(
    tiny_model, arithmetic_data, tmp_path
):
    from slime.eval.datasets import eval_dataset_configs

    config = tmp_path / "eval.yaml"
    config.write_text(
        "eval:\n"
        "  defaults: {top_p: 0.7}\n"
        "  datasets:\n"
        "    - {name: a, path: a.jsonl, top_p: 0.5, n_samples_per_eval_prompt: 4}\n"
        "    - {name: b, path: b.jsonl}\n"
    )
    args = make_args(
        tiny_model, arithmetic_data, "--eval-config", str(config), "--eval-temperature", "0.6",
        "--rollout-top-k", "20", "--n-samples-per-eval-prompt", "2",
    )  # fmt: skip
    a, b = eval_dataset_configs(args)
    assert (a.top_p, b.top_p) == (0.5, 0.7)  # dataset, then defaults
    assert a.temperature == b.temperature == 0.6  # --eval-temperature over --rollout-temperature
    assert a.top_k == b.top_k == 20  # no --eval-top-k: --rollout-top-k
    assert (a.n_samples_per_eval_prompt, b.n_samples_per_eval_prompt) == (4, 2)
    assert a.max_response_len == 6  # --rollout-max-response-len
