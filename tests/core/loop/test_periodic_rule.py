"""slime's periodic rule for saving and evaluating (``slime.loop.should_run_periodic_action``), as tables of the
rollout ids it fires at, written out by hand: after every ``interval``-th rollout, at each epoch's last rollout, at
the run's last rollout (only when ``num_rollout`` is passed), never when ``interval`` is None."""

import pytest

from slime.loop import should_run_periodic_action


def fired(interval, per_epoch=None, num_rollout=None, rollouts=None):
    """The rollout ids of a run (``num_rollout`` ids, else 12) at which the rule fires."""
    rollouts = rollouts or num_rollout or 12
    return [r for r in range(rollouts) if should_run_periodic_action(r, interval, per_epoch, num_rollout)]


@pytest.mark.parametrize(
    "interval,per_epoch,num_rollout,expected",
    [
        # interval only: rollout ids 2, 5, 8, 11 are the 3rd, 6th, 9th, 12th rollouts
        (3, None, None, [2, 5, 8, 11]),
        (1, None, None, list(range(12))),
        (5, None, None, [4, 9]),
        (20, None, None, []),  # an interval longer than the run never fires
        # epoch end: 4 rollouts per epoch end at ids 3, 7, 11, whatever the interval
        (20, 4, None, [3, 7, 11]),
        (3, 4, None, [2, 3, 5, 7, 8, 11]),  # 3rd, 4th, 6th, 8th, 9th, 12th
        (2, 4, None, [1, 3, 5, 7, 9, 11]),  # epoch ends coincide with the interval: each fires once
        # last rollout of a 10-rollout run (id 9), forced when num_rollout is given
        (4, None, 10, [3, 7, 9]),
        (5, None, 10, [4, 9]),  # the last rollout is also an interval: fires once
        (20, None, 10, [9]),
        (3, 4, 10, [2, 3, 5, 7, 8, 9]),  # all three rules
        (4, None, 12, [3, 7, 11]),  # the last rollout is also an interval
    ],
)
def test_fires_after_each_interval_epoch_end_and_last_rollout(interval, per_epoch, num_rollout, expected):
    assert fired(interval, per_epoch, num_rollout) == expected


def test_evaluation_is_not_forced_at_the_last_rollout():
    """The loop passes num_rollout for saving only: without it, id 9 of a 10-rollout run does not fire."""
    assert fired(4, rollouts=10) == [3, 7]
    assert fired(4, num_rollout=10, rollouts=10) == [3, 7, 9]


@pytest.mark.parametrize("per_epoch,num_rollout", [(None, None), (2, None), (None, 10), (1, 10)])
def test_no_interval_means_never(per_epoch, num_rollout):
    assert fired(None, per_epoch, num_rollout) == []
