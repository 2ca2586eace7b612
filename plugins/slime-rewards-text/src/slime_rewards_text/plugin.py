"""slime-rewards-text's entry module: registers its reward functions with slime and nothing else."""

from slime.hookspecs import hookimpl
from slime_rewards_text.f1 import f1
from slime_rewards_text.gpqa import gpqa
from slime_rewards_text.random_reward import random_reward


@hookimpl
def slime_register_reward_functions(register) -> None:
    register("f1", f1)
    register("gpqa", gpqa)
    register("random", random_reward)
