"""The default data source: groups, epochs, shuffling, the buffer, resuming, and its registration."""

import json
import logging
import random

import pytest

from slime.data.data_source import RolloutDataSource, epoch_order, pop_first
from slime.errors import ConfigError, DataError
from slime.types import Sample, Status


def prompts_of(groups: list[list[Sample]]) -> list[str]:
    """The prompt of each group (asserting every sample of a group has the same one)."""
    out = []
    for group in groups:
        assert len({s.prompt for s in group}) == 1
        out.append(group[0].prompt)
    return out


@pytest.fixture
def ten_prompts(write_jsonl) -> str:
    return write_jsonl("train.jsonl", [{"input": f"p{i}", "label": str(i)} for i in range(10)])


def test_groups_are_independent_copies_with_running_indices(ten_prompts, make_args):
    source = RolloutDataSource(make_args(prompt_data=ten_prompts, label_key="label", n_samples_per_prompt=3))
    assert len(source) == 10
    groups = source.get_samples(2)
    assert [[(s.group_index, s.index, s.prompt, s.label) for s in g] for g in groups] == [
        [(0, 0, "p0", "0"), (0, 1, "p0", "0"), (0, 2, "p0", "0")],
        [(1, 3, "p1", "1"), (1, 4, "p1", "1"), (1, 5, "p1", "1")],
    ]
    groups[0][0].metadata["seen"] = True
    groups[0][0].tokens.append(7)
    assert groups[0][1].metadata == {} and groups[0][1].tokens == []
    assert source.prompts[0].metadata == {} and source.prompts[0].index is None
    assert [s.group_index for g in source.get_samples(1) for s in g] == [2, 2, 2]


def test_epochs_wrap_without_shuffling(ten_prompts, make_args):
    source = RolloutDataSource(make_args(prompt_data=ten_prompts))
    assert prompts_of(source.get_samples(4)) == ["p0", "p1", "p2", "p3"]
    assert prompts_of(source.get_samples(6)) == ["p4", "p5", "p6", "p7", "p8", "p9"]
    assert (source.epoch_id, source.sample_offset) == (0, 10)  # a new epoch starts when its first prompt is taken
    assert prompts_of(source.get_samples(3)) == ["p0", "p1", "p2"]
    assert (source.epoch_id, source.sample_offset, source.sample_group_index) == (1, 3, 13)
    # More groups than prompts in one call: two whole epochs and a bit.
    assert prompts_of(source.get_samples(25)) == [f"p{i}" for i in [*range(3, 10), *range(10), *range(8)]]
    assert (source.epoch_id, source.sample_offset, source.sample_index) == (3, 8, 38)


def test_shuffling_is_slimes_permutation_seeded_per_epoch(ten_prompts, make_args):
    source = RolloutDataSource(make_args(prompt_data=ten_prompts, rollout_shuffle=True, rollout_seed=7))
    seen = [prompts_of(source.get_samples(10)) for _ in range(3)]
    for epoch, order in enumerate(seen):
        expected = list(range(10))
        random.seed(7 + epoch)  # what slime's Dataset.shuffle does
        random.shuffle(expected)
        assert order == [f"p{i}" for i in expected]
        assert sorted(order) == sorted(f"p{i}" for i in range(10))
    assert seen[0] != seen[1] != seen[2]
    again = RolloutDataSource(make_args(prompt_data=ten_prompts, rollout_shuffle=True, rollout_seed=7))
    assert [prompts_of(again.get_samples(10)) for _ in range(3)] == seen
    other_seed = RolloutDataSource(make_args(prompt_data=ten_prompts, rollout_shuffle=True, rollout_seed=8))
    assert prompts_of(other_seed.get_samples(10)) != seen[0]


def test_epoch_order():
    assert epoch_order(5, 42, 0) == epoch_order(5, 42, 0)
    assert sorted(epoch_order(5, 42, 3)) == [0, 1, 2, 3, 4]
    assert epoch_order(0, 42, 0) == []


# --- the buffer -----------------------------------------------------------------------------------------------


def test_buffered_groups_come_before_fresh_prompts(ten_prompts, make_args):
    source = RolloutDataSource(make_args(prompt_data=ten_prompts, n_samples_per_prompt=2))
    first, second, third = source.get_samples(3)
    second[0].status = Status.ABORTED
    source.add_samples([second, third])
    assert source.get_samples(1) == [second]
    taken = source.get_samples(3)
    assert taken[0] is third
    assert prompts_of(taken) == ["p2", "p3", "p4"]
    assert [s.group_index for s in taken[1]] == [3, 3]  # fresh groups keep counting after the buffered ones
    assert source.buffer == []
    assert source.get_samples(0) == []


def test_add_samples_checks_group_sizes(ten_prompts, make_args):
    source = RolloutDataSource(make_args(prompt_data=ten_prompts, n_samples_per_prompt=2))
    good = source.get_samples(1)[0]
    with pytest.raises(ValueError) as info:
        source.add_samples([good, good[:1]])
    assert str(info.value) == "add_samples: group 1 has 1 samples; each group needs --n-samples-per-prompt 2"
    with pytest.raises(TypeError) as info:
        source.add_samples([good[0]])
    assert str(info.value) == "add_samples: group 0 is a Sample, not a list of Sample"
    assert source.buffer == []  # nothing is added when any group is wrong
    source.add_samples([])
    assert source.buffer == []


def test_pop_first():
    buffer = [[Sample(index=i)] for i in range(3)]
    assert pop_first(None, None, buffer, 2) == [[Sample(index=0)], [Sample(index=1)]]
    assert pop_first(None, None, buffer, 5) == [[Sample(index=2)]]
    assert buffer == []


def test_a_custom_buffer_filter(ten_prompts, make_args, tmp_path, monkeypatch):
    (tmp_path / "my_buffer_filter.py").write_text(
        "def pop_last(args, rollout_id, buffer, num_groups):\n"
        "    taken = buffer[-num_groups:][::-1]\n"
        "    del buffer[-num_groups:]\n"
        "    return taken\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    source = RolloutDataSource(make_args(prompt_data=ten_prompts, buffer_filter_path="my_buffer_filter.pop_last"))
    groups = source.get_samples(3)
    source.add_samples(groups)
    assert prompts_of(source.get_samples(2)) == ["p2", "p1"]


# --- resume ---------------------------------------------------------------------------------------------------


def dicts(groups: list[list[Sample]]) -> list[list[dict]]:
    return [[s.to_dict() for s in g] for g in groups]


@pytest.mark.parametrize("taken", [0, 4, 10, 13])
def test_a_resumed_source_continues_with_the_next_prompt(ten_prompts, make_args, tmp_path, taken):
    args = make_args(prompt_data=ten_prompts, rollout_shuffle=True, n_samples_per_prompt=2, label_key="label")
    running = RolloutDataSource(args)
    running.get_samples(taken)
    partial = running.get_samples(2)
    partial[0][0].response = "half an ans"
    partial[0][0].status = Status.ABORTED
    partial[0][0].metadata["tools"] = [{"name": "calc"}]
    running.add_samples(partial)
    running.metadata["note"] = {"rollouts": 3}
    running.save(tmp_path / "ckpt" / "rollout" / "data_source.json")

    resumed = RolloutDataSource(args)
    resumed.load(tmp_path / "ckpt" / "rollout" / "data_source.json")
    assert resumed.metadata == {"note": {"rollouts": 3}}
    assert dicts(resumed.get_samples(25)) == dicts(running.get_samples(25))
    assert resumed.state_dict() == running.state_dict()


def test_the_state_is_plain_json(ten_prompts, make_args, tmp_path):
    source = RolloutDataSource(make_args(prompt_data=ten_prompts))
    source.get_samples(3)
    source.add_samples(source.get_samples(1))
    source.save(tmp_path / "ckpt" / "state.json")
    state = json.loads((tmp_path / "ckpt" / "state.json").read_text())
    assert {k: v for k, v in state.items() if k != "buffer"} == {
        "epoch_id": 0,
        "sample_offset": 4,
        "sample_group_index": 4,
        "sample_index": 4,
        "num_prompts": 10,
        "metadata": {},
    }
    assert state["buffer"] == [[Sample(group_index=3, index=3, prompt="p3").to_dict()]]
    assert [p.name for p in (tmp_path / "ckpt").iterdir()] == ["state.json"]  # no temporary file left behind


def test_state_dict_round_trip_without_files(ten_prompts, make_args):
    source = RolloutDataSource(make_args(prompt_data=ten_prompts, rollout_shuffle=True))
    source.get_samples(12)
    state = source.state_dict()
    other = RolloutDataSource(make_args(prompt_data=ten_prompts, rollout_shuffle=True))
    other.load_state_dict(state)
    assert (other.epoch_id, other.sample_offset) == (1, 2)
    assert dicts(other.get_samples(5)) == dicts(source.get_samples(5))


def test_metadata_that_is_not_json_cannot_be_saved(ten_prompts, make_args, tmp_path):
    source = RolloutDataSource(make_args(prompt_data=ten_prompts))
    source.metadata["when"] = {1, 2}
    with pytest.raises(DataError) as info:
        source.save(tmp_path / "state.json")
    assert str(info.value) == (
        f"cannot save the data source state to {tmp_path / 'state.json'}: "
        "Object of type set is not JSON serializable (metadata must be JSON)"
    )
    assert not (tmp_path / "state.json").exists()


def load_error(source: RolloutDataSource, path) -> str:
    with pytest.raises(DataError) as info:
        source.load(path)
    return str(info.value)


def test_bad_state_files(ten_prompts, make_args, tmp_path):
    source = RolloutDataSource(make_args(prompt_data=ten_prompts, n_samples_per_prompt=2))
    path = tmp_path / "state.json"
    assert load_error(source, path) == f"{path}: no such data source state file"
    path.write_text("{oops")
    assert load_error(source, path) == (
        f"{path}: not a data source state (invalid JSON: Expecting property name enclosed in double quotes: "
        "line 1 column 2 (char 1))"
    )
    path.write_text("[]")
    assert load_error(source, path) == f"{path}: expected a JSON object, got list"
    path.write_text('{"epoch_id": 0, "sample_index": 0}')
    assert load_error(source, path) == f"{path}: missing keys sample_offset, sample_group_index"
    path.write_text('{"epoch_id": 0, "sample_offset": -1, "sample_group_index": 0, "sample_index": 0}')
    assert load_error(source, path) == f"{path}: 'sample_offset' must be a non-negative integer, got -1"
    position = {"epoch_id": 0, "sample_offset": 1, "sample_group_index": 1, "sample_index": 2}
    path.write_text(json.dumps({**position, "buffer": [[Sample().to_dict()]]}))
    assert load_error(source, path) == f"{path}: buffer group 0 has 1 samples, but --n-samples-per-prompt is 2"
    path.write_text(json.dumps({**position, "buffer": [[{"prompt": "x", "colour": "red"}] * 2]}))
    assert load_error(source, path) == f"{path}: buffer group 0: unknown Sample fields: colour"
    assert (source.epoch_id, source.sample_offset, source.buffer) == (0, 0, [])  # a failed load changes nothing


def test_resuming_on_changed_data_warns(ten_prompts, write_jsonl, make_args, caplog):
    source = RolloutDataSource(make_args(prompt_data=ten_prompts))
    source.get_samples(9)
    state = source.state_dict()
    smaller = RolloutDataSource(make_args(prompt_data=ten_prompts + "@[:5]"))
    with caplog.at_level(logging.WARNING, logger="slime.data.data_source"):
        smaller.load_state_dict(state)
    assert [r.getMessage() for r in caplog.records] == [
        "data source state was saved with 10 prompts per epoch, but the data now has 5: the position may not match"
    ]
    assert prompts_of(smaller.get_samples(2)) == ["p0", "p1"]  # past the end: the next epoch starts
    assert smaller.epoch_id == 1


# --- flags ----------------------------------------------------------------------------------------------------


def test_the_public_formats_through_flags(dapo_jsonl, gsm8k_parquet, tokenizer_dir, make_args):
    dapo = RolloutDataSource(
        make_args(
            prompt_data=dapo_jsonl,
            input_key="prompt",
            label_key="label",
            apply_chat_template=True,
            hf_checkpoint=tokenizer_dir,
            n_samples_per_prompt=4,
        )
    )
    [group] = dapo.get_samples(1)
    assert len(group) == 4 and group[0].label == "34"
    assert group[0].prompt.startswith("<|im_start|>user\nSolve the following math problem step by step.")
    gsm8k = RolloutDataSource(
        make_args(
            prompt_data=gsm8k_parquet,
            input_key="messages",
            label_key="label",
            apply_chat_template=True,
            apply_chat_template_kwargs='{"unused": true}',
            hf_checkpoint=tokenizer_dir,
        )
    )
    assert [g[0].label for g in gsm8k.get_samples(2)] == ["72", "10"]


def test_max_prompt_len_through_flags(aime_jsonl, aime_rows, tokenizer, tokenizer_dir, make_args):
    lengths = [len(tokenizer.encode(row["prompt"], add_special_tokens=False)) for row in aime_rows]
    assert lengths[1] < lengths[0]
    args = make_args(
        prompt_data=aime_jsonl, input_key="prompt", rollout_max_prompt_len=lengths[1], hf_checkpoint=tokenizer_dir
    )
    source = RolloutDataSource(args)
    assert len(source) == 1
    assert prompts_of(source.get_samples(1)) == [aime_rows[1]["prompt"]]


def test_flag_errors(aime_jsonl, make_args):
    with pytest.raises(ConfigError) as info:
        RolloutDataSource(make_args())
    assert str(info.value) == "the default data source needs --prompt-data"
    with pytest.raises(ConfigError) as info:
        RolloutDataSource(make_args(prompt_data=aime_jsonl, input_key="prompt", apply_chat_template=True))
    assert str(info.value) == "--apply-chat-template needs a tokenizer: set --hf-checkpoint"
    with pytest.raises(ConfigError) as info:
        RolloutDataSource(make_args(prompt_data=aime_jsonl, input_key="prompt", rollout_max_prompt_len=5))
    assert str(info.value) == "--rollout-max-prompt-len needs a tokenizer: set --hf-checkpoint"
    with pytest.raises(ConfigError) as info:
        RolloutDataSource(make_args(prompt_data=aime_jsonl, input_key="prompt", apply_chat_template_kwargs="{x"))
    assert str(info.value) == (
        "--apply-chat-template-kwargs: invalid JSON (Expecting property name enclosed in double quotes)"
    )


def test_a_tokenizer_without_template_through_flags(aime_jsonl, plain_tokenizer_dir, make_args):
    args = make_args(
        prompt_data=aime_jsonl, input_key="prompt", apply_chat_template=True, hf_checkpoint=plain_tokenizer_dir
    )
    with pytest.raises(DataError) as info:
        RolloutDataSource(args)
    assert str(info.value) == (
        f"--apply-chat-template: the tokenizer in '{plain_tokenizer_dir}' (from --hf-checkpoint) has no chat template"
    )


# --- registration ---------------------------------------------------------------------------------------------


def test_the_hook_registers_the_default_data_source():
    from slime.data.plugin import slime_register_data_sources

    registered = []
    slime_register_data_sources(register=lambda name, obj: registered.append((name, obj)))
    assert registered == [("default", RolloutDataSource)]


def test_default_is_found_through_the_plugin_manager():
    from slime import default_plugins
    from slime.plugins import registry, resolve

    assert hasattr(default_plugins, "slime_register_data_sources")
    assert registry("data_sources").entries["default"].plugin.name == "core"
    assert resolve("data_sources", "default") is RolloutDataSource
