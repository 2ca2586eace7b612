from hypothesis import given
from hypothesis import strategies as st

from slime.loop import should_run_periodic_action


def reference(rollout_id, interval, per_epoch, num_rollout):
    if interval is None:
        return False
    n = rollout_id + 1
    return n % interval == 0 or (per_epoch is not None and n % per_epoch == 0) or n == num_rollout


def test_every_interval_epoch_end_and_last_rollout():
    fired = [r for r in range(10) if should_run_periodic_action(r, 3, num_rollout_per_epoch=4, num_rollout=10)]
    assert fired == [2, 3, 5, 7, 8, 9]


def test_eval_is_not_forced_at_the_last_rollout():
    fired = [r for r in range(10) if should_run_periodic_action(r, 4)]
    assert fired == [3, 7]


def test_no_interval_means_never():
    assert not any(should_run_periodic_action(r, None, 2, 10) for r in range(10))


@given(
    st.integers(0, 200),
    st.one_of(st.none(), st.integers(1, 20)),
    st.one_of(st.none(), st.integers(1, 20)),
    st.one_of(st.none(), st.integers(1, 201)),
)
def test_matches_reference(rollout_id, interval, per_epoch, num_rollout):
    assert should_run_periodic_action(rollout_id, interval, per_epoch, num_rollout) == reference(
        rollout_id, interval, per_epoch, num_rollout
    )
