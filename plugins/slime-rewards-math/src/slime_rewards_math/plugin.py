"""slime-rewards-math's entry module: registers its reward functions with slime and nothing else."""

from slime.hookspecs import hookimpl
from slime_rewards_math.rewards import dapo, deepscaler, math_reward


@hookimpl
def slime_register_reward_functions(register) -> None:
    register("deepscaler", deepscaler)
    register("dapo", dapo)
    register("math", math_reward)
