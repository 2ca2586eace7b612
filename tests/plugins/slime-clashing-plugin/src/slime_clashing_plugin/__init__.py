"""A plugin that registers a reward name the toy plugin already owns."""

from slime.hookspecs import hookimpl


async def contains_label(args, sample) -> float:
    return 0.0


@hookimpl
def slime_register_reward_functions(register):
    register("toy_contains_label", contains_label)
