"""The train actor group: one Ray actor per training rank, each running the train backend."""

import argparse
import os
from typing import Any

import ray

from slime.backends import WeightReceiver
from slime.ray.placement import Placement
from slime.types import TrainBatch


class TrainActor:
    """Hosts one rank of the train backend; rank 0 is the one that reports metrics and sends weights."""

    def __init__(self, backend_class: type, rank: int, world_size: int, master_addr: str, master_port: int) -> None:
        os.environ.update(
            {
                "RANK": str(rank),
                "WORLD_SIZE": str(world_size),
                "MASTER_ADDR": master_addr,
                "MASTER_PORT": str(master_port),
            }
        )
        self.rank = rank
        self.world_size = world_size
        self.backend = backend_class()
        self.receiver: WeightReceiver | None = None  # the last one weights went through

    def init(self, args: argparse.Namespace) -> int:
        return self.backend.init(args, self.rank, self.world_size)

    def train(self, rollout_id: int, batch: TrainBatch) -> tuple[list[dict[str, float]], dict[str, float]]:
        return self.backend.train(rollout_id, batch), self.backend.rollout_metrics()

    def save(self, rollout_id: int) -> None:
        self.backend.save(rollout_id)

    def update_weights(self, receiver: WeightReceiver, weight_version: str) -> None:
        self.receiver = receiver
        self.backend.update_weights(receiver, weight_version)

    def close(self) -> None:
        """Called by ``slime.loop.end_actors`` just before the actor exits: the weight receiver releases what the
        updates hold in this process (the shared-memory buffer), as exit handlers may not run."""
        close = getattr(self.receiver, "close", None)
        if close is not None:
            close()


class TrainGroup:
    """Calls every rank and waits for all; returns rank 0's answer."""

    def __init__(self, args: argparse.Namespace, backend_class: type, placement: Placement) -> None:
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        world_size = len(placement.actor_bundles)
        master_addr = ray.util.get_node_ip_address()
        master_port = _free_port()
        resources = {"num_gpus": 0.4, "num_cpus": 0} if placement.use_gpu else {"num_cpus": 0.4}
        self.actors = [
            ray.remote(**resources)(TrainActor)
            .options(
                scheduling_strategy=PlacementGroupSchedulingStrategy(
                    placement_group=placement.group, placement_group_bundle_index=bundle
                )
            )
            .remote(backend_class, rank, world_size, master_addr, master_port)
            for rank, bundle in enumerate(placement.actor_bundles)
        ]

    def _all(self, method: str, *args: Any) -> Any:
        return ray.get([getattr(actor, method).remote(*args) for actor in self.actors])[0]

    def init(self, args: argparse.Namespace) -> int:
        return self._all("init", args)

    def train(self, rollout_id: int, batch: Any) -> tuple[list[dict[str, float]], dict[str, float]]:
        """Rank 0's per-step ``train/*`` metrics and what it measured for the rollout (``perf/*``, ``rollout/*``)."""
        return self._all("train", rollout_id, batch)

    def save(self, rollout_id: int) -> None:
        self._all("save", rollout_id)

    def update_weights(self, receiver: WeightReceiver, weight_version: str) -> None:
        self._all("update_weights", receiver, weight_version)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
