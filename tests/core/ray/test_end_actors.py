"""Actors end through ``__ray_terminate__`` (then ``ray.kill`` after a grace period): an actor that exits on its own
frees what it shared through ``torch.multiprocessing`` (a weight sender's buffer), which ``ray.kill`` leaves in
/dev/shm (measured: Ray kills torch's shared-memory manager along with the actor)."""

import time
from pathlib import Path

import ray

from slime.loop import end_actors


class SharedBuffer:
    def __init__(self) -> None:
        import torch
        import torch.multiprocessing

        torch.multiprocessing.set_sharing_strategy("file_system")
        self.buffer = torch.zeros(1024).share_memory_()

    def name(self) -> str:
        return self.buffer.untyped_storage()._share_filename_cpu_()[1].decode()

    def busy(self, seconds: float) -> None:
        time.sleep(seconds)


def test_an_ended_actor_leaves_no_shared_memory(ray_runtime) -> None:
    actor = ray.remote(num_cpus=0)(SharedBuffer).remote()
    path = Path("/dev/shm" + ray.get(actor.name.remote()))
    assert path.exists()
    end_actors([actor])
    deadline = time.monotonic() + 10
    while path.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not path.exists()


def test_an_actor_that_does_not_exit_is_killed_after_the_grace(ray_runtime) -> None:
    actor = ray.remote(num_cpus=0)(SharedBuffer).remote()
    actor.busy.remote(60)  # the terminate call queues behind it
    start = time.monotonic()
    end_actors([actor], grace=1.0)
    assert time.monotonic() - start < 30
    time.sleep(1)
    try:
        ray.get(actor.name.remote(), timeout=30)
        raise AssertionError("the busy actor is still alive")
    except ray.exceptions.RayActorError:
        pass
