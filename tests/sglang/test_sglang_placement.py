"""Train ranks and engines in their bundles, on a simulated three-node Ray cluster (``ray.cluster_utils.Cluster``, in a
process of its own: a Cluster cannot share the test session's Ray runtime). Every node declares GPUs it does not
have, and custom resources pin the bundles: the two train ranks on node A (the driver's and the rollout manager's),
two engines on node B, one on node C. Read from the processes themselves (/proc): each train rank and each SGLang
server runs on its bundle's node (the raylet in its environment) with the GPU id Ray gave its actor, no (node, GPU)
serves two of them, the ranks meet at rank 0's node, and the router runs on the manager's node. A weight update from
train rank 0 reaches every engine over gloo, and each engine then generates HF's greedy tokens with the new weights;
a restarted engine comes back on its bundle's node and GPU."""

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import ray

from slime.config.arguments import parse_args
from slime.ray.placement import Placement, bundle_nodes
from slime.ray.rollout_manager import RolloutManager
from slime.ray.train_group import TrainGroup

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]  # three server starts and a restart: 9 min at load 20-30

HERE = str(Path(__file__).parent)
sys.path.insert(0, HERE)
from engine_checks import PARAMS, PROMPTS, perturbed  # noqa: E402

NEW_WEIGHTS_SEED = 21


class SendsNewWeights:
    """A train rank that joins its group as the real backends do (gloo, ``env://``); rank 0 sends the checkpoint's
    weights perturbed with ``NEW_WEIGHTS_SEED`` through the engines' receiver, as a trained policy's would go."""

    def init(self, args, rank: int, world_size: int) -> int:
        import torch
        import torch.distributed as dist

        dist.init_process_group("gloo", rank=rank, world_size=world_size)
        self.rank, self.model_path = rank, args.hf_checkpoint
        joined = torch.tensor([rank + 1])
        dist.all_reduce(joined)
        return int(joined)

    def update_weights(self, receiver, weight_version: str) -> None:
        if self.rank != 0:
            return
        import torch
        from transformers import AutoModelForCausalLM

        sys.path.insert(0, HERE)  # this class travels to the rank by value; the helpers' module by name
        import engine_checks

        model = AutoModelForCausalLM.from_pretrained(self.model_path, dtype=torch.float32)
        new_weights = engine_checks.perturbed(model, seed=NEW_WEIGHTS_SEED)
        receiver.update_weights(engine_checks.hf_named_tensors(new_weights), weight_version)


def environ(pid: int) -> dict[str, str]:
    entries = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(entry.decode().split("=", 1) for entry in entries if b"=" in entry)


def command_line(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")


def option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def engines_of(manager) -> list[tuple]:
    """Each engine's URL, server pid, actor handle, bundles and index, and the router's pid, read in the rollout
    manager."""

    def read(self):
        servers = self.engine.servers
        slots = self.engine.placer.slots
        engines = [(s.url, s.pid, s.actor, slots[s.index].bundles, s.index) for s in servers]
        return engines, self.engine.router.process.pid

    return ray.get(manager.__ray_call__.remote(read))


def actor_facts(actor) -> tuple[list[str], str, int]:
    """The GPU ids Ray gave the actor (an engine's or a train rank's), its node and its pid, asked in the actor."""

    def read(self):
        return [str(g) for g in ray.get_gpu_ids()], ray.get_runtime_context().get_node_id(), os.getpid()

    return ray.get(actor.__ray_call__.remote(read))


def three_nodes(model: str, output_dir: str) -> None:
    import conftest  # tests/sglang/conftest.py: HF's greedy reference
    import torch
    from ray.cluster_utils import Cluster
    from transformers import AutoModelForCausalLM

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "num_gpus": 2, "resources": {"node_a": 10}})
    cluster.add_node(num_cpus=2, num_gpus=2, resources={"node_b": 10})
    cluster.add_node(num_cpus=1, num_gpus=1, resources={"node_c": 10})
    ray.init(address=cluster.address, log_to_driver=False)
    raylets = {node.node_id: node.all_processes["raylet"][0].process.pid for node in cluster.list_all_nodes()}
    head = cluster.head_node.node_id
    args = parse_args(
        [
            "--hf-checkpoint", model, "--train-backend", "slime_testkit.hf_trainer.HFTrainer",
            "--actor-num-gpus-per-node", "2", "--rollout-num-gpus", "3", "--output-dir", output_dir,
            "--sglang-device", "cpu", "--sglang-max-total-tokens", "2048", "--sglang-server-start-timeout", "900",
        ]
    )  # fmt: skip
    pinned = [{"GPU": 1, "CPU": 1, f"node_{node}": 1} for node in "aabbc"]  # train ranks 0, 1; engines 2, 3, 4
    group = ray.util.placement_group(pinned, strategy="PACK")
    ray.get(group.ready(), timeout=120)
    placement = Placement(group, [0, 1], [2, 3, 4], use_gpu=True, nodes=bundle_nodes(group))
    train = TrainGroup(args, SendsNewWeights, placement)
    manager = ray.remote(num_cpus=0, resources={"node_a": 0.01})(RolloutManager).remote(args, placement, train=False)
    try:
        assert train.init(args) == 1 + 2  # both ranks joined rank 0's group
        used = set()  # (node, GPU id) of every train rank and engine
        for actor in train.actors:
            gpu_ids, actor_node, actor_pid = actor_facts(actor)
            assert actor_node == head and int(environ(actor_pid)["RAY_RAYLET_PID"]) == raylets[head]  # node A
            # Set in the rank once it runs (not in /proc's copy of its start-up environment):
            env = ray.get(actor.__ray_call__.remote(lambda self: dict(os.environ)))
            assert env["CUDA_VISIBLE_DEVICES"] == ",".join(gpu_ids) and len(gpu_ids) == 1
            # Every rank on node A: they meet on loopback at a port rank 0 chose there.
            assert (env["MASTER_ADDR"], env["MASTER_PORT"]) == ("127.0.0.1", str(train.master_port))
            used.add((actor_node, gpu_ids[0]))
        assert len(used) == 2

        ray.get(manager.start.remote())
        engines, router_pid = engines_of(manager)
        for url, pid, actor, bundles, index in engines:
            gpu_ids, actor_node, actor_pid = actor_facts(actor)
            env, command = environ(pid), command_line(pid)
            assert actor_node == placement.nodes[bundles[0]] != head  # the actor runs in its bundle
            assert int(env["RAY_RAYLET_PID"]) == raylets[actor_node]  # the server runs on that node ...
            assert int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]) == actor_pid
            assert env["CUDA_VISIBLE_DEVICES"] == ",".join(gpu_ids) and len(gpu_ids) == 1  # ... on its actor's GPU
            assert option(command, "--base-gpu-id") == "0"
            assert option(command, "--random-seed") == str(args.seed + index * args.num_gpus_per_node)  # slime's
            # Engines on other nodes than the router: the node's address, not loopback.
            address = ray.util.get_node_ip_address()
            assert option(command, "--host") == address and url == f"http://{address}:{option(command, '--port')}"
            used.add((actor_node, gpu_ids[0]))
        assert len(used) == 5  # no GPU serves two engines, or an engine and a train rank
        engine_nodes = [node for node, _ in used if node != head]
        assert sorted(engine_nodes.count(node) for node in set(engine_nodes)) == [1, 2]
        assert int(environ(router_pid)["RAY_RAYLET_PID"]) == raylets[head]  # the router beside the manager

        hf_model = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32).eval()
        new_model = perturbed(hf_model, seed=NEW_WEIGHTS_SEED)
        receiver = ray.get(manager.weight_receiver.remote())
        train.update_weights(receiver, "1")
        ray.get(manager.weights_updated.remote("1"))

        def sent(self):  # in train rank 0: the engines each transport served, and the broadcast group's ends
            from slime_sglang import weight_updates

            sender = weight_updates._senders["broadcast"]
            return self.receiver.transports(), sender.backend, sender.master_address, ray.util.get_node_ip_address()

        transports, backend, master_address, rank0_address = ray.get(train.actors[0].__ray_call__.remote(sent))
        assert transports == {"broadcast": [0, 1, 2]}  # node A has no engine beside rank 0
        assert (backend, master_address) == ("gloo", rank0_address)  # the group meets at rank 0's node
        for url, *_ in engines:
            for prompt in PROMPTS:
                reply = httpx.post(
                    f"{url}/generate", json={"input_ids": prompt, "sampling_params": PARAMS}, timeout=300
                )
                tokens, _ = conftest.greedy_reference(new_model, prompt, PARAMS["max_new_tokens"])
                assert reply.json()["output_ids"] == tokens, url
                assert reply.json()["meta_info"]["weight_version"] == "1"

        # A restarted engine (what --use-fault-tolerance does to a dead one) comes back in its own bundle.
        _, old_pid, old_actor, bundles, _ = engines[2]
        old_facts = actor_facts(old_actor)
        ray.get(manager.__ray_call__.remote(lambda self: self.engine.restart_engine(2)))
        _, new_pid, new_actor, new_bundles, _ = engines_of(manager)[0][2]
        gpu_ids, node, actor_pid = actor_facts(new_actor)
        assert new_bundles == bundles and (gpu_ids, node) == old_facts[:2] and actor_pid != old_facts[2]
        assert int(environ(new_pid)["RAY_RAYLET_PID"]) == raylets[node] and new_pid != old_pid
        assert environ(new_pid)["CUDA_VISIBLE_DEVICES"] == ",".join(gpu_ids)
        print("train ranks and engines placed")
    finally:
        try:
            ray.get(manager.shutdown.remote(), timeout=300)
        finally:
            ray.kill(manager)
            for actor in train.actors:
                ray.kill(actor)
            ray.shutdown()
            cluster.shutdown()


def test_train_ranks_and_engines_run_in_their_bundles_and_weights_go_over_gloo(tiny_model, tmp_path) -> None:
    # Run as a script, as tests/core/ray/test_train_rendezvous.py does.
    result = subprocess.run(
        [sys.executable, __file__, str(tiny_model), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=1200,
        env=os.environ,
    )
    assert "train ranks and engines placed" in result.stdout, result.stdout[-3000:] + result.stderr[-5000:]


if __name__ == "__main__":
    three_nodes(sys.argv[1], sys.argv[2])
