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


def check_layout_fits(args: argparse.Namespace, total: int, device: str) -> None:
    """A layout this cluster's nodes cannot hold is a one-line error at once, not a placement timeout. Nodes an
    autoscaler would add are not counted; devices other jobs hold show up as the placement timeout instead."""
    per_node = [node["Resources"].get(device, 0) for node in ray.nodes() if node["Alive"]]
    width = args.rollout_num_gpus_per_engine
    if not args.debug_train_only and width > max(per_node, default=0):
        raise SlimeError(
            f"--rollout-num-gpus-per-engine {width}: an engine runs on one node, and the largest node of this Ray "
            f"cluster has {max(per_node, default=0):g} {device}"
        )
    if total > sum(per_node):
        raise SlimeError(
            f"--actor-num-nodes x --actor-num-gpus-per-node ({args.actor_num_nodes} x {args.actor_num_gpus_per_node})"
            f" and --rollout-num-gpus ({args.rollout_num_gpus}){' colocated' if args.colocate else ''} need {total} "
            f"{device}, and this Ray cluster has {sum(per_node):g}"
        )


def create_placement(args: argparse.Namespace, timeout_s: float = 120.0) -> Placement:
    total, actor_bundles, rollout_bundles = layout(args)
    use_gpu = ray.cluster_resources().get("GPU", 0) > 0
    check_layout_fits(args, total, "GPU" if use_gpu else "CPU")
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
