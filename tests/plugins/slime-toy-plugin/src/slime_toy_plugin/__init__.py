"""A toy third-party slime plugin: one reward function and one advantage estimator."""

from slime.hookspecs import hookimpl


async def contains_label(args, sample) -> float:
    """1.0 when the label appears in the response."""
    return 1.0 if str(sample.label) in sample.response else 0.0


@hookimpl
def slime_register_reward_functions(register):
    register("toy_contains_label", contains_label)


@hookimpl
def slime_add_arguments(parser):
    parser.add_argument_group("toy plugin").add_argument("--toy-bonus", type=float, default=0.0)
