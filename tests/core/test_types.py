import base64
import json

import numpy as np
import pytest

from slime.types import Sample, Status, routed_experts_of


def test_append_response_tokens_keeps_tokens_mask_and_log_probs_aligned():
    sample = Sample(tokens=[1, 2, 3])
    sample.append_response_tokens(tokens=[10, 11], log_probs=[-0.1, -0.2], text="ab")
    sample.append_response_tokens(tokens=[12, 13, 14], trainable=False, text="<tool>")
    sample.append_response_tokens(tokens=[15], log_probs=[-0.3], text="c")

    assert sample.tokens == [1, 2, 3, 10, 11, 12, 13, 14, 15]
    assert sample.response_length == 6
    assert sample.prompt_length == 3
    assert sample.loss_mask == [1, 1, 0, 0, 0, 1]
    assert sample.rollout_log_probs == [-0.1, -0.2, 0.0, 0.0, 0.0, -0.3]
    assert sample.effective_response_length == 3
    assert sample.response == "ab<tool>c"


def test_trainable_tokens_need_one_log_prob_each():
    sample = Sample(tokens=[1])
    with pytest.raises(ValueError, match="2 trainable tokens need as many log-probs, got 1"):
        sample.append_response_tokens(tokens=[5, 6], log_probs=[-1.0])
    with pytest.raises(ValueError, match="got none"):
        sample.append_response_tokens(tokens=[5])
    assert sample.tokens == [1] and sample.response_length == 0  # a rejected append changes nothing


@pytest.mark.parametrize(
    "reason,status", [("stop", Status.COMPLETED), ("length", Status.TRUNCATED), ("abort", Status.ABORTED)]
)
def test_finish_reason_sets_status(reason, status):
    sample = Sample()
    sample.set_finish_reason(reason)
    assert sample.status is status


def test_unknown_finish_reason_is_an_error():
    with pytest.raises(ValueError, match="unknown finish reason 'exploded'"):
        Sample().set_finish_reason("exploded")


def test_to_dict_from_dict_round_trip():
    sample = Sample(
        group_index=3,
        index=7,
        prompt=[{"role": "user", "content": "1+1?"}],
        tokens=[1, 2],
        label="2",
        reward={"score": 1.0, "acc": True},
        status=Status.TRUNCATED,
        metadata={"source_name": "dapo"},
    )
    sample.append_response_tokens(tokens=[9], log_probs=[-0.5], text="2")
    data = sample.to_dict()
    assert data["status"] == "truncated"
    restored = Sample.from_dict(data)
    assert restored == sample
    assert restored.status is Status.TRUNCATED


def test_from_dict_rejects_unknown_fields():
    with pytest.raises(ValueError, match="unknown Sample fields: colour"):
        Sample.from_dict({"index": 1, "colour": "red"})


def test_the_scalar_reward_is_a_float_picked_by_the_reward_key():
    assert Sample(reward=0.5).get_reward_value() == 0.5
    assert type(Sample(reward=1).get_reward_value()) is float
    dapo = Sample(index=4, reward={"score": -1.0, "acc": True, "pred": "x"})  # slime-rewards-math's dapo reward
    assert dapo.get_reward_value("score") == -1.0
    assert dapo.get_reward_value("acc") == 1.0 and type(dapo.get_reward_value("acc")) is float


def test_a_reward_that_gives_no_scalar_is_an_error_naming_the_sample():
    dapo = Sample(index=4, reward={"score": -1.0, "acc": True, "pred": "x"})
    with pytest.raises(ValueError, match=r"^sample 4 has a dict reward \['acc', 'pred', 'score'\]; set --reward-key$"):
        dapo.get_reward_value()
    with pytest.raises(ValueError, match=r"^sample 4 has a dict reward \['acc', 'pred', 'score'\] without key 'sc'$"):
        dapo.get_reward_value("sc")
    with pytest.raises(ValueError, match=r"^sample 4 \(group 1\) has no reward$"):
        Sample(index=4, group_index=1).get_reward_value()


def test_slime_spelling_of_sample_status_append_and_reward():
    from argparse import Namespace

    from slime.utils.types import Sample as SlimeSample

    assert SlimeSample is Sample and Sample.Status.TRUNCATED is Status.TRUNCATED
    sample = Sample(tokens=[1], reward={"score": 0.5})
    meta_info = {"finish_reason": {"type": "length"}, "weight_version": 3}
    sample.append_response_tokens(None, tokens=[7, 8], log_probs=[-0.1, -0.2], trainable=True, meta_info=meta_info)
    assert sample.status is Sample.Status.TRUNCATED and sample.weight_versions == ["3"]
    sample.append_response_tokens(None, tokens=[9], trainable=False)  # a tool's token: no log-prob, mask 0
    assert sample.loss_mask == [1, 1, 0] and sample.rollout_log_probs == [-0.1, -0.2, 0.0]
    assert sample.get_reward_value(Namespace(reward_key="score")) == 0.5  # slime passes args


def test_routed_experts_from_the_engine_are_one_row_per_token_the_engine_ran():
    # SGLang's meta_info["routed_experts"]: base64 of int32 ids, token by token, layers x top-k each (here 2 x 2).
    ids = np.arange(5 * 4, dtype=np.int32) % 8
    sample = Sample(tokens=[1, 2, 3])
    encoded = base64.b64encode(ids.tobytes()).decode()
    sample.append_response_tokens(tokens=[4, 5, 6], log_probs=[-0.1] * 3, meta_info={"routed_experts": encoded})
    assert sample.rollout_routed_experts.shape == (5, 4)  # 6 tokens: the last is never fed to the model
    assert sample.rollout_routed_experts.tolist() == ids.reshape(5, 4).tolist()

    back = Sample.from_dict(json.loads(json.dumps(sample.to_dict())))
    assert back.rollout_routed_experts.dtype == np.int32
    assert np.array_equal(back.rollout_routed_experts, sample.rollout_routed_experts)

    with pytest.raises(ValueError, match="20 ids\\) do not split into 3 token rows"):
        routed_experts_of(encoded, 3)
