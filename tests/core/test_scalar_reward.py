"""Dict rewards: training, the dynamic-sampling filter and the metrics all read the scalar ``--reward-key`` picks."""

from slime.config.arguments import parse_args
from slime.metrics.publish import eval_report, rollout_report
from slime.rollout.filters import check_reward_nonzero_std
from slime.rollout.train_batch import samples_to_train_batch
from slime.types import Sample, Status


def dapo_group() -> list[Sample]:
    """Two answers to one prompt, scored as slime-rewards-math's dapo reward scores them."""
    return [
        Sample(
            index=index,
            group_index=0,
            tokens=[1, 2, 3],
            response_length=1,
            status=Status.COMPLETED,
            reward={"score": score, "acc": score > 0, "pred": "42"},
        )
        for index, score in enumerate([1.0, -1.0])
    ]


def test_every_reader_of_dict_rewards_uses_the_reward_key():
    argv = ["--rollout-batch-size", "1", "--n-samples-per-prompt", "2"]
    args = parse_args([*argv, "--reward-key", "acc"])
    group = dapo_group()
    assert samples_to_train_batch(args, group).raw_rewards == [1.0, 0.0]
    assert check_reward_nonzero_std(args, group).keep
    assert rollout_report(args, 0, group)["rollout/raw_reward"] == 0.5
    assert eval_report(args, 0, {"aime": group})["eval/aime"] == 0.5  # --eval-reward-key defaults to --reward-key

    args = parse_args([*argv, "--reward-key", "score", "--eval-reward-key", "acc"])
    assert samples_to_train_batch(args, group).raw_rewards == [1.0, -1.0]
    assert rollout_report(args, 0, group)["rollout/raw_reward"] == 0.0
    assert eval_report(args, 0, {"aime": group})["eval/aime"] == 0.5
