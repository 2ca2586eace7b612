"""Which transport carries the weights to each engine, from where the sender runs (``choose_transports``): the rule
behind ``SGLangWeightReceiver.transports``, on layouts a CPU machine cannot build (GPU engines; --colocate)."""

from slime_sglang.weight_updates import choose_transports


def test_cpu_engines_on_the_senders_node_take_shared_memory_the_others_a_broadcast() -> None:
    nodes = ["A", "B", "A", None]  # None: an external engine, its node unknown
    chosen = choose_transports(nodes, [[], [], [], []], shared_memory=True, node="A", gpus=[])
    assert chosen == {"shared_memory": [0, 2], "broadcast": [1, 3]}


def test_colocated_gpu_engines_take_cuda_ipc_and_engines_on_other_gpus_a_broadcast() -> None:
    # --colocate on two 2-GPU nodes with TP-2 engines: rank 0 holds GPU 0 of node A.
    nodes, gpus = ["A", "B"], [["0", "1"], ["0", "1"]]
    assert choose_transports(nodes, gpus, shared_memory=False, node="A", gpus=["0"]) == {
        "cuda_ipc": [0],  # two ranks on one GPU: NCCL cannot join them
        "broadcast": [1],  # GPU 0 of another node is another GPU
    }
    # TP-1 engines on GPUs 0 and 1 of node A: only the one on the sender's GPU shares it.
    assert choose_transports(["A", "A"], [["0"], ["1"]], False, "A", ["0"]) == {"cuda_ipc": [0], "broadcast": [1]}


def test_without_colocation_gpu_engines_take_a_broadcast() -> None:
    chosen = choose_transports(["A", "A"], [["2"], ["3"]], shared_memory=False, node="A", gpus=["0"])
    assert chosen == {"broadcast": [0, 1]}


def test_outside_ray_every_engine_takes_a_broadcast() -> None:
    assert choose_transports(["A"], [[]], shared_memory=True, node=None, gpus=[]) == {"broadcast": [0]}
