"""Actors end through their ``close()`` and then their own exit (then ``ray.kill`` after a grace period): an actor frees
what it shared through ``torch.multiprocessing`` (a weight sender's buffer) in ``close()``, while it is whole. Left to
its exit handlers, the buffer stayed in /dev/shm when the kill came first, and the free aborted the actor when it came
after Ray had killed torch's shared-memory manager (both measured)."""

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

    def close(self) -> None:
        self.buffer = None

    def name(self) -> str:
        return self.buffer.untyped_storage()._share_filename_cpu_()[1].decode()

    def busy(self, seconds: float) -> None:
        time.sleep(seconds)


def test_an_ended_actor_leaves_no_shared_memory(ray_runtime) -> None:
    actor = ray.remote(num_cpus=0)(SharedBuffer).remote()
    path = Path("/dev/shm" + ray.get(actor.name.remote()))
    assert path.exists()
    end_actors([actor])
    assert not path.exists()  # gone when end_actors returns: close() ran before the exit


def test_an_actor_that_does_not_exit_is_killed_after_the_grace(ray_runtime) -> None:
    actor = ray.remote(num_cpus=0)(SharedBuffer).remote()
    path = Path("/dev/shm" + ray.get(actor.name.remote()))
    actor.busy.remote(60)  # the close-and-exit call queues behind it
    start = time.monotonic()
    end_actors([actor], grace=1.0)
    assert time.monotonic() - start < 30
    time.sleep(1)
    try:
        ray.get(actor.name.remote(), timeout=30)
        raise AssertionError("the busy actor is still alive")
    except ray.exceptions.RayActorError:
        pass
    path.unlink(missing_ok=True)  # a killed actor's buffer stays behind (what close() is for)
