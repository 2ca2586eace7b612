"""A Ray actor's failure as the one line `slime train` prints (slime.ray.failures): which actor died, and the node
lost with it when the cluster's node table says one was (that case runs on a real two-node cluster:
tests/reliability/test_node_lost.py)."""

import os
import signal

import pytest
import ray

from slime.errors import SlimeError
from slime.ray.failures import actor_lost, alive_nodes


class Worker:
    def pid(self) -> int:
        return os.getpid()

    def call(self, other) -> int:
        return ray.get(other.pid.remote())


def test_a_killed_actor_is_named_in_one_line(ray_runtime):
    nodes = alive_nodes()
    assert ray.get_runtime_context().get_node_id() in nodes
    worker = ray.remote(num_cpus=0)(Worker).remote()
    os.kill(ray.get(worker.pid.remote()), signal.SIGKILL)
    with pytest.raises(ray.exceptions.RayActorError) as raised:
        ray.get(worker.pid.remote())
    lost = actor_lost(raised.value, nodes)
    assert isinstance(lost, SlimeError)
    message = str(lost)
    assert message.startswith("the Worker actor died: ") and "\n" not in message and len(message) < 400, message


def test_a_dead_actor_behind_another_actors_task_is_found(ray_runtime):
    caller, callee = (ray.remote(num_cpus=0)(Worker).remote() for _ in range(2))
    ray.kill(callee)
    with pytest.raises(ray.exceptions.RayTaskError) as raised:  # the caller's task failed on the dead callee
        ray.get(caller.call.remote(callee))
    assert str(actor_lost(raised.value, alive_nodes())).startswith("the Worker actor died: ")
    ray.kill(caller)


def test_other_errors_are_not_actor_failures():
    assert actor_lost(ValueError("bad input"), set()) is None
