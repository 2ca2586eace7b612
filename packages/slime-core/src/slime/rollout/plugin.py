"""Core's rollout defaults, registered through the same hooks a third-party plugin uses."""

from slime.hookspecs import hookimpl
from slime.rollout.default import generate_rollout
from slime.rollout.filters import check_reward_nonzero_std, check_reward_nonzero_std_with_fallback
from slime.rollout.fully_async_rollout import generate_rollout_fully_async
from slime.rollout.generate import default_generate
from slime.rollout.multi_turn import multi_turn_tools_generate
from slime.rollout.sft import sft_rollout


@hookimpl
def slime_register_rollout_functions(register) -> None:
    register("default", generate_rollout)
    register("sft", sft_rollout)
    register("fully_async", generate_rollout_fully_async)


@hookimpl
def slime_register_generate_functions(register) -> None:
    register("default", default_generate)
    register("multi_turn_tools", multi_turn_tools_generate)


@hookimpl
def slime_register_sample_filters(register) -> None:
    register("check_reward_nonzero_std", check_reward_nonzero_std)
    register("check_reward_nonzero_std_with_fallback", check_reward_nonzero_std_with_fallback)
