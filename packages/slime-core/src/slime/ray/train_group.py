"""The train actor group: one Ray actor per training rank, each running the train backend.

PPO has two groups on the same bundles: the actor (the policy) and the critic (``role="critic"``), as in slime.
"""

import argparse
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import ray

from slime.backends import WeightReceiver
from slime.ray.cpu_malloc import cpu_malloc_env
from slime.ray.placement import Placement
from slime.ray.threads import train_rank_threads, use_cpu_threads
from slime.types import TrainBatch


class TrainActor:
    """Hosts one rank of the train backend; rank 0 is the one that reports metrics and sends weights."""

    def __init__(self, backend_class: type, rank: int, world_size: int, cpu_threads: int, role: str) -> None:
        use_cpu_threads(cpu_threads)  # before the backend imports and sizes anything
        self.role = role
        self.rank = rank
        self.world_size = world_size
        self.backend = backend_class()
        self.receiver: WeightReceiver | None = None  # the last one weights went through

    def rendezvous(self, across_nodes: bool) -> tuple[str, int]:
        """Rank 0's: where the other ranks meet this one, an address of this node and a port free on it (loopback
        when every rank runs on this node, so nothing listens beyond it)."""
        address = ray.util.get_node_ip_address() if across_nodes else "127.0.0.1"
        return address, _free_port(address)

    def init(self, args: argparse.Namespace, master_addr: str, master_port: int) -> int:
        os.environ.update(
            {
                "RANK": str(self.rank),
                "WORLD_SIZE": str(self.world_size),
                "MASTER_ADDR": master_addr,
                "MASTER_PORT": str(master_port),
            }
        )
        if self.role == "actor":
            return self.backend.init(args, self.rank, self.world_size)
        return self.backend.init(args, self.rank, self.world_size, role=self.role)

    def train(
        self, rollout_id: int, batch: TrainBatch, values: Sequence[np.ndarray] | None
    ) -> tuple[list[dict[str, float]], dict[str, float]]:
        # A backend without a critic is never given values (preflight refuses PPO for it) and takes two arguments.
        extra = () if values is None else (values,)
        steps = self.backend.train(rollout_id, batch, *extra)
        return steps, self.backend.rollout_metrics()

    def train_critic(self, rollout_id: int, batch: TrainBatch) -> tuple[list[dict[str, float]], dict[int, np.ndarray]]:
        return self.backend.train_critic(rollout_id, batch)

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

    def offload(self) -> None:
        self.backend.offload()

    def onload(self) -> None:
        self.backend.onload()


class TrainGroup:
    """Calls every rank and waits for all; returns rank 0's answer."""

    def __init__(
        self, args: argparse.Namespace, backend_class: type, placement: Placement, role: str = "actor"
    ) -> None:
        self.role = role
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        world_size = len(placement.actor_bundles)
        self.across_nodes = len({placement.nodes[bundle] for bundle in placement.actor_bundles}) > 1
        resources = {"num_gpus": 0.4, "num_cpus": 0} if placement.use_gpu else {"num_cpus": 0.4}
        # On CPU, glibc keeps the memory a step frees for the next one (cpu_malloc.py); set before the process starts.
        runtime_env = {} if placement.use_gpu else {"runtime_env": {"env_vars": cpu_malloc_env()}}
        threads = train_rank_threads(args, placement)
        self.actors = [
            ray.remote(**resources)(TrainActor)
            .options(
                scheduling_strategy=PlacementGroupSchedulingStrategy(
                    placement_group=placement.group, placement_group_bundle_index=bundle
                ),
                **runtime_env,
            )
            .remote(backend_class, rank, world_size, threads[rank], role)
            for rank, bundle in enumerate(placement.actor_bundles)
        ]

    def _all(self, method: str, *args: Any) -> Any:
        return ray.get([getattr(actor, method).remote(*args) for actor in self.actors])[0]

    def init(self, args: argparse.Namespace) -> int:
        # Rank 0 hosts the rendezvous on its own node (not the driver's: the ranks may all run elsewhere).
        self.master_addr, self.master_port = ray.get(self.actors[0].rendezvous.remote(self.across_nodes))
        return self._all("init", args, self.master_addr, self.master_port)

    def train(self, rollout_id: int, batch: Any, values: Any = None) -> tuple[list[dict[str, float]], dict[str, float]]:
        """Rank 0's per-step ``train/*`` metrics and what it measured for the rollout (``perf/*``, ``rollout/*``);
        ``values``: PPO's critic's, per sample (``train_critic``)."""
        return self._all("train", rollout_id, batch, values)

    def train_critic(self, rollout_id: int, batch: Any) -> tuple[list[dict[str, float]], ray.ObjectRef]:
        """The critic group's training on one rollout: rank 0's per-step metrics, and every sample's values in sample
        order (in Ray's object store, for the actor group), merged from the ranks that report them."""
        answers = ray.get([actor.train_critic.remote(rollout_id, batch) for actor in self.actors])
        merged: dict[int, np.ndarray] = {}
        for _, values in answers:
            merged.update(values)
        if sorted(merged) != list(range(len(merged))):
            raise RuntimeError(f"the critic's ranks reported values for samples {sorted(merged)}, not 0..n-1")
        return answers[0][0], ray.put([merged[i] for i in range(len(merged))])

    def save(self, rollout_id: int) -> None:
        self._all("save", rollout_id)

    def update_weights(self, receiver: WeightReceiver, weight_version: str) -> None:
        self._all("update_weights", receiver, weight_version)

    def offload(self) -> None:
        self._all("offload")

    def onload(self) -> None:
        self._all("onload")


def _free_port(address: str) -> int:
    import socket

    with socket.socket() as sock:
        sock.bind((address, 0))
        return sock.getsockname()[1]
