"""Engines in their bundles, on a simulated three-node Ray cluster (``ray.cluster_utils.Cluster``, in a process of its
own: a Cluster cannot share the test session's Ray runtime). Node A (the driver's and the rollout manager's, pinned
by a custom resource) has no GPU; node B declares two GPUs and node C one, none of them real. Read from the server
processes themselves (/proc): each SGLang server runs on its bundle's node (the raylet in its environment) with the
GPU id Ray gave its engine actor, and no (node, GPU) serves two engines; the router runs on the manager's node. A
weight update from node A reaches every engine over gloo, and each engine then generates HF's greedy tokens; a
restarted engine comes back on its bundle's node and GPU."""

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import ray

from slime.config.arguments import parse_args
from slime.ray.placement import create_placement
from slime.ray.rollout_manager import RolloutManager

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]  # three server starts and a restart: 9 min at load 20-30

sys.path.insert(0, str(Path(__file__).parent))
from engine_checks import PARAMS, PROMPTS, hf_named_tensors, perturbed  # noqa: E402


def environ(pid: int) -> dict[str, str]:
    entries = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(entry.decode().split("=", 1) for entry in entries if b"=" in entry)


def command_line(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")


def option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def engines_of(manager) -> list[tuple]:
    """Each engine's URL, server pid, actor handle and bundles, and the router's pid, read in the rollout manager."""

    def read(self):
        servers = self.engine.servers
        slots = self.engine.placer.slots
        engines = [(s.url, s.pid, s.actor, slots[s.index].bundles) for s in servers]
        return engines, self.engine.router.process.pid

    return ray.get(manager.__ray_call__.remote(read))


def actor_facts(actor) -> tuple[list[str], str, int]:
    """The GPU ids Ray gave the engine actor, its node and its pid, asked in the actor."""

    def read(self):
        return [str(g) for g in ray.get_gpu_ids()], ray.get_runtime_context().get_node_id(), os.getpid()

    return ray.get(actor.__ray_call__.remote(read))


def three_nodes(model: str, output_dir: str) -> None:
    import conftest  # tests/sglang/conftest.py: HF's greedy reference
    import torch
    from ray.cluster_utils import Cluster
    from transformers import AutoModelForCausalLM

    from slime_sglang import weight_updates

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "resources": {"node_a": 1}})
    cluster.add_node(num_cpus=2, num_gpus=2)  # B
    cluster.add_node(num_cpus=1, num_gpus=1)  # C
    ray.init(address=cluster.address, log_to_driver=False)
    raylets = {node.node_id: node.all_processes["raylet"][0].process.pid for node in cluster.list_all_nodes()}
    head = cluster.head_node.node_id
    args = parse_args(
        [
            "--hf-checkpoint", model, "--debug-rollout-only", "--rollout-num-gpus", "3", "--output-dir", output_dir,
            "--sglang-device", "cpu", "--sglang-max-total-tokens", "2048", "--sglang-server-start-timeout", "900",
        ]
    )  # fmt: skip
    placement = create_placement(args)
    manager = ray.remote(num_cpus=0, resources={"node_a": 0.01})(RolloutManager).remote(args, placement, train=False)
    try:
        ray.get(manager.start.remote())
        engines, router_pid = engines_of(manager)
        served = set()
        for url, pid, actor, bundles in engines:
            gpu_ids, actor_node, actor_pid = actor_facts(actor)
            env, command = environ(pid), command_line(pid)
            assert actor_node == placement.nodes[bundles[0]] != head  # the actor runs in its bundle
            assert int(env["RAY_RAYLET_PID"]) == raylets[actor_node]  # the server runs on that node ...
            assert int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]) == actor_pid
            assert env["CUDA_VISIBLE_DEVICES"] == ",".join(gpu_ids) and len(gpu_ids) == 1  # ... on its actor's GPU
            assert option(command, "--base-gpu-id") == "0"
            # Engines on other nodes than the router: the node's address, not loopback.
            address = ray.util.get_node_ip_address()
            assert option(command, "--host") == address and url == f"http://{address}:{option(command, '--port')}"
            served.add((actor_node, gpu_ids[0]))
        assert len(served) == 3  # no GPU serves two engines
        assert sorted([node for node, _ in served].count(n) for n in {node for node, _ in served}) == [1, 2]
        assert int(environ(router_pid)["RAY_RAYLET_PID"]) == raylets[head]  # the router beside the manager

        hf_model = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32).eval()
        new_model = perturbed(hf_model, seed=21)
        receiver = ray.get(manager.weight_receiver.remote())
        assert receiver.transports() == {"broadcast": [0, 1, 2]}  # this process (node A) has no engine beside it
        receiver.update_weights(hf_named_tensors(new_model), "1")
        ray.get(manager.weights_updated.remote("1"))
        sender = weight_updates._senders["broadcast"]
        assert (sender.backend, sender.master_address) == ("gloo", ray.util.get_node_ip_address())
        for url, *_ in engines:
            for prompt in PROMPTS:
                reply = httpx.post(
                    f"{url}/generate", json={"input_ids": prompt, "sampling_params": PARAMS}, timeout=300
                )
                tokens, _ = conftest.greedy_reference(new_model, prompt, PARAMS["max_new_tokens"])
                assert reply.json()["output_ids"] == tokens, url
                assert reply.json()["meta_info"]["weight_version"] == "1"
        sender.close()

        # A restarted engine (what --use-fault-tolerance does to a dead one) comes back in its own bundle.
        _, old_pid, old_actor, bundles = engines[2]
        old_facts = actor_facts(old_actor)
        ray.get(manager.__ray_call__.remote(lambda self: self.engine.restart_engine(2)))
        _, new_pid, new_actor, new_bundles = engines_of(manager)[0][2]
        gpu_ids, node, actor_pid = actor_facts(new_actor)
        assert new_bundles == bundles and (gpu_ids, node) == old_facts[:2] and actor_pid != old_facts[2]
        assert int(environ(new_pid)["RAY_RAYLET_PID"]) == raylets[node] and new_pid != old_pid
        assert environ(new_pid)["CUDA_VISIBLE_DEVICES"] == ",".join(gpu_ids)
        print("engines placed")
    finally:
        try:
            ray.get(manager.shutdown.remote(), timeout=300)
        finally:
            ray.kill(manager)
            ray.shutdown()
            cluster.shutdown()


def test_engines_run_in_their_bundles_and_take_weights_over_gloo(tiny_model, tmp_path) -> None:
    # Run as a script, as tests/core/ray/test_train_rendezvous.py does.
    result = subprocess.run(
        [sys.executable, __file__, str(tiny_model), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=1200,
        env=os.environ,
    )
    assert "engines placed" in result.stdout, result.stdout[-3000:] + result.stderr[-5000:]


if __name__ == "__main__":
    three_nodes(sys.argv[1], sys.argv[2])
