"""The fully asynchronous rollout (slime's ``fully_async``): a pool of groups kept in flight across rollouts, with a
staleness bound, generating for real with a tiny HF model (slime_testkit.hf_engine.HFEngine)."""

import pytest

from slime.config.arguments import parse_args
from slime.data.data_source import RolloutDataSource
from slime.plugins import resolve
from slime.rollout import fully_async_rollout
from slime.rollout.fully_async_rollout import generate_rollout_fully_async
from slime.types import Sample
from slime_testkit.hf_engine import HFEngine


async def always_one(args, sample: Sample) -> float:
    return 1.0


def make_args(model, data, *extra):
    return parse_args(
        [
            "--hf-checkpoint", str(model), "--prompt-data", data["train"], "--input-key", "prompt",
            "--label-key", "label", "--rollout-batch-size", "2", "--n-samples-per-prompt", "2",
            "--rollout-max-response-len", "4", "--custom-rm-path", f"{__name__}.always_one",
            "--rollout-function-path", "fully_async", *extra,
        ]
    )  # fmt: skip


@pytest.fixture(autouse=True)
def fresh_pool():
    fully_async_rollout._pool = None
    yield
    fully_async_rollout._pool = None


def test_default_bound_is_one_more_than_the_loops_order() -> None:
    base = ["--rollout-batch-size", "1"]
    assert parse_args(base).max_staleness == 0
    assert parse_args([*base, "--async"]).max_staleness == 1
    assert parse_args([*base, "--rollout-function-path", "fully_async"]).max_staleness == 1
    slime_path = "slime.rollout.fully_async_rollout.generate_rollout_fully_async"
    assert parse_args([*base, "--rollout-function-path", slime_path, "--async"]).max_staleness == 2
    assert parse_args([*base, "--max-staleness", "3"]).max_staleness == 3
    assert resolve("rollout_functions", "fully_async") is generate_rollout_fully_async


def test_the_pool_generates_the_next_rollout_before_it_is_asked(tiny_model, arithmetic_data):
    args = make_args(tiny_model, arithmetic_data)
    engine = HFEngine.from_model(tiny_model, seed=1)
    source = RolloutDataSource(args)
    first = generate_rollout_fully_async(args, 0, source, engine)
    assert [g[0].group_index for g in first.groups] == [0, 1]
    assert all(s.rollout_id == 0 and s.reward == 1.0 for s in first.samples)
    # The call returned with the next rollout's groups already in flight: their prompts are taken.
    assert first.metrics["rollout/fully_async/in_flight"] == 2
    assert engine.requests >= 4 + 2  # this rollout's four samples, and the next ones started
    second = generate_rollout_fully_async(args, 1, source, engine)
    assert [g[0].group_index for g in second.groups] == [2, 3]
    # Started on version "0" and trained as rollout 1: one version behind, within the default bound of 1.
    assert second.metrics["rollout/fully_async/staleness_max"] == 1
    assert second.metrics["rollout/fully_async/dropped_stale"] == 0


def test_groups_older_than_the_bound_are_dropped(tiny_model, arithmetic_data):
    args = make_args(tiny_model, arithmetic_data, "--max-staleness", "1")
    engine = HFEngine.from_model(tiny_model, seed=1)
    source = RolloutDataSource(args)
    generate_rollout_fully_async(args, 0, source, engine)  # leaves groups 2 and 3 in flight, started on version 0
    engine.weight_version = "3"  # three updates later
    output = generate_rollout_fully_async(args, 3, source, engine)
    assert output.metrics["rollout/fully_async/dropped_stale"] == 2  # 3 versions behind > 1
    assert [g[0].group_index for g in output.groups] == [4, 5]  # started on version 3
    assert output.metrics["rollout/fully_async/staleness_max"] == 0


def test_negative_bound_is_refused() -> None:
    from slime.errors import ConfigError

    with pytest.raises(ConfigError, match="--max-staleness must be >= 0, got -1"):
        parse_args(["--rollout-batch-size", "1", "--max-staleness", "-1"])


def test_evaluation_runs_the_default_eval_and_leaves_the_pool_alone(tiny_model, arithmetic_data):
    args = make_args(tiny_model, arithmetic_data, "--eval-prompt-data", "heldout", arithmetic_data["train"])
    engine = HFEngine.from_model(tiny_model, seed=1)
    output = generate_rollout_fully_async(args, 0, RolloutDataSource(args), engine, evaluation=True)
    assert list(output) == ["heldout"]  # the default eval: results by dataset name
    assert fully_async_rollout._pool is None  # no train rollout started
