"""PPO's actor and critic resume from the same rollout (``slime.loop.check_critic_start``): a critic checkpoint that
lags the actor's is one line before any rollout, unless ``--start-rollout-id`` says where to start."""

import pytest

from slime.config.arguments import parse_args
from slime.errors import ConfigError
from slime.loop import check_critic_start

BASE = ["--rollout-batch-size", "1", "--actor-num-gpus-per-node", "1", "--advantage-estimator", "ppo"]


def test_actor_and_critic_resume_together():
    args = parse_args([*BASE, "--load", "/ckpt"])
    check_critic_start(args, 3, 3)
    check_critic_start(args, 0, 0)
    with pytest.raises(ConfigError) as error:
        check_critic_start(args, 3, 2)
    assert str(error.value) == (
        "--load /ckpt: the actor's checkpoint resumes at rollout 3 but the critic's at 2; "
        "a PPO run resumes both from the same rollout"
    )
    check_critic_start(parse_args([*BASE, "--load", "/ckpt", "--start-rollout-id", "2"]), 3, 2)
