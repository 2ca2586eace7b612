"""slime-rewards-remote's entry module: registers its reward functions with slime and nothing else."""

from slime.hookspecs import hookimpl
from slime_rewards_remote.client import remote_rm


@hookimpl
def slime_register_reward_functions(register) -> None:
    register("remote_rm", remote_rm)
