"""When the loop saves and evaluates: slime's periodic rule."""


def should_run_periodic_action(
    rollout_id: int,
    interval: int | None,
    num_rollout_per_epoch: int | None = None,
    num_rollout: int | None = None,
) -> bool:
    """True after every ``interval``-th rollout, at each epoch's last rollout, and at the run's last rollout.

    ``interval`` None turns the action off. Pass ``num_rollout`` only for actions forced at the end of the run
    (saving, as in slime; evaluation is not forced there).
    """
    if interval is None:
        return False
    step = rollout_id + 1
    if step % interval == 0:
        return True
    if num_rollout_per_epoch is not None and step % num_rollout_per_epoch == 0:
        return True
    return num_rollout is not None and step == num_rollout
