"""Train ranks meet at rank 0: its node's address (loopback when every rank is on that node) and a port free there,
chosen in rank 0's own process; checked by the ranks joining one gloo group. Across nodes on a simulated cluster
(``ray.cluster_utils.Cluster``, in a process of its own: the test session's Ray runtime stays as it is)."""

import os
import subprocess
import sys

import ray

from slime.config.arguments import parse_args
from slime.ray.placement import create_placement
from slime.ray.train_group import TrainGroup


class GlooBackend:
    """Joins the ranks' gloo group as the real backends do (``env://``) and sums the ranks."""

    def init(self, args, rank: int, world_size: int) -> int:
        import torch
        import torch.distributed as dist

        dist.init_process_group("gloo", rank=rank, world_size=world_size)
        total = torch.tensor([rank + 1])
        dist.all_reduce(total)
        dist.destroy_process_group()
        return int(total)


def run_group(args) -> tuple[int, list[tuple[str, str, str]]]:
    """The sum the ranks computed together, and each rank's MASTER_ADDR, MASTER_PORT and Ray node id."""
    placement = create_placement(args)
    group = TrainGroup(args, GlooBackend, placement)
    try:
        total = group.init(args)

        def read(actor) -> tuple[str, str, str]:
            return os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"], ray.get_runtime_context().get_node_id()

        return total, ray.get([actor.__ray_call__.remote(read) for actor in group.actors])
    finally:
        for actor in group.actors:
            ray.kill(actor)
        ray.util.remove_placement_group(placement.group)


def test_ranks_on_one_node_meet_on_loopback(ray_runtime, tmp_path) -> None:
    args = parse_args(["--actor-num-gpus-per-node", "2", "--debug-train-only", "--output-dir", str(tmp_path)])
    total, ranks = run_group(args)
    assert total == 1 + 2  # both ranks joined
    assert {(addr, port) for addr, port, _ in ranks} == {("127.0.0.1", ranks[0][1])}


def across_nodes(output_dir: str) -> None:
    """Two nodes of one CPU each (and a head that runs nothing): the two ranks land on different nodes."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    for _ in range(2):
        cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address, log_to_driver=False)
    try:
        args = parse_args(["--actor-num-gpus-per-node", "2", "--debug-train-only", "--output-dir", output_dir])
        total, ranks = run_group(args)
        addresses = {node["NodeID"]: node["NodeManagerAddress"] for node in ray.nodes()}
        assert total == 1 + 2
        assert ranks[0][2] != ranks[1][2]  # one rank per node
        assert {(addr, port) for addr, port, _ in ranks} == {(addresses[ranks[0][2]], ranks[0][1])}  # rank 0's node
        print("ranks met across nodes")
    finally:
        ray.shutdown()
        cluster.shutdown()


def test_ranks_on_two_nodes_meet_at_rank_0s_node(tmp_path) -> None:
    # Run as a script: its classes then travel to the workers by value, as they do from this test session.
    result = subprocess.run(
        [sys.executable, __file__, str(tmp_path)], capture_output=True, text=True, timeout=600, env=os.environ
    )
    assert "ranks met across nodes" in result.stdout, result.stdout[-3000:] + result.stderr[-3000:]


if __name__ == "__main__":
    across_nodes(sys.argv[1])
