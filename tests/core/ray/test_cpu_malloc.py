"""On CPU a train rank keeps the memory a step frees for the next one (slime/ray/cpu_malloc.py): once warm, a step
that allocates the same blocks again faults (almost) no page in, where a process with glibc's defaults faults in
every page of its large blocks each step."""

import os

import pytest
import ray

from slime.config.arguments import parse_args
from slime.ray.cpu_malloc import CPU_MALLOC_ENV, cpu_malloc_env, tunes_malloc
from slime.ray.placement import create_placement
from slime.ray.train_group import TrainGroup

BLOCKS_MIB = (4, 16, 64, 8, 40, 64, 24)  # alive together, then all freed, as a step's activations


def faults_of_warm_steps() -> int:
    """Minor page faults of steps 5-8 of eight alike steps (torch's allocator fragments the heap for a few)."""
    import torch

    def minor_faults() -> int:
        with open("/proc/self/stat") as stat:
            return int(stat.read().rsplit(")", 1)[1].split()[7])

    faults = []
    for _ in range(8):
        before = minor_faults()
        blocks = [torch.empty(mib << 18).fill_(1.0) for mib in BLOCKS_MIB]
        del blocks
        faults.append(minor_faults() - before)
    return sum(faults[4:])


class NoBackend:
    """The train actor's backend is not what this test looks at."""


@pytest.mark.skipif(
    any(tunes_malloc(name) for name in os.environ),
    reason="this environment tunes glibc's malloc itself, so the train ranks keep its settings",
)
def test_a_cpu_train_rank_reuses_freed_memory_where_glibc_defaults_fault_it_in_again(ray_runtime, tmp_path) -> None:
    args = parse_args(["--actor-num-gpus-per-node", "1", "--rollout-num-gpus", "1", "--output-dir", str(tmp_path)])
    placement = create_placement(args)
    group = TrainGroup(args, NoBackend, placement)
    plain = ray.remote(num_cpus=0)(NoBackend).remote()
    try:
        rank_faults = ray.get(group.actors[0].__ray_call__.remote(lambda _: faults_of_warm_steps()))
        plain_faults = ray.get(plain.__ray_call__.remote(lambda _: faults_of_warm_steps()))
    finally:
        for actor in [*group.actors, plain]:
            ray.kill(actor)
        ray.util.remove_placement_group(placement.group)
    step_pages = sum(BLOCKS_MIB) * (1 << 20) // os.sysconf("SC_PAGE_SIZE")
    assert rank_faults < step_pages // 4, (rank_faults, step_pages)
    assert plain_faults > 2 * step_pages, (plain_faults, step_pages)  # glibc's defaults: most pages, every step


def test_a_driver_that_tunes_malloc_itself_keeps_its_settings(monkeypatch) -> None:
    for name in [name for name in os.environ if tunes_malloc(name)]:
        monkeypatch.delenv(name)
    assert cpu_malloc_env() == CPU_MALLOC_ENV
    monkeypatch.setenv("MALLOC_ARENA_MAX", "2")
    assert cpu_malloc_env() == {}
    monkeypatch.delenv("MALLOC_ARENA_MAX")
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.mmap_max=65536")
    assert cpu_malloc_env() == {}
