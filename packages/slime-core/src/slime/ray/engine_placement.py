"""Rollout engines in their bundles: one Ray actor per engine, in the engine's own bundles of the placement group.

Core decides where each engine runs (its bundles, their node and GPU ids, its CPU threads); the rollout backend
says what runs there: its actor class, built as ``actor_class(slot, *args)``, starts the engine's server on the
node and with the devices of ``slot``. An engine of ``--rollout-num-gpus-per-engine`` k holds k bundles of one
node: its actor runs in the first, and nothing else of the rollout side takes the others.
"""

import argparse
from dataclasses import dataclass, field

import ray
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from slime.errors import SlimeError
from slime.ray.placement import Placement
from slime.ray.threads import engine_threads, engine_threads_without_placement


@dataclass
class EngineSlot:
    """Where one engine runs."""

    index: int
    threads: int  # CPU threads for the engine's server (``slime.ray.threads``)
    bundles: list[int] = field(default_factory=list)  # placement-group bundles; none without a placement
    node_id: str | None = None  # the Ray node of its bundles
    gpu_ids: list[str] = field(default_factory=list)  # the GPU ids Ray gave its bundles, in order; none on CPU
    bind_node_ip: bool = False  # serve on the node's address (engines, router or trainer on other nodes) or loopback


@ray.remote(num_gpus=0.01, num_cpus=0)
def _bundle_gpu_ids() -> list[str]:
    return [str(gpu) for gpu in ray.get_gpu_ids()]


def _gpu_order(gpu_id: str) -> tuple[int, str]:
    return (int(gpu_id), "") if gpu_id.isdigit() else (0, gpu_id)


class EnginePlacer:
    """Starts the rollout backend's engine actors, each in its slot; restarts one in the same slot.

    Without a placement (``slime eval``, the backend's own tests), or one that reserves nothing for the engines (no
    ``--rollout-num-gpus``), the actors run wherever Ray puts them and share the node's cores.
    """

    def __init__(self, args: argparse.Namespace, placement: Placement | None = None) -> None:
        if placement is not None and not placement.rollout_bundles:
            placement = None
        self.placement = placement
        width = args.rollout_num_gpus_per_engine
        if placement is None:
            count = max(1, (args.rollout_num_gpus or 1) // width)
            threads = engine_threads_without_placement(args)
            self.slots = [EngineSlot(index, threads) for index in range(count)]
            return
        bundles = list(placement.rollout_bundles)
        gpu_ids = {bundle: [] for bundle in bundles}
        if placement.use_gpu:
            gpu_ids = dict(zip(bundles, ray.get([self._probe(bundle) for bundle in bundles]), strict=True))
        # An engine's bundles: consecutive devices of one node.
        bundles.sort(key=lambda b: (placement.nodes[b], [_gpu_order(g) for g in gpu_ids[b]], b))
        holdings = [bundles[start : start + width] for start in range(0, len(bundles), width)]
        for holding in holdings:
            if len({placement.nodes[b] for b in holding}) > 1:
                raise SlimeError(
                    f"--rollout-num-gpus-per-engine {width}: Ray placed the rollout devices so that an engine would "
                    "span two nodes; give each node a multiple of it"
                )
        # The manager's node counts too: the router runs there. Every process on one node: loopback only.
        manager_node = ray.get_runtime_context().get_node_id()
        across_nodes = len({*placement.nodes, manager_node}) > 1
        threads = engine_threads(args, placement, holdings)
        self.slots = [
            EngineSlot(
                index,
                threads[index],
                holding,
                placement.nodes[holding[0]],
                [gpu for bundle in holding for gpu in gpu_ids[bundle]],
                across_nodes,
            )
            for index, holding in enumerate(holdings)
        ]

    def _probe(self, bundle: int) -> "ray.ObjectRef[list[str]]":
        return _bundle_gpu_ids.options(scheduling_strategy=self._in_bundle(bundle)).remote()

    def _in_bundle(self, bundle: int) -> PlacementGroupSchedulingStrategy:
        return PlacementGroupSchedulingStrategy(
            placement_group=self.placement.group, placement_group_bundle_index=bundle
        )

    def start(self, actor_class: type, index: int, *args):
        """A new actor of ``actor_class`` for engine ``index``, in the first bundle of its slot (a restarted engine
        comes back there): ``actor_class(slot, *args)``."""
        slot = self.slots[index]
        if self.placement is None:
            options = {"num_cpus": 0}
        else:
            # A fraction of the bundle, as slime's engines take (a colocated train rank takes 0.4 of it).
            device = {"num_gpus": 0.2, "num_cpus": 0} if self.placement.use_gpu else {"num_cpus": 0.2}
            options = {**device, "scheduling_strategy": self._in_bundle(slot.bundles[0])}
        return ray.remote(actor_class).options(**options).remote(slot, *args)
