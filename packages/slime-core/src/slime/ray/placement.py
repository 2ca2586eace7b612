"""One Ray placement group holding the trainer's and the rollout engines' devices.

On GPU clusters every bundle is one GPU (and one CPU). On machines without GPUs the same layout uses one CPU per
bundle, so the CPU mode runs the same placement code.
"""

import argparse
from dataclasses import dataclass

import ray
from ray.util.placement_group import PlacementGroup, placement_group

from slime.errors import SlimeError


@dataclass
class Placement:
    group: PlacementGroup
    actor_bundles: list[int]
    rollout_bundles: list[int]
    use_gpu: bool
    nodes: list[str]  # the Ray node id of each bundle


def layout(args: argparse.Namespace) -> tuple[int, range, range]:
    """(bundles in all, the actor bundles, the rollout bundles); a debug mode leaves one side out."""
    actor = 0 if args.debug_rollout_only else args.actor_num_nodes * args.actor_num_gpus_per_node
    rollout = 0 if args.debug_train_only else args.rollout_num_gpus or 0
    if args.colocate:
        return max(actor, rollout), range(actor), range(rollout)
    return actor + rollout, range(actor), range(actor, actor + rollout)


def create_placement(args: argparse.Namespace, timeout_s: float = 120.0) -> Placement:
    total, actor_bundles, rollout_bundles = layout(args)
    use_gpu = ray.cluster_resources().get("GPU", 0) > 0
    bundle = {"GPU": 1, "CPU": 1} if use_gpu else {"CPU": 1}
    group = placement_group([dict(bundle) for _ in range(total)], strategy="PACK")
    try:
        ray.get(group.ready(), timeout=timeout_s)
    except ray.exceptions.GetTimeoutError:
        ray.util.remove_placement_group(group)
        have = ray.cluster_resources()
        raise SlimeError(
            f"Ray cannot place {total} bundles of {bundle} within {timeout_s:.0f} s (cluster has "
            f"{have.get('GPU', 0):g} GPU, {have.get('CPU', 0):g} CPU); check --actor-num-nodes, "
            "--actor-num-gpus-per-node and --rollout-num-gpus"
        ) from None
    return Placement(group, list(actor_bundles), list(rollout_bundles), use_gpu, bundle_nodes(group))


def bundle_nodes(group: PlacementGroup) -> list[str]:
    """The Ray node id of each bundle of a ready placement group, by bundle index."""
    by_index = ray.util.placement_group_table(group)["bundles_to_node_id"]
    return [by_index[index] for index in range(len(by_index))]
