"""A Ray cluster of two nodes on this machine (``ray.cluster_utils.Cluster``), run as a process of its own by
test_node_lost.py: the head (2 CPUs, no GPU) and node B (2 CPUs, 2 GPUs it does not have). Prints the cluster's
address; the line ``remove`` kills node B without warning (``remove_node``, not graceful), as a machine lost; the end
of stdin shuts the cluster down."""

import sys

from ray.cluster_utils import Cluster

cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "num_gpus": 0})
node_b = cluster.add_node(num_cpus=2, num_gpus=2)
print(cluster.address, flush=True)
for line in sys.stdin:
    if line.strip() == "remove":
        cluster.remove_node(node_b, allow_graceful=False)
        print("removed", flush=True)
cluster.shutdown()
