"""CPU threads follow the bundles a process holds (Ray itself sets OMP_NUM_THREADS=1 in every actor), and on CPU
the side that runs while the other waits gets the waiting side's cores; checked inside the train actors."""

import os

import ray

from slime.config.arguments import parse_args
from slime.ray.placement import create_placement
from slime.ray.threads import threads_per_process
from slime.ray.train_group import TrainGroup


def test_each_process_keeps_its_own_bundles_when_both_sides_run_at_once() -> None:
    nodes = ["a"] * 4
    assert threads_per_process(nodes, [[0], [1]], alternate=False) == [1, 1]
    assert threads_per_process(nodes, [[2, 3]], alternate=False) == [2]  # an engine of two bundles


def test_the_side_that_runs_shares_every_bundle_of_its_node_while_the_other_waits() -> None:
    nodes = ["a", "a", "a", "a", "b", "b"]
    assert threads_per_process(nodes, [[0], [1]], alternate=True) == [2, 2]  # two ranks share node a's four
    assert threads_per_process(nodes, [[2], [3], [4]], alternate=True) == [2, 2, 2]
    assert threads_per_process(nodes, [[0], [4], [5]], alternate=True) == [4, 1, 1]


class NoBackend:
    """The train actor's backend is not what this test looks at."""


def rank_threads(group: TrainGroup) -> list[tuple[int, str]]:
    def read(actor) -> tuple[int, str]:
        import torch

        return torch.get_num_threads(), os.environ["OMP_NUM_THREADS"]

    return ray.get([actor.__ray_call__.remote(read) for actor in group.actors])


def test_train_actors_get_the_threads_of_their_bundles(ray_runtime, tmp_path) -> None:
    cores = len(os.sched_getaffinity(0))
    for extra, expected in (([], min(2, cores)), (["--async"], 1)):
        args = parse_args(
            ["--actor-num-gpus-per-node", "2", "--rollout-num-gpus", "2", "--output-dir", str(tmp_path), *extra]
        )
        placement = create_placement(args)
        group = TrainGroup(args, NoBackend, placement)
        try:
            # Two ranks and two engine bundles on one node: training uses all four while the engines wait (at most
            # the machine's cores); with --async both sides run at once and a rank keeps its one bundle.
            assert rank_threads(group) == [(expected, str(expected))] * 2
        finally:
            for actor in group.actors:
                ray.kill(actor)
            ray.util.remove_placement_group(placement.group)
