"""CPU threads for each process of a run, from the bundles it holds.

Ray sets OMP_NUM_THREADS=1 in every actor whatever it holds, and the SGLang servers an actor starts inherit it, so
without this every phase of a CPU run computes on one core (measured: a 10M model's train step 4.0 s with one
thread, 2.3-2.7 s with two on a 2-core machine).

Each bundle of the placement group stands for one CPU. A process gets the CPUs of the bundles it holds. On a
machine without GPUs, when training and generation take turns (no ``--async``), the side that runs uses the cores
the waiting side holds too: its processes share every bundle of the run on their node.
"""

import argparse
import os

from slime.ray.placement import Placement

CPUS_PER_BUNDLE = 1  # slime.ray.placement puts one CPU in every bundle


def phases_alternate(args: argparse.Namespace, use_gpu: bool) -> bool:
    """On CPU without --async, one side computes while the other waits; on GPUs each side keeps its own CPUs."""
    return not use_gpu and not args.async_training


def threads_per_process(nodes: list[str], holdings: list[list[int]], alternate: bool) -> list[int]:
    """The threads of each process of one side (train ranks, or engines), given the bundles each one holds.

    ``nodes``: the node of every bundle of the run. With ``alternate`` the processes on a node share all the run's
    bundles there (the other side waits); otherwise each keeps its own.
    """
    threads = []
    for bundles in holdings:
        count = len(bundles) * CPUS_PER_BUNDLE
        if alternate:
            node = nodes[bundles[0]]
            peers = sum(1 for other in holdings if nodes[other[0]] == node)
            count = max(count, nodes.count(node) * CPUS_PER_BUNDLE // peers)
        threads.append(max(1, count))
    return threads


def train_rank_threads(args: argparse.Namespace, placement: Placement) -> list[int]:
    """The threads of each train rank (one bundle each)."""
    holdings = [[bundle] for bundle in placement.actor_bundles]
    return threads_per_process(placement.nodes, holdings, phases_alternate(args, placement.use_gpu))


def engine_threads(args: argparse.Namespace, placement: Placement, holdings: list[list[int]]) -> list[int]:
    """The threads of each rollout engine, given the bundles each one holds."""
    return threads_per_process(placement.nodes, holdings, phases_alternate(args, placement.use_gpu))


def engine_threads_without_placement(args: argparse.Namespace) -> int:
    """``slime eval`` has no placement and nothing computes but the engines: they share this node's cores."""
    engines = max(1, (args.rollout_num_gpus or 1) // args.rollout_num_gpus_per_engine)
    return max(1, len(os.sched_getaffinity(0)) // engines)


def use_cpu_threads(count: int) -> int:
    """Give this process (and the processes it starts) ``count`` threads, at most the cores it may run on."""
    import torch

    count = max(1, min(count, len(os.sched_getaffinity(0))))
    os.environ["OMP_NUM_THREADS"] = str(count)  # read by subprocesses (SGLang servers) when they start
    torch.set_num_threads(count)  # this process's OpenMP pool is already sized: the variable alone would not do
    return count
