"""The default rollout and eval functions, generating for real with a tiny HF model (slime_testkit.hf_engine.HFEngine)."""

import asyncio
import statistics
import time

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


def test_a_filter_falling_back_keeps_rejected_groups_rather_than_sample_again(tiny_model, arithmetic_data):
    # slime's check_reward_nonzero_std_with_fallback, by slime's path: every group has one reward (all dropped by the
    # plain filter), but with 3 groups over-sampled for a batch of 2, dropping the second rejected one would leave
    # too few to fill the batch, so it and the third are kept and no second round is sampled.
    args = make_args(
        tiny_model, arithmetic_data,
        "--custom-rm-path", f"{__name__}.always_one", "--over-sampling-batch-size", "3",
        "--dynamic-sampling-filter-path",
        "slime.rollout.filter_hub.dynamic_sampling_filters.check_reward_nonzero_std_with_fallback",
    )  # fmt: skip
    data_source = RolloutDataSource(args)
    output = generate_rollout(args, 0, data_source, HFEngine.from_model(tiny_model, seed=1))
    assert len(output.groups) == 2
    assert output.metrics == {"rollout/dynamic_filter/drop_zero_std_1": 1.0}
    assert data_source.sample_offset == 3  # one round of 3 prompts, not two


class RecordingEngine(HFEngine):
    """HFEngine (one request at a time) that records what slime asks of it: each request's sample index and the
    tokens it starts from, each returned sample's status, and the aborts. With ``abort_after_tokens`` an abort lets
    the request being generated produce that many more tokens first, so that it lands mid-response."""

    def _load(self, *args, **kwargs) -> None:
        super()._load(*args, **kwargs)
        self.started: list[tuple[int, list[int]]] = []
        self.returned: list[tuple[int, Status]] = []
        self.aborts = 0
        self.abort_after_tokens = 0
        self.sampled = 0  # tokens sampled so far, all requests together

    async def generate(self, sample, params):
        self.started.append((sample.index, list(sample.tokens)))
        result = await super().generate(sample, params)
        self.returned.append((result.index, result.status))
        return result

    def _sample(self, logits, params):
        self.sampled += 1
        return super()._sample(logits, params)

    async def abort(self) -> None:
        self.aborts += 1
        target, deadline = self.sampled + self.abort_after_tokens, time.monotonic() + 60
        while self.sampled < target:
            assert time.monotonic() < deadline, "abort(): no request was being generated"
            await asyncio.sleep(0.005)
        await super().abort()


def test_partial_rollout_continues_a_response_aborted_mid_generation(tiny_model, arithmetic_data):
    args = make_args(
        tiny_model, arithmetic_data,
        "--custom-rm-path", f"{__name__}.always_one", "--rollout-batch-size", "1", "--n-samples-per-prompt", "2",
        "--over-sampling-batch-size", "2", "--partial-rollout", "--rollout-max-response-len", "24",
    )  # fmt: skip
    data_source = RolloutDataSource(args)
    # The engine generates one request at a time: when the first group is accepted, the request it is generating is
    # a fresh one of the other group, and the rollout's abort lands once that one has 3 tokens.
    engine = RecordingEngine.from_model(tiny_model, seed=1, token_delay=0.02)
    engine.abort_after_tokens = 3
    first = event_loop.run(generate_rollout_async(args, 0, data_source, engine))
    assert engine.aborts == 1
    (accepted,) = first.groups
    (buffered,) = data_source.buffer  # the group cut short waits for the next rollout
    assert sorted([accepted[0].group_index, buffered[0].group_index]) == [0, 1]
    partial = [s for s in buffered if s.response_length and s.status is Status.PENDING]
    assert len(partial) == 1 and partial[0].response_length >= 3 and partial[0].reward is None
    index = partial[0].index
    kept_tokens, kept_length = list(partial[0].tokens), partial[0].response_length
    kept_log_probs, kept_text = list(partial[0].rollout_log_probs), partial[0].response
    finished = [s.index for s in buffered if s.status in (Status.COMPLETED, Status.TRUNCATED)]

    engine.started.clear()
    engine.abort_after_tokens = 0
    args.over_sampling_batch_size = 1  # just the buffered group, no fresh one to race it
    second = event_loop.run(generate_rollout_async(args, 1, data_source, engine))
    (group,) = second.groups
    assert group[0].group_index == buffered[0].group_index and data_source.buffer == []
    # The engine was asked to continue from the prompt and the kept response, not from the prompt alone.
    assert (index, kept_tokens) in engine.started
    (sample,) = [s for s in group if s.index == index]
    assert sample.tokens[: len(kept_tokens)] == kept_tokens and sample.response_length > kept_length
    assert sample.rollout_log_probs[:kept_length] == kept_log_probs and sample.response.startswith(kept_text)
    assert sample.status in (Status.COMPLETED, Status.TRUNCATED) and sample.reward == 1.0
    assert not [i for i, _ in engine.started if i in finished]  # a sample that had finished is not generated again


def test_the_rollout_aborts_what_still_runs_once_the_batch_is_accepted(tiny_model, arithmetic_data):
    """Without --partial-rollout: the groups still generating are aborted, waited for and dropped; the next rollout
    gets fresh prompts and the engine serves them."""
    args = make_args(
        tiny_model, arithmetic_data,
        "--custom-rm-path", f"{__name__}.always_one", "--rollout-batch-size", "1", "--n-samples-per-prompt", "2",
        "--over-sampling-batch-size", "3", "--rollout-max-response-len", "24",
    )  # fmt: skip
    data_source = RolloutDataSource(args)
    engine = RecordingEngine.from_model(tiny_model, seed=1, token_delay=0.02)
    output = generate_rollout(args, 0, data_source, engine)
    assert engine.aborts == 1
    # Every one of the 6 requests (3 groups x 2) came back before the rollout returned; those still running were cut.
    assert sorted(i for i, _ in engine.returned) == list(range(6))
    assert Status.ABORTED in {status for _, status in engine.returned}
    (group,) = output.groups
    assert all(s.status in (Status.COMPLETED, Status.TRUNCATED) and s.reward == 1.0 for s in group)
    assert data_source.buffer == []  # the aborted groups are dropped

    engine.returned.clear()
    (fresh,) = generate_rollout(args, 1, data_source, engine).groups
    assert fresh[0].group_index in (3, 4, 5)  # new prompts, not the aborted ones
    assert all(s.status in (Status.COMPLETED, Status.TRUNCATED) and s.response_length >= 1 for s in fresh)
    assert engine.aborts == 2 and sorted(i for i, _ in engine.returned) == list(range(6, 12))


class GroupRequestEngine(HFEngine):
    """An engine that takes a prompt's group as one request (``RolloutEngine.generate_group``), recording them."""

    group_requests: list[list[int]]

    async def generate_group(self, samples: list[Sample], sampling_params) -> list[Sample]:
        self.group_requests.append([s.index for s in samples])
        assert all(s.tokens == samples[0].tokens for s in samples)
        return list(await asyncio.gather(*(HFEngine.generate(self, s, sampling_params) for s in samples)))


async def default_generate_by_path(args, sample, sampling_params, engine):
    from slime.rollout.generate import default_generate

    return await default_generate(args, sample, sampling_params, engine)


@pytest.mark.parametrize(
    ("extra", "one_request"),
    [
        ((), True),
        (("--rollout-per-sample-requests",), False),
        (("--custom-generate-function-path", f"{__name__}.default_generate_by_path"), False),
    ],
)
def test_a_fresh_group_goes_to_the_engine_as_one_request_unless_told_otherwise(
    tiny_model, arithmetic_data, extra, one_request
):
    args = make_args(tiny_model, arithmetic_data, "--custom-rm-path", f"{__name__}.always_one", *extra)
    engine = GroupRequestEngine.from_model(tiny_model, seed=1)
    engine.group_requests = []
    output = generate_rollout(args, 0, RolloutDataSource(args), engine)
    expected = [[g[0].index + i for i in range(4)] for g in output.groups] if one_request else []
    assert sorted(engine.group_requests) == expected
    assert engine.requests == 8  # either way, one generation per sample
    for group in output.groups:
        assert len({tuple(s.tokens[: s.prompt_length]) for s in group}) == 1
        assert all(s.reward == 1.0 and s.response_length >= 1 for s in group)


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
        "    - {name: a, path: a.jsonl, top_p: 0.5, n_samples_per_eval_prompt: 4, tool_key: functions}\n"
        "    - {name: b, path: b.jsonl}\n"
    )
    args = make_args(
        tiny_model, arithmetic_data, "--eval-config", str(config), "--eval-temperature", "0.6",
        "--rollout-top-k", "20", "--n-samples-per-eval-prompt", "2", "--eval-tool-key", "eval_tools",
    )  # fmt: skip
    a, b = eval_dataset_configs(args)
    assert (a.top_p, b.top_p) == (0.5, 0.7)  # dataset, then defaults
    assert a.temperature == b.temperature == 0.6  # --eval-temperature over --rollout-temperature
    assert a.top_k == b.top_k == 20  # no --eval-top-k: --rollout-top-k
    assert (a.n_samples_per_eval_prompt, b.n_samples_per_eval_prompt) == (4, 2)
    assert a.max_response_len == 6  # --rollout-max-response-len
    assert (a.tool_key, b.tool_key) == ("functions", "eval_tools")  # --eval-tool-key over --tool-key
